// vector_math.h — branch-free f32 math for the CPU backend's loops: exp of a non-positive
// argument, the standard normal CDF Φ, and the exact (erf) GELU with its derivative.
//
// Each function is straight-line float arithmetic, bit casts and selects (`c ? a : b` of
// values already computed), with no libm call, so GCC vectorises the loop that calls it
// (-O3 -march=native: AVX-512 / AVX2). Accuracy against a double-precision reference, over
// every f32 with 1e-6 ≤ |x| ≤ 10 (tests/test_vector_math.cpp checks a dense sweep):
// |gelu − exact| ≤ 1.2e-7 and |gelu' − exact| ≤ 1.5e-7, times max(1, |x|), about 1 ulp.
// Every multiply-add is an explicit std::fma (one instruction under -march=native and
// -fno-math-errno, which tensor/cpu/ is built with): left to FP contraction, GCC fused the
// vectorised loop body's and not the scalar remainder's, so an element's value depended on
// where in the buffer it sat (16 % of gelu' values differed between the two). NaN in gives NaN out; gelu(+inf) = +inf, gelu(−inf) = −0,
// gelu'(±inf) = 1 / 0; large |x| gives x or −0 (and 1 or 0), never NaN.
//
// Not here: f64 (the float64 gradchecks keep libm's erf/exp, tensor/math.h), the CUDA
// kernels (they use tensor/math.h with CUDA's erff), the tanh-approximation GELU (the fused
// bias_gelu in llm.cpp), and general-purpose exp/erf over the whole float range.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace mox::cpu::vm {

// Forced inline: an out-of-line call per element would keep the caller's loop scalar, and
// GCC's heuristics decline to inline these bodies into the many instantiated kernel loops.
#define MOX_VM_INLINE [[gnu::always_inline]] inline

// exp(x) for x ≤ 0: Cephes' expf (x = n·ln2 + r, a degree-6 polynomial in r, times 2^n),
// within 2 ulp (1.02 measured over [−87, 0]); 0 below −87.3 (where float would go subnormal); NaN stays NaN.
MOX_VM_INLINE float exp_nonpositive(float x) {
  const float xc = x > -87.3f ? x : -87.3f;   // NaN too becomes finite: the int cast below is defined
  // n = round(xc/ln2) by the 1.5·2²³ trick (std::floor would not vectorise).
  const float n = std::fma(xc, 1.44269504088896341f, 12582912.0f) - 12582912.0f;
  const float r = std::fma(n, 2.12194440e-4f, std::fma(-n, 0.693359375f, xc));   // xc − n·ln2 in two steps
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p * r, r, r) + 1.0f;
  const uint32_t bits = uint32_t(int32_t(n) + 127) << 23;   // 2^n, n ≥ −126
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x != x ? x : x < -87.3f ? 0.0f : p * scale;
}

// exp(x) for x ≤ 0 in a kernel templated on float/double: the approximation above in f32 (so
// the loop vectorises), libm in f64 (the float64 gradchecks' reference accuracy).
template <typename T> MOX_VM_INLINE T exp_nonpositive_of(T x) {
  if constexpr (std::is_same_v<T, float>) return exp_nonpositive(x);
  else return std::exp(x);
}

// Φ(x) = (1 + erf(z))/2 = erfc(−z)/2 with z = x/√2. The split follows Arm's
// optimized-routines erff (math/erff.c, MIT): for |z| < 0.921875, erf(z) = z + z·P(z²) with
// P of degree 5; for 0.921875 ≤ |z| < 4, erfc(|z|) = exp(−(a + a·Q(a))), a = |z|, with Q of
// degree 6; erfc(|z|) < 1.6e-8 beyond (taken as 0, so Φ is exactly 0 or 1 there).
// Coefficients are our own weighted minimax fits (Lawson's algorithm in mpmath, 30 digits;
// weights |z|, and a·(erfc(a) + 0.01) so that both Φ's absolute error and erfc's relative
// error stay small): approximation error ≤ 7e-9 in Φ, under f32 rounding. Computing
// erfc(|z|) directly (not 1 − erf) keeps Φ's relative error within 5e-6 in the left tail
// (down to x = −4√2), where gelu(x) = x·Φ(x) is small.
MOX_VM_INLINE float normal_cdf(float x) {
  const float z = x * 0.70710678118654752f;
  const float a = z < 0.0f ? -z : z;
  // |z| < 0.921875: Φ = 1/2 + h + h·P(z²), h = z/2.
  const float s = z * z;
  float p = -5.834971671e-4f;
  p = std::fma(p, s, 4.956400953e-3f);
  p = std::fma(p, s, -2.673498169e-2f);
  p = std::fma(p, s, 1.128062159e-1f);
  p = std::fma(p, s, -3.761230707e-1f);
  p = std::fma(p, s, 1.283790618e-1f);
  const float h = 0.5f * z;
  const float inner = 0.5f + std::fma(h, p, h);
  // |z| ≥ 0.921875: e = erfc(a), Φ = 1 − e/2 for z > 0, e/2 for z < 0.
  const float ac = a < 4.0f ? a : 4.0f;   // keeps inf out of the polynomial
  float q = 1.650892045e-05f;
  q = std::fma(q, ac, -3.724143608e-04f);
  q = std::fma(q, ac, 3.826420521e-03f);
  q = std::fma(q, ac, -2.410363406e-02f);
  q = std::fma(q, ac, 1.065680981e-01f);
  q = std::fma(q, ac, 6.349951625e-01f);
  q = std::fma(q, ac, 1.286754459e-01f);
  const float e = a < 4.0f ? exp_nonpositive(-std::fma(ac, q, ac)) : 0.0f;
  const float half_e = 0.5f * e;
  const float outer = z > 0.0f ? 1.0f - half_e : half_e;
  const float cdf = a < 0.921875f ? inner : outer;
  return x != x ? x : cdf;
}

// gelu(x) = x·Φ(x). Below −8, Φ is exactly 0 and the −8 clamp keeps −inf·0 from being NaN.
MOX_VM_INLINE float gelu(float x) {
  const float xc = x < -8.0f ? -8.0f : x;
  return xc * normal_cdf(x);
}

// gelu'(x) = Φ(x) + x·φ(x), φ(x) = e^{−x²/2}/√(2π). The ±16 clamp (φ(16) underflows to 0)
// keeps ±inf·0 from being NaN.
MOX_VM_INLINE float gelu_grad(float x) {
  const float xc = x < -16.0f ? -16.0f : x > 16.0f ? 16.0f : x;
  const float pdf = exp_nonpositive(-0.5f * xc * xc) * 0.39894228040143267794f;
  return std::fma(xc, pdf, normal_cdf(x));
}

#undef MOX_VM_INLINE

}  // namespace mox::cpu::vm
