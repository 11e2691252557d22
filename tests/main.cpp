// main.cpp — the test binary's entry point: GoogleTest, with the OpenMP wait policy and
// OpenBLAS kernels of every mox program (tensor/cpu/threads.h) so tests behave as the
// examples do. It ends
// with one plain summary line ("mox-tests: N passed, N failed, N skipped") that CI
// systems read without knowing GoogleTest's format.
#include <gtest/gtest.h>

#include <cstdio>

#include "tensor/cpu/threads.h"

int main(int argc, char** argv) {
  mox::configure_cpu_runtime(argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  const ::testing::UnitTest& u = *::testing::UnitTest::GetInstance();
  std::printf("mox-tests: %d passed, %d failed, %d skipped\n", u.successful_test_count(),
              u.failed_test_count(), u.skipped_test_count());
  return rc;
}
