// random.cpp — CPU fills from the counter-based Philox stream (tensor/random.h).
// Element i of the output uses counter offset+i, so the result does not depend on the
// number of threads, and the CUDA backend produces the same values.
#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/random.h"

namespace mox {

namespace {
template <typename T> double as_double(T v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return double(float(v));
}
// One representable step toward −∞ (16-bit floats by their bit patterns).
template <typename T> T step_down(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::nextafter(v, -std::numeric_limits<T>::infinity());
  } else {
    const float f = float(v);
    T r = v;
    r.bits = f > 0 ? uint16_t(v.bits - 1) : f == 0 ? uint16_t(0x8001) : uint16_t(v.bits + 1);
    return r;
  }
}
// low + (high − low)·u with u < 1 can still round to high (often in f16/bf16: 1 − 2^-12
// rounds to 1): step below it, so draws stay in [low, high).
template <typename T> T below_high(T v, double low, double high) {
  while (high > low && as_double(v) >= high) v = step_down(v);
  return v;
}
}  // namespace

void CpuBackend::uniform(const Tensor& out, double low, double high, uint64_t seed, uint64_t offset) {
  const int64_t n = out.numel();
  cpu::dispatch_float(out.dtype(), "uniform", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.raw_data());
#pragma omp parallel for if (n >= cpu::kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_same_v<T, double>)
        o[i] = below_high<T>(std::fma(high - low, Philox::uniform01_f64(seed, offset + uint64_t(i)), low), low, high);
      else
        o[i] = below_high(T(std::fma(float(high - low), Philox::uniform01(seed, offset + uint64_t(i)), float(low))), low, high);
    }
  });
}

void CpuBackend::normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  const int64_t n = out.numel();
  cpu::dispatch_float(out.dtype(), "normal", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.raw_data());
#pragma omp parallel for if (n >= cpu::kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) o[i] = T(std::fma(std, Philox::normal(seed, offset + uint64_t(i)), mean));
  });
}

}  // namespace mox
