// fused_attention.cpp — the CPU's fused (flash-style) attention, forward and backward:
// tensor/attention_math.h's algorithm over tiles of kBlock queries × kBlock keys, each tile's
// products through the single-threaded GEMM (cpu::gemm), one OpenMP task per (batch, head).
// f32 and f64.
//
// Forward, per query tile: for each key tile the scores S = scale·Q·Kᵀ (GEMM), the running
// row maxima and sums (the accumulator rows rescaled when a maximum grows), S turned into the
// dropped-out weights exp(S − m)·mult in place, and acc += S·V (GEMM). Backward, per key tile
// (its gk, gv rows accumulated in scratch): for each query tile that sees it, P recomputed
// from the kept log-sum-exps, gv += (P·mult)ᵀ·gout, dP = gout·Vᵀ, dS = P·(dP·mult − D),
// gk += scale·dSᵀ·Q, and gq (zeroed first) += scale·dS·K — five GEMMs per tile pair.
//
// What it is for: memory — the (B, H, Tq) row log-sum-exps instead of the (B, H, Tq, Tk)
// probabilities, and kBlock² scratch per thread instead of Tq×Tk, so attention memory grows
// with T, not T² — and it is the CPU reference the CUDA fused kernels are tested against.
// What it is not: faster than the materialised attention (llm.cpp) at short contexts — its
// tiles are small GEMMs and backward recomputes the scores — so `automatic` takes it on the
// CPU only from 512 keys on (docs/DECISIONS.md; bench/RESULTS.md, "Attention kernels").
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "tensor/attention_math.h"
#include "tensor/cpu/blas.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/vector_math.h"

namespace mox {

namespace {
using attention_math::dropout_multiplier;
using attention_math::visible_keys;

constexpr int64_t kBlock = 64;   // queries and keys per tile

template <typename T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

using cpu::dispatch_f32_f64;
using cpu::head_matrices;
using cpu::HeadMatrices;
using cpu::vm::exp_nonpositive_of;

bool in_parallel(int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D) {
  return B * H > 1 && B * H * Tq * Tk * D >= cpu::kParallelGrain * 8 && omp_get_max_threads() > 1;
}

// Keys [j0, j0 + nk) of query i that it sees: how many of them (0 when none).
inline int64_t seen_in_tile(int64_t i, int64_t j0, int64_t nk, int64_t Tq, int64_t Tk, bool causal) {
  return std::clamp<int64_t>(visible_keys(i, Tq, Tk, causal) - j0, 0, nk);
}
}  // namespace

void CpuBackend::attention_fused(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                 const AttentionDropout& dropout, const Tensor& out, const Tensor& lse) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  dispatch_f32_f64(q.dtype(), "attention (fused)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const HeadMatrices<const T> Q = head_matrices<const T>(q), K = head_matrices<const T>(k), V = head_matrices<const T>(v);
    const HeadMatrices<T> O = head_matrices<T>(out);
    T* L = ptr<T>(lse);   // (B, H, Tq)
#pragma omp parallel if (in_parallel(B, H, Tq, Tk, D))
    {
      std::vector<T> S(static_cast<size_t>(kBlock * kBlock));   // scores, then weights (nq, nk) at stride kBlock
      std::vector<T> acc(static_cast<size_t>(kBlock * D));      // (nq, D)
      std::vector<T> m(static_cast<size_t>(kBlock)), l(static_cast<size_t>(kBlock));
#pragma omp for collapse(2) schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
          const int64_t bh = b * H + h;
          for (int64_t i0 = 0; i0 < Tq; i0 += kBlock) {
            const int64_t nq = std::min(kBlock, Tq - i0);
            std::fill(acc.begin(), acc.end(), T(0));
            std::fill(m.begin(), m.end(), T(-INFINITY));
            std::fill(l.begin(), l.end(), T(0));
            const int64_t keys = visible_keys(i0 + nq - 1, Tq, Tk, causal);   // the tile's last row sees most
            for (int64_t j0 = 0; j0 < keys; j0 += kBlock) {
              const int64_t nk = std::min(kBlock, keys - j0);
              cpu::gemm(false, true, nq, nk, D, T(scale), Q.at(b, h) + i0 * Q.ld, Q.ld, K.at(b, h) + j0 * K.ld, K.ld,
                        T(0), S.data(), kBlock);
              for (int64_t r = 0; r < nq; ++r) {
                T* s = S.data() + r * kBlock;
                const int64_t n = seen_in_tile(i0 + r, j0, nk, Tq, Tk, causal);
                if (n > 0) {
                  T block_max = s[0];
                  for (int64_t j = 1; j < n; ++j) block_max = std::max(block_max, s[j]);
                  const T m_new = std::max(m[size_t(r)], block_max);
                  if (l[size_t(r)] > 0 && m_new > m[size_t(r)]) {   // rescale what the old maximum weighted
                    const T f = exp_nonpositive_of(m[size_t(r)] - m_new);
                    l[size_t(r)] *= f;
                    T* a = acc.data() + r * D;
                    for (int64_t d = 0; d < D; ++d) a[d] *= f;
                  }
                  m[size_t(r)] = m_new;
                  T sum = 0;
                  for (int64_t j = 0; j < n; ++j) {
                    s[j] = exp_nonpositive_of(s[j] - m_new);
                    sum += s[j];
                  }
                  l[size_t(r)] += sum;
                  if (dropout.active())
                    for (int64_t j = 0; j < n; ++j) s[j] *= dropout_multiplier<T, T>(dropout, bh * Tq + i0 + r, Tk, j0 + j);
                }
                std::fill(s + n, s + nk, T(0));   // keys this row does not see weigh nothing
              }
              cpu::gemm(false, false, nq, D, nk, T(1), S.data(), kBlock, V.at(b, h) + j0 * V.ld, V.ld, T(1), acc.data(),
                        D);
            }
            for (int64_t r = 0; r < nq; ++r) {
              T* o = O.at(b, h) + (i0 + r) * O.ld;
              const T inv = T(1) / l[size_t(r)];
              for (int64_t d = 0; d < D; ++d) o[d] = acc[size_t(r * D + d)] * inv;
              L[bh * Tq + i0 + r] = m[size_t(r)] + std::log(l[size_t(r)]);
            }
          }
        }
    }
  });
}

void CpuBackend::attention_fused_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                          const Tensor& lse, const Tensor& gout, bool causal, double scale,
                                          const AttentionDropout& dropout, const Tensor& gq, const Tensor& gk,
                                          const Tensor& gv) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  dispatch_f32_f64(q.dtype(), "attention (fused) backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const HeadMatrices<const T> Q = head_matrices<const T>(q), K = head_matrices<const T>(k), V = head_matrices<const T>(v);
    const HeadMatrices<const T> O = head_matrices<const T>(out), GO = head_matrices<const T>(gout);
    const HeadMatrices<T> GQ = head_matrices<T>(gq), GK = head_matrices<T>(gk), GV = head_matrices<T>(gv);
    const T* L = ptr<const T>(lse);
    const T s = T(scale);
#pragma omp parallel if (in_parallel(B, H, Tq, Tk, D))
    {
      std::vector<T> P(static_cast<size_t>(kBlock * kBlock)), W(P.size()), dS(P.size());   // (nq, nk) at stride kBlock
      std::vector<T> gk_acc(static_cast<size_t>(kBlock * D)), gv_acc(gk_acc.size());       // (nk, D)
      std::vector<T> delta(static_cast<size_t>(Tq));                                        // D_i = gout_i·out_i
#pragma omp for collapse(2) schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
          const int64_t bh = b * H + h;
          for (int64_t i = 0; i < Tq; ++i) {
            const T *g = GO.at(b, h) + i * GO.ld, *o = O.at(b, h) + i * O.ld;
            T dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += g[d] * o[d];
            delta[size_t(i)] = dot;
            std::memset(GQ.at(b, h) + i * GQ.ld, 0, size_t(D) * sizeof(T));   // gq accumulates below
          }
          for (int64_t j0 = 0; j0 < Tk; j0 += kBlock) {
            const int64_t nk = std::min(kBlock, Tk - j0);
            std::fill(gk_acc.begin(), gk_acc.end(), T(0));
            std::fill(gv_acc.begin(), gv_acc.end(), T(0));
            // With `causal`, query i sees key j0 once i ≥ j0 − (Tk − Tq).
            for (int64_t i0 = causal ? std::max<int64_t>(0, j0 - (Tk - Tq)) : 0; i0 < Tq; i0 += kBlock) {
              const int64_t nq = std::min(kBlock, Tq - i0);
              const T *q0 = Q.at(b, h) + i0 * Q.ld, *g0 = GO.at(b, h) + i0 * GO.ld;
              cpu::gemm(false, true, nq, nk, D, s, q0, Q.ld, K.at(b, h) + j0 * K.ld, K.ld, T(0), P.data(), kBlock);
              cpu::gemm(false, true, nq, nk, D, T(1), g0, GO.ld, V.at(b, h) + j0 * V.ld, V.ld, T(0), dS.data(),
                        kBlock);   // dP = gout·Vᵀ
              for (int64_t r = 0; r < nq; ++r) {
                const int64_t row = bh * Tq + i0 + r, n = seen_in_tile(i0 + r, j0, nk, Tq, Tk, causal);
                T *p = P.data() + r * kBlock, *w = W.data() + r * kBlock, *ds = dS.data() + r * kBlock;
                for (int64_t j = 0; j < n; ++j) p[j] = exp_nonpositive_of(std::min(T(0), p[j] - L[row]));
                for (int64_t j = 0; j < n; ++j) {
                  const T mult = dropout.active() ? dropout_multiplier<T, T>(dropout, row, Tk, j0 + j) : T(1);
                  w[j] = p[j] * mult;
                  ds[j] = p[j] * (ds[j] * mult - delta[size_t(i0 + r)]);
                }
                std::fill(w + n, w + nk, T(0));
                std::fill(ds + n, ds + nk, T(0));
              }
              cpu::gemm(true, false, nk, D, nq, T(1), W.data(), kBlock, g0, GO.ld, T(1), gv_acc.data(), D);
              cpu::gemm(true, false, nk, D, nq, s, dS.data(), kBlock, q0, Q.ld, T(1), gk_acc.data(), D);
              cpu::gemm(false, false, nq, D, nk, s, dS.data(), kBlock, K.at(b, h) + j0 * K.ld, K.ld, T(1),
                        GQ.at(b, h) + i0 * GQ.ld, GQ.ld);
            }
            for (int64_t c = 0; c < nk; ++c) {
              std::memcpy(GK.at(b, h) + (j0 + c) * GK.ld, gk_acc.data() + c * D, size_t(D) * sizeof(T));
              std::memcpy(GV.at(b, h) + (j0 + c) * GV.ld, gv_acc.data() + c * D, size_t(D) * sizeof(T));
            }
          }
        }
    }
  });
}

}  // namespace mox
