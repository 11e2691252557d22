// main.cpp — entry point of mox-dist-tests, the multi-process suite run under mpirun.
//
// Every rank runs every test (tests adapt to the world size, or skip saying which size they
// need). Rank 0 prints GoogleTest's usual output; the other ranks print only their failures,
// prefixed with their rank. At the end the ranks agree on the number of failures, rank 0 prints
// one summary line ("mox-dist-tests (4 ranks): N passed, N failed, N skipped"), and a failure on
// any rank makes every rank exit non-zero. MOX_DIST_TIMEOUT (make test sets 120 s) turns a
// test that leaves its peers waiting into an error instead of a hung suite.
#include <gtest/gtest.h>

#include <cstdio>

#include "dist/world.h"
#include "tensor/cpu/threads.h"

namespace {

// Failure reports of a rank other than 0.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                 r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& t) override {
    if (t.result()->Failed())
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, t.test_suite_name(), t.name());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  mox::configure_cpu_runtime(argv);
  ::testing::InitGoogleTest(&argc, argv);
  int failed = 0;
  try {
    mox::dist::ProcessGroup& world = mox::dist::init();
    if (world.rank() != 0) {
      ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new RankFailurePrinter(world.rank()));
    }
    const int rc = RUN_ALL_TESTS();
    const ::testing::UnitTest& u = *::testing::UnitTest::GetInstance();
    mox::Tensor counts = mox::from_vector<int64_t>(
        {u.successful_test_count(), u.failed_test_count(), u.skipped_test_count(), rc != 0}, {4});
    world.all_reduce(counts, mox::dist::ReduceOp::max);
    const std::vector<int64_t> c = counts.to_vector<int64_t>();
    if (world.rank() == 0)
      std::printf("mox-dist-tests (%d ranks): %lld passed, %lld failed, %lld skipped\n", world.size(),
                  (long long)c[0], (long long)c[1], (long long)c[2]);
    failed = c[3] != 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mox-dist-tests: %s\n", e.what());
    failed = 1;
  }
  std::fflush(stdout);
  return mox::dist::finish(failed);
}
