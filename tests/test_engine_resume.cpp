// test_engine_resume.cpp — an engine checkpoint saved by one distributed layout resumes under
// others: saved at (world 4, ep_size 2) with ZeRO-1, loaded at (world 2, ep_size 1) and at
// (world 4, ep_size 4); the global loss on the next batch and the loss after one more step
// (which needs the remapped Adam state) match the saving run within rtol 1e-5. Three jobs of
// mox-dist-tests' EngineCheckpointPhase test, started through scripts/moxrun (this file only
// orchestrates; the phase test checks the numbers and fails its job on a mismatch).
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/child_process.h"
#include "tests/expect_error.h"
#include "tests/moxrun.h"
#include "tests/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using mox::testing::ProgramResult;
using mox::testing::sh_quote;

TEST(EngineResume, CheckpointMovesBetweenWorldAndExpertParallelSizes) {
  const fs::path tests = mox::testing::program_beside_tests("mox-dist-tests");
  if (tests.empty()) GTEST_SKIP() << "mox-dist-tests not built beside mox-tests";
  const fs::path moxrun = mox::testing::moxrun_script();
  if (moxrun.empty()) GTEST_SKIP() << "scripts/moxrun not found three levels above the test binary";
  if (!mox::testing::on_path("mpirun")) GTEST_SKIP() << "mpirun not on PATH (install openmpi-bin: `make deps`)";
  mox::testing::TempDir dir("mox-engine-resume");
  auto job = [&](const std::string& phase, int ranks, int ep) {
    const std::string env = "MOX_ENGINE_CKPT_PHASE=" + phase + " MOX_ENGINE_CKPT_DIR=" + sh_quote(dir.path("")) +
                            " MOX_ENGINE_CKPT_EP=" + std::to_string(ep) + " ";
    return mox::testing::run_moxrun(moxrun, "--num_gpus " + std::to_string(ranks) + " --threads 1 --timeout 60 " +
                                                sh_quote(tests.string()) +
                                                " --gtest_filter=EngineCheckpointPhase.* --gtest_color=no",
                                    env);
  };
  ProgramResult saved = job("save", 4, 2);
  ASSERT_EQ(saved.code, 0) << saved.output;
  EXPECT_CONTAINS(saved.output, "saved at world 4 ep 2");
  EXPECT_CONTAINS(saved.output, "1 passed, 0 failed");
  for (auto [ranks, ep] : {std::pair{2, 1}, std::pair{4, 4}}) {
    ProgramResult loaded = job("load", ranks, ep);
    EXPECT_EQ(loaded.code, 0) << loaded.output;
    EXPECT_CONTAINS(loaded.output, "loaded at world " + std::to_string(ranks) + " ep " + std::to_string(ep));
    EXPECT_CONTAINS(loaded.output, "1 passed, 0 failed");
  }
}

}  // namespace
