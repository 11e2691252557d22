// test_llm_train.cpp — `mox-llm train` end to end on tiny corpora written by the test.
//
// Exact resume: an MoE model with dropout and RSample routing noise trained 6 steps in one
// run, and 4 steps + a resumed run to 6, give bitwise-identical train losses (the
// optimizer, both generators, the step and the best loss travel in the checkpoint).
// Evaluating more often leaves the training losses unchanged. Overfitting: a tiny model
// learns a short text to near-zero loss. Distillation runs and its KD term stops at
// --kd-stop-iter. Usage errors, including contradictory flags, exit 2. Mixed precision: bf16
// trains, its checkpoint (fp32 masters) serves generate and distill; fp16 from too high a loss
// scale skips the overflowing steps, reports them, resumes bitwise with the scaler's state, and
// refuses a resume with another dtype. Each run is a small model (2 layers, width 16) and takes
// well under a second.
//
// Devices: the runs above pin --device cpu (their exactness is the CPU's; on a GPU machine auto
// would take the GPU, where the MoE layers do not run yet). --device: an unusable device exits 2
// saying why on every command; an explicit cpu runs. On a GPU (REQUIRE_CUDA, skipped here): a
// dense model trains on cuda close to the CPU run, resumes on cuda and on the CPU from a
// checkpoint written on the GPU, distils from a teacher moved to the GPU, evaluates and
// generates there, and an int8 checkpoint stays on the CPU (exit 2 with an explicit cuda).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>
#include <vector>

#include "tensor/backend.h"
#include "tests/child_process.h"
#include "tests/cuda_test.h"

namespace {

namespace fs = std::filesystem;
using mox::testing::sh_quote;

class LlmTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = mox::testing::program_beside_tests("mox-llm");
    if (binary_.empty()) GTEST_SKIP() << "mox-llm not built beside mox-tests (make all)";
    std::string tmpl = (fs::temp_directory_path() / "mox-llm-train-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string corpus(const std::string& name, const std::string& text, int repeat) const {
    std::ofstream out(path(name));
    for (int i = 0; i < repeat; ++i) out << text;
    return path(name);
  }
  // `mox-llm train --device cpu <args>`, and any command line as given.
  mox::testing::ProgramResult train(const std::string& args) const { return run("train --device cpu " + args); }
  mox::testing::ProgramResult run(const std::string& args) const { return mox::testing::run_program(binary_, args); }
  // The resume tests' pattern: one training run whole (`total` iterations into a/, metrics
  // a.jsonl) and the same run split in two (`split` iterations into b/, then --resume to
  // `total`; metrics of both parts in b.jsonl).
  struct WholeAndResumed {
    mox::testing::ProgramResult whole, first, resumed;
  };
  WholeAndResumed train_whole_and_resumed(const std::string& common, int split, int total) const {
    const std::string b = " --out " + sh_quote(path("b")) + " --metrics " + sh_quote(path("b.jsonl"));
    WholeAndResumed r;
    r.whole = train(common + " --max-iters " + std::to_string(total) + " --out " + sh_quote(path("a")) + " --metrics " +
                    sh_quote(path("a.jsonl")));
    r.first = train(common + " --max-iters " + std::to_string(split) + b);
    r.resumed = train(common + " --max-iters " + std::to_string(total) + " --resume" + b);
    return r;
  }
  // The "loss" of every record of `split` in a metrics file, as written (exact text).
  static std::vector<std::string> losses(const std::string& file, const std::string& split, int64_t from_step = 0) {
    std::vector<std::string> out;
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      nlohmann::json r = nlohmann::json::parse(line);
      if (r["split"] == split && r["step"].get<int64_t>() >= from_step) out.push_back(r["loss"].dump());
    }
    return out;
  }
  fs::path binary_;
  std::string dir_;
};

const char* kTinyModel =
    " --n-layer 2 --n-head 2 --n-embd 16 --block-size 16 --batch-size 4 --eval-iters 2 --threads 1";

TEST_F(LlmTrain, ResumeIsBitwiseExact) {
  const std::string data = corpus("text.txt", "First Citizen: Before we proceed any further, hear me speak.\n", 40);
  const std::string common = " --data " + sh_quote(data) + kTinyModel +
                             " --num-experts 2 --expert-interval 2 --top-k 1 --noisy-gate-policy RSample"
                             " --dropout 0.1 --eval-interval 3 --log-interval 1 --warmup-iters 2 --lr-decay-iters 6 --seed 5";
  // The first part stops at step 4, which is not an evaluation step of the full run.
  const WholeAndResumed r = train_whole_and_resumed(common, 4, 6);
  ASSERT_EQ(r.whole.code, 0) << r.whole.output;
  ASSERT_EQ(r.first.code, 0) << r.first.output;
  ASSERT_EQ(r.resumed.code, 0) << r.resumed.output;
  EXPECT_NE(r.resumed.output.find("resumed from"), std::string::npos) << r.resumed.output;
  const std::vector<std::string> la = losses(path("a.jsonl"), "train"), lb = losses(path("b.jsonl"), "train");
  ASSERT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb);   // steps 1–4 from the first part, 5–6 from the resumed run
  // The full run evaluated at 0, 3, 6; the split one also at 4 (its end), nothing else differs.
  std::vector<std::string> va = losses(path("a.jsonl"), "val"), vb = losses(path("b.jsonl"), "val");
  ASSERT_EQ(vb.size(), 4u);
  vb.erase(vb.begin() + 2);
  EXPECT_EQ(va, vb);
  EXPECT_TRUE(fs::is_regular_file(path("b/last.safetensors")));
  EXPECT_TRUE(fs::is_regular_file(path("b/best.safetensors")));
}

TEST_F(LlmTrain, EvaluatingMoreOftenLeavesTrainingUnchanged) {
  // Evaluation runs in eval mode, where neither dropout nor MoE routing draws random numbers,
  // on batches from a generator of its own: the train losses must not depend on it.
  const std::string data = corpus("text.txt", "Before we proceed any further, hear me speak.\n", 40);
  const std::string common = " --data " + sh_quote(data) + kTinyModel +
                             " --num-experts 2 --expert-interval 2 --top-k 1 --noisy-gate-policy RSample"
                             " --dropout 0.1 --log-interval 1 --max-iters 6 --warmup-iters 2 --lr-decay-iters 6";
  auto a = train(common + " --eval-interval 2 --out " + sh_quote(path("a")) + " --metrics " + sh_quote(path("a.jsonl")));
  ASSERT_EQ(a.code, 0) << a.output;
  auto b = train(common + " --eval-interval 5 --out " + sh_quote(path("b")) + " --metrics " + sh_quote(path("b.jsonl")));
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_EQ(losses(path("a.jsonl"), "train"), losses(path("b.jsonl"), "train"));
  // Routing records name the MoE layer and its block.
  std::ifstream in(path("a.jsonl"));
  int routing = 0;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["split"] != "routing") continue;
    ++routing;
    EXPECT_EQ(j["layer"], 0);
    EXPECT_EQ(j["block"], 1);   // --expert-interval 2: the second block
    EXPECT_EQ(j["tokens_per_expert"].size(), 2u);
    EXPECT_TRUE(j.contains("entropy") && j.contains("dropped_fraction") && j.contains("l_aux"));
  }
  EXPECT_EQ(routing, 6);
}

TEST_F(LlmTrain, TinyModelOverfitsAShortText) {
  // Every character has one successor, so the loss can go to zero at every position.
  const std::string data = corpus("short.txt", "abcdefghijklmnopqrstuvwxyz0123456789\n", 8);
  auto r = train("--data " + sh_quote(data) + kTinyModel +
                 " --max-iters 600 --lr 1e-2 --min-lr 1e-3 --warmup-iters 10 --lr-decay-iters 600 --weight-decay 0"
                 " --eval-interval 600 --out " + sh_quote(path("o")) + " --metrics " + sh_quote(path("o.jsonl")));
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream in(path("o.jsonl"));
  double final_train = -1;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["split"] == "val") final_train = j["train_loss"].get<double>();
  }
  EXPECT_GE(final_train, 0.0);
  EXPECT_LT(final_train, 0.05) << "starts at ln(vocab) ≈ 2.8";
}

TEST_F(LlmTrain, DistillTrainsAStudentFromATeacher) {
  const std::string data = corpus("text.txt", "Before we proceed any further, hear me speak.\n", 40);
  const std::string common = " --data " + sh_quote(data) + " --batch-size 4 --eval-iters 2 --threads 1 --eval-interval 4";
  auto t = train(common + " --n-layer 2 --n-head 2 --n-embd 16 --block-size 16 --num-experts 2 --expert-interval 1"
                          " --top-k 1 --max-iters 4 --out " + sh_quote(path("teacher")));
  ASSERT_EQ(t.code, 0) << t.output;
  auto s = mox::testing::run_program(binary_, "distill --device cpu" + common + " --teacher " + sh_quote(path("teacher")) +
                                                  " --student-layers 1 --kd-beta 2 --kd-temp 2 --kd-stop-iter 2"
                                                  " --max-iters 4 --log-interval 1 --out " + sh_quote(path("student")) +
                                                  " --metrics " + sh_quote(path("s.jsonl")));
  ASSERT_EQ(s.code, 0) << s.output;
  // Staged KD: the distillation term is there for steps 1–2 and gone from step 3 on.
  std::vector<double> kd;
  std::ifstream in(path("s.jsonl"));
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["split"] == "train") kd.push_back(j["kd_loss"].get<double>());
  }
  ASSERT_EQ(kd.size(), 4u);
  EXPECT_GT(kd[0], 0.0);
  EXPECT_GT(kd[1], 0.0);
  EXPECT_EQ(kd[2], 0.0);
  EXPECT_EQ(kd[3], 0.0);
  EXPECT_NE(s.output.find("layers=1"), std::string::npos) << s.output;
  EXPECT_NE(s.output.find("MoE"), std::string::npos) << s.output;   // the teacher's experts, cut to one layer
}

TEST_F(LlmTrain, UsageErrorsExitTwoNamingTheFlag) {
  struct Case { std::string args, expect; };
  const std::vector<Case> cases = {
      {"train --n-layer 0", "--n-layer"},
      {"train --lr nan", "--lr"},
      {"train --dropout 1", "--dropout"},
      {"train --arch bert", "bert"},
      {"train --preset shakespeare-tpu", "shakespeare-tpu"},
      {"train --noisy-gate-policy Gaussian", "Gaussian"},
      {"distill --student-layers 2", "--teacher"},
      {"fly", "unknown command 'fly'"},
      {"train --n-embd 100 --n-head 3", "must be a multiple of n_head 3"},
      {"train --num-experts 4 --top-k 2 --noisy-gate-policy RSample", "RSample"},
      {"train --warmup-iters 500 --lr-decay-iters 400", "--lr-decay-iters 400 must exceed --warmup-iters 500"},
      {"train --lr 1e-4 --min-lr 1e-3", "--min-lr"},
      {"distill --teacher x --student-layers 1 --n-embd 64", "--n-embd"},
      {"train --dtype fp8", "--dtype: fp8 not in {fp32,fp16,bf16}"},
      {"train --dtype bf16 --min-loss-scale 2", "--min-loss-scale sets the fp16 loss scaler; it needs --dtype fp16"},
      {"distill --teacher x --student-layers 1 --dtype half", "--dtype: half not in"},
  };
  for (const Case& c : cases) {
    auto r = mox::testing::run_program(binary_, c.args);
    EXPECT_EQ(r.code, 2) << c.args << ":\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << ":\n" << r.output;
  }
  // Flags that contradict each other are usage errors too; a missing corpus is a runtime
  // error (exit 1) naming the file.
  auto missing = train("--data " + sh_quote(path("absent.txt")) + " --out " + sh_quote(path("x")));
  EXPECT_EQ(missing.code, 1) << missing.output;
  EXPECT_NE(missing.output.find(path("absent.txt")), std::string::npos) << missing.output;
  const std::string data = corpus("t.txt", "abcdefghijklmnopqrstuvwxyz\n", 20);
  auto pyramid = train("--data " + sh_quote(data) + kTinyModel + " --num-experts 2 4 8 --expert-interval 1 --out " +
                       sh_quote(path("y")));
  EXPECT_EQ(pyramid.code, 2) << pyramid.output;
  EXPECT_NE(pyramid.output.find("--num-experts has 3 entries"), std::string::npos) << pyramid.output;
}

TEST_F(LlmTrain, MixedPrecisionTrainsResumesExactlyAndItsCheckpointsServeGenerate) {
  const std::string data = corpus("text.txt", "First Citizen: Before we proceed any further, hear me speak.\n", 40);
  const std::string common = " --data " + sh_quote(data) + kTinyModel +
                             " --num-experts 2 --expert-interval 2 --top-k 1 --eval-interval 3 --log-interval 1"
                             " --warmup-iters 2 --lr-decay-iters 6 --seed 5";
  // bf16: trains; the checkpoint holds fp32 weights, which generate and distill read as usual.
  auto bf16 = train(common + " --dtype bf16 --max-iters 4 --out " + sh_quote(path("bf16")) + " --metrics " +
                    sh_quote(path("bf16.jsonl")));
  ASSERT_EQ(bf16.code, 0) << bf16.output;
  EXPECT_NE(bf16.output.find("bf16 (fp32 master weights)"), std::string::npos) << bf16.output;
  const std::vector<std::string> bf16_losses = losses(path("bf16.jsonl"), "train");
  ASSERT_EQ(bf16_losses.size(), 4u);
  for (const std::string& l : bf16_losses) EXPECT_TRUE(std::isfinite(std::stod(l))) << l;
  auto gen = run("generate --device cpu --checkpoint " + sh_quote(path("bf16")) + " --max-new-tokens 5 --threads 1");
  EXPECT_EQ(gen.code, 0) << gen.output;
  auto student = run("distill --device cpu --data " + sh_quote(data) + " --teacher " + sh_quote(path("bf16")) +
                     " --student-layers 1 --batch-size 4 --eval-iters 2 --threads 1 --max-iters 2 --eval-interval 2"
                     " --dtype bf16 --out " + sh_quote(path("student")));
  EXPECT_EQ(student.code, 0) << student.output;
  // fp16 from a loss scale of 2^20: the first steps overflow and are skipped (hysteresis 1 halves
  // the scale each time), the metrics say so, and a resumed run continues bitwise, scaler included.
  const std::string fp16 = common + " --dtype fp16 --initial-scale-power 20 --hysteresis 1";
  const WholeAndResumed r = train_whole_and_resumed(fp16, 4, 6);
  ASSERT_EQ(r.whole.code, 0) << r.whole.output;
  ASSERT_EQ(r.first.code, 0) << r.first.output;
  ASSERT_EQ(r.resumed.code, 0) << r.resumed.output;
  // (loss as written, loss_scale, skipped_steps) of each train record.
  using Record = std::tuple<std::string, double, int64_t>;
  auto records = [](const std::string& file) {
    std::vector<Record> out;
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      nlohmann::json r = nlohmann::json::parse(line);
      if (r["split"] == "train") out.emplace_back(r["loss"].dump(), r["loss_scale"], r["skipped_steps"]);
    }
    return out;
  };
  const std::vector<Record> ra = records(path("a.jsonl")), rb = records(path("b.jsonl"));
  ASSERT_EQ(ra.size(), 6u);
  EXPECT_EQ(ra, rb);
  EXPECT_EQ(std::get<2>(ra[0]), 1);   // step 1 overflowed
  EXPECT_EQ(std::get<1>(ra[0]), std::ldexp(1.0, 19));
  EXPECT_LT(std::get<2>(ra.back()), 6);   // and some steps were taken
  auto other = train(common + " --dtype bf16 --max-iters 8 --resume --out " + sh_quote(path("b")));
  EXPECT_EQ(other.code, 1) << other.output;
  EXPECT_NE(other.output.find("was trained with --dtype fp16, but this run has --dtype bf16"), std::string::npos)
      << other.output;
}

// The "loss" values of `split` in a metrics file, as numbers.
std::vector<double> loss_values(const std::string& file, const std::string& split) {
  std::vector<double> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    nlohmann::json r = nlohmann::json::parse(line);
    if (r["split"] == split) out.push_back(r["loss"].get<double>());
  }
  return out;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], rtol * std::abs(want[i])) << what << " #" << i;
}

// The number after `key` in `text` (NaN when absent).
double number_after(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  return at == std::string::npos ? NAN : std::strtod(text.c_str() + at + key.size(), nullptr);
}

TEST_F(LlmTrain, UnusableDeviceExitsTwoSayingWhyOnEveryCommand) {
  const std::string data = corpus("t.txt", "abcdefghijklmnopqrstuvwxyz\n", 20);
  const std::string ckpt = sh_quote(path("none.safetensors"));
  for (const std::string& cmd : {"train --data " + sh_quote(data), "distill --student-layers 1 --teacher " + ckpt,
                                "generate --checkpoint " + ckpt, "eval --checkpoint " + ckpt}) {
    const auto bad = run(cmd + " --device gpu");
    EXPECT_EQ(bad.code, 2) << cmd << ":\n" << bad.output;
    EXPECT_NE(bad.output.find("'gpu' is not a device (cpu, cuda, cuda:0 or auto)"), std::string::npos) << bad.output;
    if (!mox::backend_available(mox::DeviceType::CUDA)) {   // this machine: which reason it is
      const auto cuda = run(cmd + " --device cuda");
      EXPECT_EQ(cuda.code, 2) << cmd << ":\n" << cuda.output;
      EXPECT_NE(cuda.output.find("'cuda': " + mox::cuda_unavailable_reason()), std::string::npos) << cuda.output;
    } else {
      const auto second = run(cmd + " --device cuda:1");
      EXPECT_EQ(second.code, 2) << cmd << ":\n" << second.output;
      EXPECT_NE(second.output.find("one GPU per process"), std::string::npos) << second.output;
    }
  }
  const auto quantize = run("quantize --checkpoint " + ckpt + " --out " + sh_quote(path("q")) + " --device cpu");
  EXPECT_EQ(quantize.code, 2) << quantize.output;   // quantize runs on the CPU: it has no --device
  EXPECT_NE(quantize.output.find("--device"), std::string::npos) << quantize.output;
}

TEST_F(LlmTrain, ExplicitCpuDeviceTrainsEvaluatesAndGeneratesAnnouncingIt) {
  const std::string data = corpus("text.txt", "First Citizen: Before we proceed any further, hear me speak.\n", 40);
  const std::string common = "--data " + sh_quote(data) + kTinyModel + " --max-iters 3 --eval-interval 3 --log-interval 1";
  const auto r = run("train --device cpu " + common + " --out " + sh_quote(path("o")) + " --metrics " +
                     sh_quote(path("cpu.jsonl")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(", device cpu"), std::string::npos) << r.output;   // announced once, in the banner
  EXPECT_EQ(loss_values(path("cpu.jsonl"), "train").size(), 3u);
  const auto e = run("eval --device cpu --checkpoint " + sh_quote(path("o")) + " --data " + sh_quote(data) + " --eval-iters 1");
  ASSERT_EQ(e.code, 0) << e.output;
  EXPECT_NE(e.output.find("device cpu"), std::string::npos) << e.output;
  const auto g = run("generate --device cpu --checkpoint " + sh_quote(path("o")) + " --max-new-tokens 5");
  ASSERT_EQ(g.code, 0) << g.output;
  EXPECT_NE(g.output.find("device cpu"), std::string::npos) << g.output;
  if (!mox::backend_available(mox::DeviceType::CUDA)) {   // auto is the CPU here: the same run, bitwise
    const auto a = run("train " + common + " --out " + sh_quote(path("a")) + " --metrics " + sh_quote(path("auto.jsonl")));
    ASSERT_EQ(a.code, 0) << a.output;
    EXPECT_EQ(losses(path("auto.jsonl"), "train"), losses(path("cpu.jsonl"), "train"));
  }
}

// On a GPU only. Dense model (the MoE model on CUDA: tests/test_cuda_modules.cpp).
TEST_F(LlmTrain, CudaTrainsResumesAcrossDevicesDistilsEvaluatesAndGenerates) {
  REQUIRE_CUDA();
  const std::string data = corpus("text.txt", "First Citizen: Before we proceed any further, hear me speak.\n", 40);
  const std::string common = "--data " + sh_quote(data) + kTinyModel +
                             " --eval-interval 2 --log-interval 1 --warmup-iters 2 --lr-decay-iters 6 --seed 5";
  auto train_on = [&](const std::string& device, const std::string& dir, int iters, bool resume = false) {
    return run("train --device " + device + " " + common + " --max-iters " + std::to_string(iters) + " --out " +
               sh_quote(path(dir)) + " --metrics " + sh_quote(path(dir + ".jsonl")) + (resume ? " --resume" : ""));
  };
  const auto cpu = train_on("cpu", "cpu", 6);
  ASSERT_EQ(cpu.code, 0) << cpu.output;
  const auto gpu = train_on("cuda", "gpu", 6);
  ASSERT_EQ(gpu.code, 0) << gpu.output;
  EXPECT_NE(gpu.output.find(", device cuda:0"), std::string::npos) << gpu.output;
  const std::vector<double> want = loss_values(path("cpu.jsonl"), "train"), got = loss_values(path("gpu.jsonl"), "train");
  expect_close(got, want, 1e-3, "cuda vs cpu train loss");
  expect_close(loss_values(path("gpu.jsonl"), "val"), loss_values(path("cpu.jsonl"), "val"), 1e-3, "cuda vs cpu val loss");

  // Resume on the GPU from a checkpoint written there (4 steps + 2), and on the CPU.
  ASSERT_EQ(train_on("cuda", "split", 4).code, 0);
  const auto resumed = train_on("cuda", "split", 6, true);
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed from"), std::string::npos) << resumed.output;
  expect_close(loss_values(path("split.jsonl"), "train"), got, 1e-6, "cuda resumed on cuda");
  ASSERT_EQ(train_on("cuda", "moved", 4).code, 0);
  const auto on_cpu = train_on("cpu", "moved", 6, true);
  ASSERT_EQ(on_cpu.code, 0) << on_cpu.output;
  expect_close(loss_values(path("moved.jsonl"), "train"), got, 1e-3, "cuda checkpoint resumed on the cpu");

  // Distillation with the teacher moved to the GPU.
  const auto d = run("distill --device cuda --data " + sh_quote(data) + " --teacher " + sh_quote(path("gpu")) +
                     " --student-layers 1 --batch-size 4 --eval-iters 2 --threads 1 --max-iters 2 --eval-interval 2"
                     " --out " + sh_quote(path("student")));
  ASSERT_EQ(d.code, 0) << d.output;
  EXPECT_NE(d.output.find(", device cuda:0"), std::string::npos) << d.output;

  // eval and generate on the GPU; the loss is the CPU's up to rounding.
  const std::string eval = "eval --checkpoint " + sh_quote(path("gpu")) + " --data " + sh_quote(data) + " --device ";
  const auto ec = run(eval + "cpu"), eg = run(eval + "cuda");
  ASSERT_EQ(ec.code, 0) << ec.output;
  ASSERT_EQ(eg.code, 0) << eg.output;
  EXPECT_NE(eg.output.find("device cuda:0"), std::string::npos) << eg.output;
  EXPECT_NEAR(number_after(eg.output, "val loss "), number_after(ec.output, "val loss "), 1e-3) << eg.output;
  for (const std::string cache : {"", " --no-kv-cache"}) {
    const auto g = mox::testing::run_program(binary_,
                                             "generate --device cuda --checkpoint " + sh_quote(path("gpu")) +
                                                 " --prompt 'First' --max-new-tokens 30" + cache,
                                             mox::testing::Stderr::discard);
    ASSERT_EQ(g.code, 0) << g.output;
    EXPECT_EQ(g.output.size(), 5 + 30 + std::string("\n---------------\n").size()) << g.output;
  }

  // An int8 checkpoint runs on the CPU: auto takes it there, an explicit cuda is a usage error.
  ASSERT_EQ(run("quantize --checkpoint " + sh_quote(path("gpu")) + " --out " + sh_quote(path("q.safetensors"))).code, 0);
  const auto q_auto = run("eval --checkpoint " + sh_quote(path("q.safetensors")) + " --data " + sh_quote(data));
  ASSERT_EQ(q_auto.code, 0) << q_auto.output;
  EXPECT_NE(q_auto.output.find("device cpu (int8 weights run on the CPU)"), std::string::npos) << q_auto.output;
  const auto q_cuda = run("eval --device cuda --checkpoint " + sh_quote(path("q.safetensors")) + " --data " + sh_quote(data));
  EXPECT_EQ(q_cuda.code, 2) << q_cuda.output;
  EXPECT_NE(q_cuda.output.find("is int8-quantized"), std::string::npos) << q_cuda.output;
}

}  // namespace
