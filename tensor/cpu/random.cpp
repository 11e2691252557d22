// random.cpp — CPU fills from the counter-based Philox stream (tensor/random.h).
// Element i of the output uses counter offset+i, so the result does not depend on the
// number of threads, and the CUDA backend produces the same values.
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/random.h"

namespace mox {

void CpuBackend::uniform(const Tensor& out, double low, double high, uint64_t seed, uint64_t offset) {
  const int64_t n = out.numel();
  cpu::dispatch_float(out.dtype(), "uniform", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.raw_data());
#pragma omp parallel for if (n >= cpu::kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<T, double>)
        o[i] = low + (high - low) * Philox::uniform01_f64(seed, offset + uint64_t(i));
      else
        o[i] = T(float(low) + float(high - low) * Philox::uniform01(seed, offset + uint64_t(i)));
    }
  });
}

void CpuBackend::normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  const int64_t n = out.numel();
  cpu::dispatch_float(out.dtype(), "normal", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.raw_data());
#pragma omp parallel for if (n >= cpu::kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) o[i] = T(mean + std * Philox::normal(seed, offset + uint64_t(i)));
  });
}

}  // namespace mox
