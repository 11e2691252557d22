// fused_attention.cpp — the CPU's fused (flash-style) attention, forward and backward:
// tensor/attention_math.h's algorithm with one task per query row (forward, gq) or per key
// row (gk, gv), scores taken in blocks of kBlock keys. f32 and f64.
//
// What it is for: memory — it keeps the (B, H, Tq) row log-sum-exps instead of the
// (B, H, Tq, Tk) probabilities and needs no Tq×Tk scratch, so attention memory grows with T,
// not T² — and it is the CPU reference the CUDA fused kernels are tested against. What it is
// not: fast at short contexts. Without GEMMs it does the work as dot products, and backward
// recomputes the scores twice; the GEMM-based attention (llm.cpp) stays the CPU's automatic
// choice (docs/DECISIONS.md, "Attention kernels").
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "tensor/attention_math.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/vector_math.h"

namespace mox {

namespace {
using attention_math::dropout_multiplier;
using attention_math::visible_keys;

constexpr int64_t kBlock = 64;   // keys whose scores are taken before one rescale

template <typename T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

// exp(x) for x ≤ 0: the vectorisable approximation in f32 (vector_math.h), libm in f64.
template <typename T> inline T exp_nonpositive_of(T x) {
  if constexpr (std::is_same_v<T, float>) return cpu::vm::exp_nonpositive(x);
  else return std::exp(x);
}

template <typename T> inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

template <typename T> inline void add_scaled(T alpha, const T* x, T* y, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d) y[d] += alpha * x[d];
}

// Row t of head (b, h) of a (B, H, T, D) tensor with unit stride on D.
template <typename T> struct Rows {
  T* data;
  int64_t sb, sh, st;
  T* at(int64_t b, int64_t h, int64_t t) const { return data + b * sb + h * sh + t * st; }
};
template <typename T> Rows<T> rows_of(const Tensor& t) { return {ptr<T>(t), t.stride(0), t.stride(1), t.stride(2)}; }

template <typename F> void dispatch_f32_f64(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(cpu::Tag<float>{});
    case DType::f64: return f(cpu::Tag<double>{});
    default: MOX_FAIL(op, " is implemented for f32 and f64 on the CPU, got ", t, "; convert with .to(DType::f32)");
  }
}

bool in_parallel(int64_t tasks, int64_t work) {
  return tasks > 1 && work >= cpu::kParallelGrain * 8 && omp_get_max_threads() > 1;
}
}  // namespace

void CpuBackend::attention_fused(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                 const AttentionDropout& dropout, const Tensor& out, const Tensor& lse) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  dispatch_f32_f64(q.dtype(), "attention (fused)", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Rows<const T> Q = rows_of<const T>(q), K = rows_of<const T>(k), V = rows_of<const T>(v);
    const Rows<T> O = rows_of<T>(out);
    T* L = ptr<T>(lse);   // (B, H, Tq)
    const T s = T(scale);
#pragma omp parallel if (in_parallel(B * H * Tq, B * H * Tq * Tk * D))
    {
      std::vector<T> acc(static_cast<size_t>(D));   // Σ_j exp(s_ij − m)·mult_ij·v_j
      std::vector<T> score(static_cast<size_t>(kBlock));
#pragma omp for schedule(dynamic, 16)
      for (int64_t r = 0; r < B * H * Tq; ++r) {   // r = (b·H + h)·Tq + i
        const int64_t i = r % Tq, h = (r / Tq) % H, b = r / (Tq * H);
        const T* qi = Q.at(b, h, i);
        const int64_t n = visible_keys(i, Tq, Tk, causal);
        std::fill(acc.begin(), acc.end(), T(0));
        T m = -INFINITY, l = 0;
        for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
          const int64_t nb = std::min(kBlock, n - j0);
          T block_max = -INFINITY;
          for (int64_t jj = 0; jj < nb; ++jj) {
            score[size_t(jj)] = s * dot(qi, K.at(b, h, j0 + jj), D);
            block_max = std::max(block_max, score[size_t(jj)]);
          }
          const T m_new = std::max(m, block_max);
          if (m_new > m && l > 0) {   // rescale what was accumulated under the old maximum
            const T f = exp_nonpositive_of(m - m_new);
            l *= f;
            for (T& a : acc) a *= f;
          }
          m = m_new;
          for (int64_t jj = 0; jj < nb; ++jj) {
            const T p = exp_nonpositive_of(score[size_t(jj)] - m);
            l += p;
            const T w = p * dropout_multiplier<T, T>(dropout, r, Tk, j0 + jj);
            if (w != T(0)) add_scaled(w, V.at(b, h, j0 + jj), acc.data(), D);
          }
        }
        T* oi = O.at(b, h, i);
        const T inv = T(1) / l;
        for (int64_t d = 0; d < D; ++d) oi[d] = acc[size_t(d)] * inv;
        L[r] = m + std::log(l);
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
    const Rows<const T> Q = rows_of<const T>(q), K = rows_of<const T>(k), V = rows_of<const T>(v);
    const Rows<const T> O = rows_of<const T>(out), GO = rows_of<const T>(gout);
    const Rows<T> GQ = rows_of<T>(gq), GK = rows_of<T>(gk), GV = rows_of<T>(gv);
    const T* L = ptr<const T>(lse);
    const T s = T(scale);
    const bool parallel = in_parallel(B * H * Tq, B * H * Tq * Tk * D);
    std::vector<T> delta(size_t(B * H * Tq));   // D_i = gout_i·out_i
    // dS_ij of query row r (= (b·H + h)·Tq + i) and key j; P_ij through *p.
    auto score_grad = [&](int64_t b, int64_t h, int64_t i, int64_t j, int64_t r, T* p) {
      const T P = exp_nonpositive_of(std::min(T(0), s * dot(Q.at(b, h, i), K.at(b, h, j), D) - L[r]));
      const T mult = dropout_multiplier<T, T>(dropout, r, Tk, j);
      *p = P * mult;
      return mult == T(0) ? -P * delta[size_t(r)]
                          : P * (dot(GO.at(b, h, i), V.at(b, h, j), D) * mult - delta[size_t(r)]);
    };
#pragma omp parallel if (parallel)
    {
      std::vector<T> acc(static_cast<size_t>(D)), acc2(static_cast<size_t>(D));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < B * H * Tq; ++r) {
        const int64_t i = r % Tq, h = (r / Tq) % H, b = r / (Tq * H);
        delta[size_t(r)] = dot(GO.at(b, h, i), O.at(b, h, i), D);
      }
      // gq_i = scale·Σ_j dS_ij·k_j, one query row per task.
#pragma omp for schedule(dynamic, 16)
      for (int64_t r = 0; r < B * H * Tq; ++r) {
        const int64_t i = r % Tq, h = (r / Tq) % H, b = r / (Tq * H);
        std::fill(acc.begin(), acc.end(), T(0));
        T p;
        for (int64_t j = 0, n = visible_keys(i, Tq, Tk, causal); j < n; ++j) {
          const T ds = score_grad(b, h, i, j, r, &p);
          if (ds != T(0)) add_scaled(ds, K.at(b, h, j), acc.data(), D);
        }
        T* g = GQ.at(b, h, i);
        for (int64_t d = 0; d < D; ++d) g[d] = s * acc[size_t(d)];
      }
      // gk_j = scale·Σ_i dS_ij·q_i and gv_j = Σ_i P_ij·mult_ij·gout_i, one key row per task,
      // over the queries that see key j (with `causal`, i ≥ j − (Tk − Tq)).
#pragma omp for schedule(dynamic, 16)
      for (int64_t c = 0; c < B * H * Tk; ++c) {
        const int64_t j = c % Tk, h = (c / Tk) % H, b = c / (Tk * H);
        std::fill(acc.begin(), acc.end(), T(0));
        std::fill(acc2.begin(), acc2.end(), T(0));
        for (int64_t i = causal ? std::max<int64_t>(0, j - (Tk - Tq)) : 0; i < Tq; ++i) {
          const int64_t r = (b * H + h) * Tq + i;
          T w;
          const T ds = score_grad(b, h, i, j, r, &w);
          if (ds != T(0)) add_scaled(ds, Q.at(b, h, i), acc.data(), D);
          if (w != T(0)) add_scaled(w, GO.at(b, h, i), acc2.data(), D);
        }
        T *gkj = GK.at(b, h, j), *gvj = GV.at(b, h, j);
        for (int64_t d = 0; d < D; ++d) {
          gkj[d] = s * acc[size_t(d)];
          gvj[d] = acc2[size_t(d)];
        }
      }
    }
  });
}

}  // namespace mox
