// cuda_test.h — for tests that compare the CUDA backend with the CPU reference.
//
// REQUIRE_CUDA() skips the test, saying why, when no CUDA backend can run here (built without
// it, or no GPU visible); GoogleTest's summary then counts the skipped CUDA tests. cuda(t)
// copies a CPU tensor to the GPU; expect_close(gpu, cpu, rtol, atol) compares a CUDA result
// with the CPU reference element by element (PyTorch's CPU/CUDA tolerance for f32 is
// rtol = atol = 1e-3; integer and index results use expect_equal).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tensor/backend.h"
#include "tensor/ops.h"

namespace mox::testing {

// "CUDA unavailable: " + why (scripts/gpu_check.sh counts the skips by that prefix).
inline std::string cuda_skip_reason() { return "CUDA unavailable: " + cuda_unavailable_reason(); }

#define REQUIRE_CUDA() \
  if (!::mox::backend_available(::mox::DeviceType::CUDA)) GTEST_SKIP() << ::mox::testing::cuda_skip_reason()

inline Tensor cuda(const Tensor& t) { return raw::to_device(t, Device::cuda()); }

// Every element of `gpu` (copied back) within atol + rtol·|cpu| of `cpu`; same shape and dtype.
inline void expect_close(const Tensor& gpu, const Tensor& cpu, double rtol, double atol, const std::string& what = "") {
  ASSERT_EQ(gpu.shape(), cpu.shape()) << what;
  ASSERT_EQ(gpu.dtype(), cpu.dtype()) << what;
  const std::vector<double> g = raw::to_device(gpu, Device::cpu()).to_vector<double>(), c = cpu.to_vector<double>();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool same_nonfinite = !std::isfinite(c[i]) && (g[i] == c[i] || (std::isnan(g[i]) && std::isnan(c[i])));
    if (!same_nonfinite && !(std::abs(g[i] - c[i]) <= atol + rtol * std::abs(c[i]))) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements differ; first at " << first << ": cuda "
                    << (first >= 0 ? g[size_t(first)] : 0) << " vs cpu " << (first >= 0 ? c[size_t(first)] : 0);
}

inline void expect_equal(const Tensor& gpu, const Tensor& cpu, const std::string& what = "") {
  expect_close(gpu, cpu, 0, 0, what);
}

}  // namespace mox::testing
