// attention_reference.h — what the attention tests share: a naive attention built from
// ordinary differentiable ops (matmul, an additive −inf causal mask, softmax, matmul), a
// (B, H, T, D) leaf with the memory layout of real head views, the largest elementwise
// difference of two tensors, and a scoped choice of attention kernel. Used by
// tests/test_nn_llm.cpp, tests/test_fused_attention.cpp and tests/test_cuda_layers.cpp.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "tests/gradcheck.h"

namespace mox::testing {

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// The same values in a (B, H, T, D) leaf stored as (B, T, H, D): unit stride on D, not contiguous.
inline Tensor heads_leaf(const Shape& bhtd, uint64_t seed) {
  Tensor t = uniform_leaf({bhtd[0], bhtd[2], bhtd[1], bhtd[3]}, seed).detach();
  Tensor v = raw::transpose(t, 1, 2);
  v.set_requires_grad();
  return v;
}

// softmax(scale·q·kᵀ + mask)·v, mask −inf where key j > i + Tk − T.
inline Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  const int64_t T = q.size(2), Tk = k.size(2);
  Tensor s = matmul(q, k.transpose(-1, -2)) * scale;   // (B, H, T, Tk)
  if (causal) {
    std::vector<double> m(size_t(T * Tk));
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < Tk; ++j) m[size_t(i * Tk + j)] = j > i + Tk - T ? -INFINITY : 0.0;
    s = s + from_doubles(m, {T, Tk}, q.dtype());
  }
  return matmul(softmax(s, -1), v);
}

// Selects an attention kernel for one scope, restoring the previous choice after it.
struct KernelScope {
  AttentionKernel previous = attention_kernel();
  explicit KernelScope(AttentionKernel k) { set_attention_kernel(k); }
  ~KernelScope() { set_attention_kernel(previous); }
  KernelScope(const KernelScope&) = delete;
  KernelScope& operator=(const KernelScope&) = delete;
};

}  // namespace mox::testing
