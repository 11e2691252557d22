// random.cu — CUDA fills from the counter-based Philox stream (tensor/random.h): uniform, normal.
//
// The same numbers as the CPU (tensor/cpu/random.cpp) for a seed and offset: element i uses
// counter offset + i, the Philox rounds are the shared MOX_HD code, and the transforms are
// the CPU's, step for step:
//   uniform f64        low + (high − low)·u53,  then step below high if it rounded onto it
//   uniform f32/16-bit float(low) + float(high − low)·u24 in float, rounded to the dtype, same step
//   normal             mean + std·N (N by Box–Muller in double), rounded to the dtype
// One thing must be pinned down for the numbers to match: each `a + b·c` above is one fused
// multiply-add with a single rounding, written out on both sides (std::fma in
// tensor/cpu/random.cpp — exact on every build, in software where the CPU lacks FMA — and
// fma/fmaf here), so neither compiler's choice of whether to contract matters.
//
// Exactness: uniform is bit-for-bit the CPU's (integer Philox, one correctly rounded fma, the
// same bit-stepping). normal goes through log and cos in double, where CUDA's libm (≤ 1–2
// ulp) and glibc's may differ in the last bit: f64 normals can differ by an ulp or two;
// f32/f16/bf16 normals are rounded from that double and agree unless it lies within an ulp
// of a rounding boundary (about one element in 10^8).
// Cost: one thread per element, compute-bound on the 10 Philox rounds (4 words drawn per
// element, as on the CPU; the unused words are the price of one-counter-per-element).
// Not here: the Generator (tensor/random.h), dropout masks and Gumbel noise (built on these).
#include <cmath>
#include <type_traits>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/cuda_backend.h"
#include "tensor/random.h"

namespace mox {

namespace {

template <typename T> __device__ __forceinline__ double as_double(T v) {
  if constexpr (std::is_same_v<T, double>) return v;
  else return double(float(v));
}

// One representable step toward −∞ (16-bit floats by their bit patterns), as the CPU.
template <typename T> __device__ __forceinline__ T step_down(T v) {
  if constexpr (std::is_same_v<T, double>) {
    return ::nextafter(v, -INFINITY);
  } else if constexpr (std::is_same_v<T, float>) {
    return ::nextafterf(v, -INFINITY);
  } else {
    const float f = float(v);
    T r = v;
    r.bits = f > 0 ? uint16_t(v.bits - 1) : f == 0 ? uint16_t(0x8001) : uint16_t(v.bits + 1);
    return r;
  }
}

// low + (high − low)·u with u < 1 can still round to high: step below it (draws in [low, high)).
template <typename T> __device__ __forceinline__ T below_high(T v, double low, double high) {
  while (high > low && as_double(v) >= high) v = step_down(v);
  return v;
}

template <typename T>
__global__ void uniform_kernel(T* out, int64_t n, double low, double high, float low_f, float range_f, uint64_t seed,
                               uint64_t offset) {
  MOX_GRID_STRIDE(i, n) {
    if constexpr (std::is_same_v<T, double>) {
      const double u = Philox::uniform01_f64(seed, offset + uint64_t(i));
      out[i] = below_high<T>(::fma(high - low, u, low), low, high);
    } else {
      const float u = Philox::uniform01(seed, offset + uint64_t(i));
      out[i] = below_high<T>(T(::fmaf(range_f, u, low_f)), low, high);
    }
  }
}

template <typename T>
__global__ void normal_kernel(T* out, int64_t n, double mean, double std, uint64_t seed, uint64_t offset) {
  MOX_GRID_STRIDE(i, n) {
    const double v = ::fma(std, Philox::normal(seed, offset + uint64_t(i)), mean);
    if constexpr (std::is_same_v<T, double>) out[i] = v;
    else out[i] = T(float(v));
  }
}

}  // namespace

void CudaBackend::uniform(const Tensor& out, double low, double high, uint64_t seed, uint64_t offset) {
  const int64_t n = out.numel();
  if (n == 0) return;
  // float(low) and float(high − low): the CPU's conversions, done once on the host.
  const float low_f = float(low), range_f = float(high - low);
  MOX_CUDA_DISPATCH_FLOAT(out.dtype(), "uniform", T, {
    uniform_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<T*>(out.raw_data()), n, low, high, low_f, range_f, seed, offset);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
  const int64_t n = out.numel();
  if (n == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(out.dtype(), "normal", T, {
    normal_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(static_cast<T*>(out.raw_data()), n,
                                                                                 mean, std, seed, offset);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mox
