// math.h — scalar math shared by the CPU and CUDA backends (MOX_HD: host and device).
//
// Activations and their derivatives, written once so that the CPU reference and the GPU
// kernels compute the same function (T is float or double), and integer pow.
#pragma once
#include <cmath>
#include <type_traits>

#include "tensor/dtype.h"

namespace mox::math {

template <typename T> MOX_HD inline T sigmoid(T x) { return T(1) / (T(1) + ::exp(-x)); }

// GELU, exact: x·Φ(x) = 0.5·x·(1 + erf(x/√2)). The ±1e30 clamp of the factor x changes no
// finite result (Φ or φ is already 0 there) and keeps ±inf·0 from being NaN: gelu(−inf) = −0,
// gelu'(±inf) = 1 / 0, as in the CPU's f32 version (tensor/cpu/vector_math.h).
template <typename T> MOX_HD inline T gelu(T x) {
  const T xc = x < T(-1e30) ? T(-1e30) : x;
  return T(0.5) * xc * (T(1) + ::erf(x * T(0.70710678118654752440)));
}
template <typename T> MOX_HD inline T gelu_grad(T x) {
  const T xc = x < T(-1e30) ? T(-1e30) : x > T(1e30) ? T(1e30) : x;
  const T cdf = T(0.5) * (T(1) + ::erf(x * T(0.70710678118654752440)));
  const T pdf = ::exp(T(-0.5) * x * x) * T(0.39894228040143267794);   // φ(x) = e^{-x²/2}/√(2π)
  return cdf + xc * pdf;
}

// GELU, tanh approximation (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
template <typename T> MOX_HD inline T gelu_tanh(T x) {
  const T k = T(0.79788456080286535588);
  return T(0.5) * x * (T(1) + ::tanh(k * (x + T(0.044715) * x * x * x)));
}
template <typename T> MOX_HD inline T gelu_tanh_grad(T x) {
  const T k = T(0.79788456080286535588);
  const T inner = k * (x + T(0.044715) * x * x * x);
  const T t = ::tanh(inner);
  const T dinner = k * (T(1) + T(3) * T(0.044715) * x * x);
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner;
}

// SiLU (swish): x·σ(x); derivative σ(x)·(1 + x·(1 − σ(x))).
template <typename T> MOX_HD inline T silu(T x) { return x * sigmoid(x); }
template <typename T> MOX_HD inline T silu_grad(T x) {
  const T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}

// Integer pow, exact and the same on every device (PyTorch's integer rule): repeated
// squaring in the unsigned type of T, so an overflowing power wraps around like every other
// integer op; a negative exponent gives 1 for a = 1, ±1 for a = −1 (by the exponent's
// parity) and 0 otherwise — 0 too, where 1 / 0 has no integer value. (A double pow
// truncated to T, what mox did before, is undefined behaviour for 0^-1 and for powers out
// of T's range: x86 and the GPU then disagree.)
template <typename T> MOX_HD inline T int_pow(T a, T b) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>, "int_pow is for integer types");
  if constexpr (std::is_signed_v<T>) {
    if (b < 0) return a == T(1) ? T(1) : a == T(-1) ? (b % 2 ? T(-1) : T(1)) : T(0);
  }
  using U = std::make_unsigned_t<T>;
  U base = U(a), acc = 1;
  for (U e = U(b); e; e >>= 1) {
    if (e & 1u) acc = U(acc * base);
    base = U(base * base);
  }
  return T(acc);
}

}  // namespace mox::math
