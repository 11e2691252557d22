// attention_math.h — what the fused (flash-style) attention of every backend shares, as
// MOX_HD code: which keys a query sees and the dropout decision for a (query, key) pair.
// With these in one place the CPU's fused attention
// (tensor/cpu/fused_attention.cpp) and the CUDA kernels (tensor/cuda/fused_attention.cu) agree,
// and both draw the mask the materialised path draws (autograd/functions_llm.cpp; tests check
// the two paths' outputs match under dropout).
//
// The algorithm both fused backends implement (FlashAttention-2's, without tensor cores):
// forward, per query row i over its visible keys in blocks, keeps the running maximum m and
// l = Σ exp(s_ij − m) of the scores s_ij = scale·q_i·k_j, rescales the output accumulator by
// exp(m_old − m_new) when m grows, adds exp(s_ij − m)·mult_ij·v_j, and ends with
// out_i = acc/l and lse_i = m + log l. No (Tq, Tk) matrix is stored. Backward recomputes
// P_ij = exp(s_ij − lse_i), with D_i = gout_i·out_i (= Σ_j P_ij·dP_ij even with dropout):
// dP_ij = (gout_i·v_j)·mult_ij, dS_ij = P_ij·(dP_ij − D_i), gv_j = Σ_i P_ij·mult_ij·gout_i,
// gk_j = scale·Σ_i dS_ij·q_i, gq_i = scale·Σ_j dS_ij·k_j; key-side sums in one pass over
// keys, query-side in another, so nothing is accumulated atomically (deterministic).
//
// Not here: the tiling and parallel structure (each backend's own), shape checks (the
// front-end's).
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tensor/dtype.h"
#include "tensor/random.h"

namespace mox {

// Dropout of attention probabilities, drawn as the materialised path draws its mask: the
// probability of row r = (b·H + h)·Tq + i, key j uses the uniform of counter
// offset + r·Tk + j (one counter per element of the (B, H, Tq, Tk) mask), and is kept when
// that uniform, in the dtype, is ≥ p. Kept probabilities are multiplied by `scale`, the
// dtype's rounding of 1/(1 − p). p = 0: no dropout.
// The largest head dim the CUDA fused kernels take (their shared-memory tiles are sized for
// it); automatic kernel choice falls back to the materialised path above it.
constexpr int64_t kCudaFusedAttentionMaxHeadDim = 128;

// From this many keys on, automatic kernel choice takes the fused kernel on the CPU too: at
// 512 keys it is as fast as the materialised one with 0.6× the peak memory of a training
// step, at 1024 1.3× faster with 0.36× (bench/RESULTS.md, "Attention kernels").
constexpr int64_t kCpuFusedAttentionMinKeys = 512;

struct AttentionDropout {
  double p = 0;
  double scale = 1;
  uint64_t seed = 0;
  uint64_t offset = 0;
  bool active() const { return p > 0; }
};

namespace attention_math {

// Keys query i of Tq sees among Tk: all, or with `causal` those j ≤ i + Tk − Tq (the mask
// aligned to the last key, as a KV cache needs). At least one when Tk ≥ Tq.
MOX_HD inline int64_t visible_keys(int64_t i, int64_t Tq, int64_t Tk, bool causal) {
  return causal ? i + Tk - Tq + 1 : Tk;
}

// Whether the uniform of counter `ctr` keeps its element: the uniform in T as
// Tensor uniform(0, 1) draws it (f64: 53 bits; f32: 24 bits; f16/bf16: the 24-bit value
// rounded to the dtype and stepped below 1 if it rounded onto it), compared with p in T's
// compute type (float, or double for f64) as `ge` compares a tensor with a scalar.
template <typename T> MOX_HD inline bool dropout_keeps(uint64_t seed, uint64_t ctr, double p) {
  if constexpr (std::is_same_v<T, double>) {
    return Philox::uniform01_f64(seed, ctr) >= p;
  } else {
    float u = Philox::uniform01(seed, ctr);
    if constexpr (std::is_same_v<T, half> || std::is_same_v<T, bfloat16>) {
      u = float(T(u));
      // The largest value below 1: 1 − 2^-11 in f16, 1 − 2^-8 in bf16.
      if (u >= 1.0f) u = std::is_same_v<T, half> ? 1.0f - 0.00048828125f : 1.0f - 0.00390625f;
    }
    return u >= float(p);
  }
}

// The multiplier of probability (row r, key j): 0, or d.scale when kept (1 without dropout).
template <typename T, typename A>
MOX_HD inline A dropout_multiplier(const AttentionDropout& d, int64_t r, int64_t Tk, int64_t j) {
  if (!(d.p > 0)) return A(1);
  return dropout_keeps<T>(d.seed, d.offset + uint64_t(r) * uint64_t(Tk) + uint64_t(j), d.p) ? A(d.scale) : A(0);
}

}  // namespace attention_math
}  // namespace mox
