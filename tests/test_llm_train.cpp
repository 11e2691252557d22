// test_llm_train.cpp — `mox-llm train` end to end on tiny corpora written by the test.
//
// Exact resume: an MoE model with dropout and RSample routing noise trained 6 steps in one
// run, and 4 steps + a resumed run to 6, give bitwise-identical train losses (the
// optimizer, both generators, the step and the best loss travel in the checkpoint).
// Evaluating more often leaves the training losses unchanged. Overfitting: a tiny model
// learns a short text to near-zero loss. Distillation runs and its KD term stops at
// --kd-stop-iter. Usage errors, including contradictory flags, exit 2. Each run is a small
// model (2 layers, width 16) and takes well under a second.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "tests/child_process.h"

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
  mox::testing::ProgramResult train(const std::string& args) const { return mox::testing::run_program(binary_, "train " + args); }
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
  auto a = train(common + " --max-iters 6 --out " + sh_quote(path("a")) + " --metrics " + sh_quote(path("a.jsonl")));
  ASSERT_EQ(a.code, 0) << a.output;
  // The first part stops at step 4, which is not an evaluation step of the full run.
  auto b1 = train(common + " --max-iters 4 --out " + sh_quote(path("b")) + " --metrics " + sh_quote(path("b.jsonl")));
  ASSERT_EQ(b1.code, 0) << b1.output;
  auto b2 = train(common + " --max-iters 6 --resume --out " + sh_quote(path("b")) + " --metrics " + sh_quote(path("b.jsonl")));
  ASSERT_EQ(b2.code, 0) << b2.output;
  EXPECT_NE(b2.output.find("resumed from"), std::string::npos) << b2.output;
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
  auto s = mox::testing::run_program(binary_, "distill" + common + " --teacher " + sh_quote(path("teacher")) +
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

}  // namespace
