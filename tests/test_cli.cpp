// test_cli.cpp — the command line of build/bin/mox-cifar10, run as a child process.
//
// The binary is found next to the test binary (tests/child_process.h; the tests skip when it
// is not built), and each test works in its own temp directory (tests/temp_dir.h). Checked:
// --help exits 0 and lists the options; usage errors (unknown flag, stray argument, bad
// values including nan/inf, a --resume file that does not exist) exit 2 with a message
// naming the option; runtime errors exit 1 with a message: a missing data directory (naming
// it and `make data`), a CIFAR file of the wrong size (naming the file and both sizes, from
// a small fake directory written by the test), and — when MOX_DATA holds CIFAR-10 — bad
// --resume checkpoints: corrupt, another architecture, model-only, non-numeric epoch (each
// naming the file). No run that fails leaves a --metrics or --save file behind. Also: the
// --config file (DeepSpeed JSON) is applied and its errors name the key (with a "did you
// mean"), a repeated flag takes its last value, and — with the real data — a mid-epoch
// --max-steps stop resumed with --resume gives bitwise the losses of an uninterrupted run
// (MoE with RSample and RTS drops). --dtype: a bad value, a loss-scaler flag without fp16 or a
// scaler it cannot start exit 2; with the real data a bf16 run trains, an fp16 run starting
// at too high a loss scale skips the overflowing steps and reports them in the metrics, resumes
// bitwise (scaler included), and a resume with another dtype is refused naming both.
// Training itself is covered by test_cifar10_e2e.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "examples/cifar10/net.h"
#include "nn/checkpoint.h"
#include "nn/linear.h"
#include "nn/optim/sgd.h"
#include "tensor/backend.h"
#include "tests/child_process.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using mox::testing::ProgramResult;
using mox::testing::sh_quote;

class CifarCli : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = mox::testing::program_beside_tests("mox-cifar10");
    if (binary_.empty()) GTEST_SKIP() << "mox-cifar10 not found: build it with `make all` (it sits beside mox-tests)";
  }
  // On the CPU unless a test chooses (on a GPU machine auto would pick CUDA, and these tests
  // check CPU behaviour, bitwise resume included; the CUDA path is the GPU check's).
  ProgramResult run(const std::string& args) const {
    return mox::testing::run_program(binary_, (args.find("--device") == std::string::npos ? "--device cpu " : "") + args);
  }
  std::string path(const std::string& name) const { return dir_.path(name); }
  // The resume tests' pattern: one training run whole (`total` steps, metrics a.jsonl) and the
  // same run split in two (saved to ck.safetensors at step `split`, resumed to `total`,
  // metrics of both parts in b.jsonl).
  struct WholeAndResumed {
    ProgramResult whole, first, resumed;
  };
  WholeAndResumed run_whole_and_resumed(const std::string& common, int split, int total) const {
    const std::string ck = sh_quote(path("ck.safetensors")), b = " --metrics " + sh_quote(path("b.jsonl"));
    WholeAndResumed r;
    r.whole = run(common + " --max-steps " + std::to_string(total) + " --metrics " + sh_quote(path("a.jsonl")));
    r.first = run(common + " --max-steps " + std::to_string(split) + " --save " + ck + b);
    r.resumed = run(common + " --max-steps " + std::to_string(total) + " --resume " + ck + b);
    return r;
  }
  void write_file(const std::string& name, size_t bytes) const {
    std::ofstream(path(name), std::ios::binary) << std::string(bytes, '\0');
  }
  fs::path binary_;
  mox::testing::TempDir dir_{"mox-cli"};
};

TEST_F(CifarCli, HelpExitsZeroAndListsTheOptions) {
  ProgramResult r = run("--help");
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* opt : {"--batch-size", "--data", "--epochs", "--lr", "--optimizer", "--resume", "--save",
                          "--metrics", "--threads"})
    EXPECT_CONTAINS(r.output, opt);
  EXPECT_EQ(run("-h").code, 0);
}

TEST_F(CifarCli, UsageErrorsExitTwoNamingTheOption) {
  struct Case { std::string args, expect; };
  const std::vector<Case> cases = {
      {"--bogus", "--bogus"},
      {"stray", "stray"},
      {"--batch-size 0", "--batch-size"},
      {"--batch-size -4", "--batch-size"},
      {"--epochs abc", "--epochs"},
      {"--optimizer rmsprop", "rmsprop"},
      {"--lr -1", "--lr"},
      {"--lr 0", "--lr"},
      {"--lr nan", "--lr"},
      {"--lr inf", "--lr"},
      {"--momentum 1.5", "--momentum"},
      {"--momentum nan", "--momentum"},
      {"--weight-decay -0.1", "--weight-decay"},
      {"--schedule step", "--schedule"},
      {"--schedule warmup --warmup-steps 1", "--warmup-steps of at least 2"},
      {"--moe --num-experts 4 --batch-size 2", "--batch-size 2 is smaller than --min-capacity 4"},
      {"--threads 0", "--threads"},
      {"--seed -1", "--seed"},
      {"--batch-size", "--batch-size"},   // value missing
      {"--dtype fp8", "--dtype: fp8 not in {fp32,fp16,bf16}"},
      {"--hysteresis 3", "--hysteresis sets the fp16 loss scaler; it needs --dtype fp16"},
      {"--dtype fp16 --initial-scale-power 2 --min-loss-scale 8", "2^2 = 4 is below min_loss_scale 8"},
      {"--dtype fp16 --loss-scale-window 0", "--loss-scale-window"},
  };
  for (const Case& c : cases) {
    // --data points at a missing directory: had parsing accepted the value, the run would
    // fail later with exit 1 instead.
    ProgramResult r = run(c.args + " --data " + sh_quote(path("nothing-here")));
    EXPECT_EQ(r.code, 2) << c.args << ":\n" << r.output;
    EXPECT_CONTAINS(r.output, c.expect);
    EXPECT_CONTAINS(r.output, "--help");
  }
}

TEST_F(CifarCli, ConfigFileIsAppliedAndItsErrorsExitTwoNamingTheKey) {
  auto write_config = [&](const std::string& name, const std::string& text) {
    std::ofstream(path(name)) << text;
    return sh_quote(path(name));
  };
  const std::string no_data = " --data " + sh_quote(path("nothing-here"));
  // A valid file (DeepSpeed's CIFAR example config) is applied: the run gets as far as the
  // missing data (exit 1) and has printed the resolved settings.
  const std::string good = write_config("ds.json", R"({"train_batch_size": 16, "steps_per_print": 100,
      "gradient_clipping": 1.0,
      "optimizer": {"type": "Adam", "params": {"lr": 0.002, "betas": [0.8, 0.999], "eps": 1e-8, "weight_decay": 3e-7}},
      "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.002, "warmup_num_steps": 500}}})");
  ProgramResult ok = run("--config " + good + no_data);
  EXPECT_EQ(ok.code, 1) << ok.output;
  EXPECT_CONTAINS(ok.output, "batch 16, adamw lr 0.002 (momentum 0.9, betas 0.8 0.999, eps 1e-08, weight decay 3e-07)");
  EXPECT_CONTAINS(ok.output, "schedule warmup (warmup 500 steps from 0, log), gradient clipping 1, log every 100 steps");

  struct Case { std::string name, text, flags, expect; };
  const std::vector<Case> cases = {
      {"fp16.json", R"({"train_batch_size": 4, "fp16": {"enabled": true}})", "--dtype bf16",
       "'fp16' and the flag --dtype both set this"},
      {"fp16_window.json", R"({"fp16": {"enabled": true, "loss_scale_window": 10}})", "--loss-scale-window 20",
       "'fp16' and the flag --loss-scale-window both set this"},
      {"zero.json", R"({"zero_optimization": {"stage": 1}})", "", "'zero_optimization' is not supported by mox-cifar10"},
      {"dup.json", R"({"train_batch_size": 4, "train_batch_size": 8})", "", "key 'train_batch_size' appears twice"},
      {"typo.json", R"({"optimizer": {"type": "SGD", "params": {"lrr": 0.1}}})", "",
       "unknown key 'optimizer.params.lrr' (did you mean 'lr'?"},
      {"typo2.json", R"({"train_batchsize": 8})", "", "unknown key 'train_batchsize' (did you mean 'train_batch_size'?"},
      {"betas_sgd.json", R"({"optimizer": {"type": "SGD", "params": {"betas": [0.9, 0.99]}}})", "",
       "unknown key 'optimizer.params.betas'"},
      {"lamb.json", R"({"optimizer": {"type": "Lamb"}})", "", "optimizer.type 'Lamb' is not one of SGD, Adam, AdamW"},
      {"onecycle.json", R"({"scheduler": {"type": "OneCycle"}})", "", "scheduler.type 'OneCycle' is not supported"},
      {"batch.json", R"({"train_batch_size": 0})", "", "'train_batch_size' must be an integer >= 1, got 0"},
      {"lrtype.json", R"({"optimizer": {"type": "Adam", "params": {"lr": "fast"}}})", "",
       "'optimizer.params.lr' must be a number, got \"fast\""},
      {"broken.json", R"({"train_batch_size": 4,)", "", "not valid JSON"},
      {"top.json", R"([1, 2])", "", "the top level must be a JSON object"},
      {"conflict.json", R"({"optimizer": {"type": "SGD", "params": {"lr": 0.1}}})", "--lr 0.2",
       "'optimizer.params.lr' and the flag --lr both set this"},
      {"peak.json", R"({"optimizer": {"type": "Adam", "params": {"lr": 0.001}},
          "scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": 0.01}}})", "",
       "warmup_max_lr = 0.01 differs from optimizer.params.lr = 0.001"},
  };
  for (const Case& c : cases) {
    ProgramResult r = run("--config " + write_config(c.name, c.text) + " " + c.flags + no_data);
    EXPECT_EQ(r.code, 2) << c.name << ":\n" << r.output;
    EXPECT_CONTAINS(r.output, path(c.name));
    EXPECT_CONTAINS(r.output, c.expect);
  }
  ProgramResult missing = run("--config " + sh_quote(path("absent.json")) + no_data);
  EXPECT_EQ(missing.code, 2) << missing.output;
  EXPECT_CONTAINS(missing.output, "--config");
}

TEST_F(CifarCli, UnusableDeviceExitsTwoSayingWhy) {
  ProgramResult bad = run("--device gpu --data " + sh_quote(path("none")));
  EXPECT_EQ(bad.code, 2) << bad.output;
  EXPECT_CONTAINS(bad.output, "'gpu' is not a device (cpu, cuda, cuda:0 or auto)");
  if (!mox::backend_available(mox::DeviceType::CUDA)) {   // this machine: say which reason it is
    ProgramResult cuda = run("--device cuda --data " + sh_quote(path("none")));
    EXPECT_EQ(cuda.code, 2) << cuda.output;
    EXPECT_CONTAINS(cuda.output, "'cuda': " + mox::cuda_unavailable_reason());
  } else {
    ProgramResult second = run("--device cuda:1 --data " + sh_quote(path("none")));
    EXPECT_EQ(second.code, 2) << second.output;
    EXPECT_CONTAINS(second.output, "one GPU per process");
  }
}

TEST_F(CifarCli, ARepeatedFlagTakesItsLastValue) {
  // As argparse: a script appends an override to a common set of flags. The run gets past
  // parsing (exit 1 on the missing data, not 2), and the last value is the one used.
  const std::string json = dir_.path("c.json");
  std::ofstream(json) << R"({"train_batch_size": 8})";
  ProgramResult r = run("--epochs 2 --epochs 1 --config " + sh_quote(json) + " --log-interval 5 --log-interval 7" +
                        " --data " + sh_quote(dir_.path("nothing-here")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_CONTAINS(r.output, "log every 7 steps");
}

TEST_F(CifarCli, ResumeOfAMissingFileExitsTwo) {
  ProgramResult r = run("--resume " + sh_quote(path("absent.safetensors")) + " --data " + sh_quote(path("no-data")));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_CONTAINS(r.output, "--resume");
  EXPECT_CONTAINS(r.output, path("absent.safetensors"));
}

TEST_F(CifarCli, MissingDataDirExitsOneNamingItAndMakeData) {
  const std::string data = path("no-such-dir");
  ProgramResult r = run("--data " + sh_quote(data) + " --metrics " + sh_quote(path("m.jsonl")) + " --save " +
                        sh_quote(path("c.safetensors")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_CONTAINS(r.output, data);
  EXPECT_CONTAINS(r.output, "make data");
  EXPECT_FALSE(fs::exists(path("m.jsonl"))) << "no metrics file for a run that never started";
  EXPECT_FALSE(fs::exists(path("c.safetensors")));
}

TEST_F(CifarCli, MissingSplitFileExitsOneNamingIt) {
  fs::create_directory(path("cifar"));
  for (int i = 1; i <= 4; ++i) write_file("cifar/data_batch_" + std::to_string(i) + ".bin", 3073);
  ProgramResult r = run("--data " + sh_quote(path("cifar")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_CONTAINS(r.output, "data_batch_5.bin");
  EXPECT_CONTAINS(r.output, "make data");
}

TEST_F(CifarCli, WrongSizeDataFileExitsOneNamingTheFileAndSizes) {
  // Official files hold exactly 10,000 records of 3,073 bytes; these are 100 records.
  fs::create_directory(path("cifar"));
  for (int i = 1; i <= 5; ++i) write_file("cifar/data_batch_" + std::to_string(i) + ".bin", 100 * 3073);
  write_file("cifar/test_batch.bin", 100 * 3073);
  ProgramResult r = run("--data " + sh_quote(path("cifar")) + " --metrics " + sh_quote(path("m.jsonl")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_CONTAINS(r.output, path("cifar") + "/data_batch_1.bin");
  EXPECT_CONTAINS(r.output, "307300 bytes");
  EXPECT_CONTAINS(r.output, "30730000 bytes");
  EXPECT_FALSE(fs::exists(path("m.jsonl")));
}

std::string real_data_dir() {
  const char* root = std::getenv("MOX_DATA");
  const std::string data = root && *root ? std::string(root) + "/cifar10" : "";
  return !data.empty() && fs::is_regular_file(data + "/test_batch.bin") ? data : "";
}

TEST_F(CifarCli, BadResumeCheckpointsExitOneNamingTheFile) {
  const std::string data = real_data_dir();
  if (data.empty()) GTEST_SKIP() << "needs CIFAR-10 under $MOX_DATA/cifar10 (the data loads before the checkpoint)";
  using namespace mox;
  std::ofstream(path("corrupt.safetensors"), std::ios::binary) << "not a safetensors file";
  {
    nn::Linear other(4, 2);   // another architecture
    nn::save_checkpoint(path("other.safetensors"), other, nullptr, {{"epoch", "1"}, {"step", "10"}});
    cifar10::Net net;
    nn::save_checkpoint(path("model_only.safetensors"), net, nullptr, {{"epoch", "1"}, {"step", "10"}});
    optim::Sgd sgd(net.named_parameters());
    nn::save_checkpoint(path("bad_epoch.safetensors"), net, &sgd, {{"epoch", "one"}, {"step", "10"}});
    nn::save_checkpoint(path("no_step.safetensors"), net, &sgd, {{"epoch", "1"}});
  }
  struct Case { std::string file, expect; };
  for (const Case& c : std::vector<Case>{{"corrupt.safetensors", ""},
                                         {"other.safetensors", "'weight'"},
                                         {"model_only.safetensors", "optimizer"},
                                         {"bad_epoch.safetensors", "'epoch'"},
                                         {"no_step.safetensors", "'step'"}}) {
    ProgramResult r = run("--data " + sh_quote(data) + " --resume " + sh_quote(path(c.file)) + " --metrics " +
                          sh_quote(path("m.jsonl")) + " --threads 1");
    EXPECT_EQ(r.code, 1) << c.file << ":\n" << r.output;
    EXPECT_CONTAINS(r.output, path(c.file));
    EXPECT_CONTAINS(r.output, c.expect);
    EXPECT_FALSE(fs::exists(path("m.jsonl"))) << c.file;
  }
}

}  // namespace

namespace {

// The "loss" text of every train record of a metrics file (exact, as written).
std::vector<std::string> train_losses(const std::string& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (line.find("\"split\":\"train\"") != std::string::npos) {
      const size_t at = line.find("\"loss\":");
      out.push_back(line.substr(at, line.find(',', at) - at));
    }
  return out;
}

}  // namespace

TEST_F(CifarCli, MidEpochResumeIsBitwiseExact) {
  const std::string data = real_data_dir();
  if (data.empty()) GTEST_SKIP() << "needs CIFAR-10 under $MOX_DATA/cifar10";
  // MoE with RSample and RTS: the gates' generators must travel with the checkpoint too.
  const std::string common = "--data " + sh_quote(data) + " --batch-size 16 --log-interval 5 --threads 1 --seed 3" +
                             " --moe --num-experts 2 --noisy-gate-policy RSample --capacity-factor 0.5 --min-capacity 0" +
                             " --schedule cosine --warmup-steps 10 --epochs 1";
  const WholeAndResumed r = run_whole_and_resumed(common, 15, 30);
  ASSERT_EQ(r.whole.code, 0) << r.whole.output;
  ASSERT_EQ(r.first.code, 0) << r.first.output;
  ASSERT_EQ(r.resumed.code, 0) << r.resumed.output;
  EXPECT_CONTAINS(r.resumed.output, "0 epochs and 15 batches done, step 15");
  const std::vector<std::string> la = train_losses(path("a.jsonl")), lb = train_losses(path("b.jsonl"));
  ASSERT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb);   // steps 1–15 from the first part, 16–30 from the resumed run
}

TEST_F(CifarCli, MixedPrecisionTrainsReportsSkippedStepsAndResumesExactly) {
  const std::string data = real_data_dir();
  if (data.empty()) GTEST_SKIP() << "needs CIFAR-10 under $MOX_DATA/cifar10";
  const std::string common = "--data " + sh_quote(data) + " --batch-size 16 --log-interval 5 --threads 1 --epochs 1";
  ProgramResult bf16 = run(common + " --dtype bf16 --max-steps 10 --metrics " + sh_quote(path("bf16.jsonl")));
  ASSERT_EQ(bf16.code, 0) << bf16.output;
  EXPECT_CONTAINS(bf16.output, "bf16 (fp32 master weights)");
  for (const std::string& l : train_losses(path("bf16.jsonl"))) EXPECT_NE(l.find("\"loss\":2."), std::string::npos) << l;
  // fp16 from a loss scale of 2^28: the first steps overflow and are skipped, the scale halving
  // each time (hysteresis 1), and the metrics say so. A run stopped at step 15 and resumed
  // continues bitwise — the loss scaler's state travels in the checkpoint.
  const std::string fp16 = common + " --dtype fp16 --initial-scale-power 28 --hysteresis 1";
  const WholeAndResumed r = run_whole_and_resumed(fp16, 15, 30);
  ASSERT_EQ(r.whole.code, 0) << r.whole.output;
  EXPECT_CONTAINS(r.whole.output, "skipped steps");
  ASSERT_EQ(r.first.code, 0) << r.first.output;
  ASSERT_EQ(r.resumed.code, 0) << r.resumed.output;
  struct Record { std::string loss; double scale; int64_t skipped; };
  auto records = [](const std::string& file) {
    std::vector<Record> out;
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json r = nlohmann::json::parse(line);
      if (r["split"] == "train") out.push_back({r["loss"].dump(), r["loss_scale"], r["skipped_steps"]});
    }
    return out;
  };
  const std::vector<Record> ra = records(path("a.jsonl")), rb = records(path("b.jsonl"));
  ASSERT_EQ(ra.size(), 6u);
  ASSERT_EQ(rb.size(), 6u);
  EXPECT_GT(ra[0].skipped, 0);
  EXPECT_LT(ra[0].scale, std::ldexp(1.0, 28));
  EXPECT_LT(ra.back().skipped, 30);   // it got to a scale that fits
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(ra[i].loss, rb[i].loss) << "record " << i;
    EXPECT_EQ(ra[i].scale, rb[i].scale) << "record " << i;
    EXPECT_EQ(ra[i].skipped, rb[i].skipped) << "record " << i;
  }
  // The checkpoint holds the fp32 masters, and another dtype cannot resume it.
  EXPECT_EQ(mox::nn::read_checkpoint_metadata(path("ck.safetensors")).at("dtype"), "fp16");
  ProgramResult other = run(common + " --dtype bf16 --max-steps 30 --resume " + sh_quote(path("ck.safetensors")));
  EXPECT_EQ(other.code, 1) << other.output;
  EXPECT_CONTAINS(other.output, "was trained with --dtype fp16, but this run has --dtype bf16; resume with --dtype fp16");
}
