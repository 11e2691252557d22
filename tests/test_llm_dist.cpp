// test_llm_dist.cpp — `mox-llm train` distributed: 2 ranks started by scripts/moxrun against
// one process training on the same global batch.
//
// Checked: (1) dense, no dropout: data parallel over 2 ranks gives the one-process loss curve
// (every logged train loss and both evaluations within 1e-6 relative — the ranks take the two
// halves of the one-process batch and the averaged gradient is the global batch's), rank 0
// alone prints and writes the checkpoint, and with no --threads each rank takes
// $OMP_NUM_THREADS from moxrun; (2) MoE with --ep-size 2 (4 experts, 2 per rank), routing that
// sharding cannot change (top-1, no noise, dropless) and clipping active: without l_aux the
// curve and routing equal the one-process run's within 1e-6 (this catches a clipping norm over
// a rank's own experts only); with l_aux (computed per rank, as DeepSpeed) the first loss is
// the one-process loss and the curve stays within 1e-3; (3) usage errors exit 2 naming both numbers: a global batch not
// divisible by the ranks, an --ep-size that does not divide the ranks or an expert count,
// --out with expert parallelism, and a single-process command started on 2 ranks.
//
// Tiny model (2 layers, width 16) and a tiny corpus written to a temporary directory; each
// run takes about a second, most of it mpirun's start-up. Skips without mpirun on PATH.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/child_process.h"
#include "tests/moxrun.h"
#include "tests/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using mox::testing::ProgramResult;
using mox::testing::sh_quote;

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class LlmDist : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = mox::testing::program_beside_tests("mox-llm");
    if (binary_.empty()) GTEST_SKIP() << "mox-llm not built beside mox-tests (make all)";
    moxrun_ = mox::testing::moxrun_script();
    if (moxrun_.empty()) GTEST_SKIP() << "scripts/moxrun not found three levels above the test binary";
    if (!mox::testing::on_path("mpirun")) GTEST_SKIP() << "mpirun not on PATH (make deps installs openmpi-bin)";
    std::ofstream out(dir_.path("text.txt"));
    for (int i = 0; i < 40; ++i) out << "First Citizen: Before we proceed any further, hear me speak.\n";
    data_ = dir_.path("text.txt");
  }
  // One process, started plainly (a one-rank world, no MPI).
  ProgramResult one(const std::string& args) const { return mox::testing::run_program(binary_, args); }
  // Two ranks under moxrun: OMP_NUM_THREADS=1 each, a 60 s collective deadline (a hang fails).
  ProgramResult two(const std::string& args) const {
    return mox::testing::run_moxrun(moxrun_, "--num_gpus 2 --threads 1 --timeout 60 " + sh_quote(binary_.string()) +
                                                 " " + args);
  }
  std::string common() const {
    // --device cpu: the one-process reference must be a CPU run on a GPU machine too (auto would
    // take the GPU there); the ranks run on the CPU either way (MPI collectives).
    return "train --device cpu --data " + sh_quote(data_) +
           " --n-layer 2 --n-head 2 --n-embd 16 --block-size 16 --batch-size 4 --eval-iters 2 --max-iters 6"
           " --log-interval 1 --eval-interval 6 --warmup-iters 1 --lr-decay-iters 6 --seed 3";
  }
  std::string metrics(const std::string& name) const { return " --metrics " + sh_quote(dir_.path(name)); }
  // The records of `split` in a metrics file.
  std::vector<nlohmann::json> records(const std::string& name, const std::string& split) const {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_.path(name));
    for (std::string line; std::getline(in, line);) {
      nlohmann::json r = nlohmann::json::parse(line);
      if (r["split"] == split) out.push_back(r);
    }
    return out;
  }
  // Every "loss" of `split`, in order.
  std::vector<double> losses(const std::string& name, const std::string& split) const {
    std::vector<double> out;
    for (const nlohmann::json& r : records(name, split)) out.push_back(r["loss"].get<double>());
    return out;
  }
  static void expect_close(const std::vector<double>& a, const std::vector<double>& b, double rtol,
                           const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_LE(std::fabs(a[i] - b[i]), rtol * std::fabs(b[i])) << what << " " << i << ": " << a[i] << " vs " << b[i];
  }

  mox::testing::TempDir dir_{"mox-llm-dist"};
  fs::path binary_, moxrun_;
  std::string data_;
};

TEST_F(LlmDist, DenseDataParallelFollowsOneProcess) {
  // No dropout: the only difference is where the gradient of each half batch is computed.
  const ProgramResult a = one(common() + " --threads 1 --out " + sh_quote(dir_.path("a")) + metrics("a.jsonl"));
  ASSERT_EQ(a.code, 0) << a.output;
  const ProgramResult b = two(common() + " --out " + sh_quote(dir_.path("b")) + metrics("b.jsonl"));   // no --threads
  ASSERT_EQ(b.code, 0) << b.output;
  // Measured 4e-8 relative (rounding: two half-batch means averaged instead of one mean).
  expect_close(losses("b.jsonl", "train"), losses("a.jsonl", "train"), 1e-6, "train loss at log");
  ASSERT_EQ(losses("a.jsonl", "train").size(), 6u);
  expect_close(losses("b.jsonl", "val"), losses("a.jsonl", "val"), 1e-6, "val loss at evaluation");
  // Rank 0 alone prints (once) and writes the checkpoint; each rank took moxrun's OMP_NUM_THREADS.
  EXPECT_EQ(count_of(b.output, "mox-llm train: "), 1u) << b.output;
  EXPECT_EQ(count_of(b.output, "done: 6 iterations"), 1u) << b.output;
  EXPECT_NE(b.output.find("1 threads per rank; 2 ranks (2 sequences each), ep_size 1"), std::string::npos) << b.output;
  EXPECT_TRUE(fs::is_regular_file(dir_.path("b/last.safetensors")));
  // tokens/s counts the tokens of every rank.
  for (const nlohmann::json& r : records("b.jsonl", "train")) EXPECT_GT(r["tokens_per_s"].get<double>(), 0.0);
}

TEST_F(LlmDist, ExpertParallelMoEFollowsOneProcess) {
  // 4 experts in each block, 2 per rank with --ep-size 2. Settings under which sharding cannot
  // change the routing: top-1 with no gate noise (no random draw decides a token's expert) and
  // dropless (capacity is computed per rank from its own tokens, as in DeepSpeed, so with
  // dropping the two runs would legitimately keep different tokens). A small --grad-clip keeps
  // clipping active at every step and --lr 1e-2 makes each step count.
  const std::string moe = " --num-experts 4 --expert-interval 1 --top-k 1 --no-drop-tokens --grad-clip 0.05 --lr 1e-2";
  // (a) Without the load-balancing loss the sharded run is the one-process run up to rounding
  // (measured 4e-8 relative); a clipping norm over a rank's own experts only is off by 5e-6.
  const std::string no_aux = common() + moe + " --moe-loss-coeff 0";
  const ProgramResult a1 = one(no_aux + " --threads 1 --out " + sh_quote(dir_.path("a")) + metrics("a1.jsonl"));
  ASSERT_EQ(a1.code, 0) << a1.output;
  const ProgramResult a2 = two(no_aux + " --ep-size 2" + metrics("a2.jsonl"));
  ASSERT_EQ(a2.code, 0) << a2.output;
  EXPECT_NE(a2.output.find("2 ranks (2 sequences each), ep_size 2"), std::string::npos) << a2.output;
  EXPECT_NE(a2.output.find("no checkpoints written"), std::string::npos) << a2.output;
  ASSERT_EQ(losses("a1.jsonl", "train").size(), 6u);
  expect_close(losses("a2.jsonl", "train"), losses("a1.jsonl", "train"), 1e-6, "train loss at log");
  expect_close(losses("a2.jsonl", "val"), losses("a1.jsonl", "val"), 1e-6, "val loss at evaluation");
  // The routing records, summed over the ranks, are the one-process ones.
  const std::vector<nlohmann::json> ra = records("a1.jsonl", "routing"), rb = records("a2.jsonl", "routing");
  ASSERT_EQ(ra.size(), 12u);   // 2 layers x 6 steps
  ASSERT_EQ(rb.size(), 12u);
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(rb[i]["tokens_per_expert"], ra[i]["tokens_per_expert"]) << "record " << i;
    EXPECT_EQ(rb[i]["dropped_fraction"].get<double>(), 0.0);
    EXPECT_NEAR(rb[i]["entropy"].get<double>(), ra[i]["entropy"].get<double>(), 1e-6);
  }
  // (b) With l_aux (--moe-loss-coeff 0.01, the default): each rank computes l_aux over its own
  // tokens (as DeepSpeed does), not over the global batch, so after the first step the curves
  // differ slightly (measured 8e-5 relative); the first step's loss is the one-process loss.
  const ProgramResult b1 = one(common() + moe + " --threads 1 --out " + sh_quote(dir_.path("b")) + metrics("b1.jsonl"));
  ASSERT_EQ(b1.code, 0) << b1.output;
  const ProgramResult b2 = two(common() + moe + " --ep-size 2" + metrics("b2.jsonl"));
  ASSERT_EQ(b2.code, 0) << b2.output;
  const std::vector<double> l1 = losses("b1.jsonl", "train"), l2 = losses("b2.jsonl", "train");
  ASSERT_EQ(l1.size(), 6u);
  ASSERT_EQ(l2.size(), 6u);
  EXPECT_NEAR(l2[0], l1[0], 1e-6 * l1[0]) << "the first step's forward is the one-process forward";
  expect_close(l2, l1, 1e-3, "train loss at log (l_aux per rank)");
  for (const nlohmann::json& r : records("b2.jsonl", "train")) EXPECT_GT(r["aux_loss"].get<double>(), 0.0);
}

TEST_F(LlmDist, SplitErrorsExitTwoNamingBothNumbers) {
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {common() + " --batch-size 5", "--batch-size 5 (the global batch) must be divisible by the 2 ranks"},
      {common() + " --ep-size 4", "--ep-size 4 must divide the 2 ranks"},
      {common() + " --num-experts 3 --ep-size 2", "--ep-size 2 must divide every MoE layer's expert count, but block 1 has 3 experts"},
      {common() + " --num-experts 4 --ep-world-size 2 --out " + sh_quote(dir_.path("x")),
       "expert-parallel checkpoints are not supported yet by mox-llm"},
      {"generate --checkpoint " + sh_quote(dir_.path("x")), "mox-llm generate runs on one process, but this job has 2 ranks"},
  };
  for (const Case& c : cases) {
    const ProgramResult r = two(c.args);
    EXPECT_EQ(r.code, 2) << c.args << ":\n" << r.output;
    EXPECT_EQ(count_of(r.output, c.expect), 1u) << c.args << ": rank 0 alone prints\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(dir_.path("x")));
  // One process: --ep-size needs as many ranks.
  const ProgramResult r = one(common() + " --num-experts 2 --ep-size 2 --threads 1");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--ep-size 2 must divide the 1 rank of this job"), std::string::npos) << r.output;
}

}  // namespace
