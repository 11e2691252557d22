// main.cpp — the test binary's entry point: GoogleTest, with the OpenMP wait policy of
// every mox program (tensor/cpu/threads.h) so tests behave as the examples do.
#include <gtest/gtest.h>

#include "tensor/cpu/threads.h"

int main(int argc, char** argv) {
  mox::prefer_passive_openmp_wait(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
