// llm.cpp — CPU kernels of the transformer layers, forward and backward: LayerNorm/RMSNorm
// (one pass per row), scaled dot-product attention (one task per batch × head), bias + GELU
// and rotary position embedding.
//
// Attention runs each (batch, head) on one OpenMP thread with single-threaded GEMMs (cpu::gemm)
// that read q, k, v (and write the output) through their strides, so the head views of a
// fused qkv projection need no copy; the T×Tk scores live in the kept probabilities or in a
// per-thread scratch. Norm statistics accumulate in double; weight gradients are summed
// from per-thread partials. f32 and f64 only (16-bit floats are an error: convert to f32).
// Not here: shape checks (the front-ends in autograd/functions_llm.cpp), masks other than
// causal, the fused flash-style attention (fused_attention.cpp).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "tensor/cpu/blas.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/vector_math.h"

namespace mox {

namespace {
template <typename T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }
template <typename T> T* ptr_or_null(const Tensor* t) { return t ? ptr<T>(*t) : nullptr; }

using cpu::dispatch_f32_f64;
using cpu::head_matrices;
using cpu::HeadMatrices;
using cpu::vm::exp_nonpositive_of;

// Σ_{i<n} f(i) in double over 16 interleaved partial sums, so the loop vectorises (a plain
// running sum must keep its order and stays scalar).
template <typename F> double lane_sum(int64_t n, F&& f) {
  constexpr int kLanes = 16;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += double(f(i + l));
  for (; i < n; ++i) acc[0] += double(f(i));
  double total = 0;
  for (double a : acc) total += a;
  return total;
}

// Row i of s (Tq×Tk) becomes the softmax of its first n_i entries and zeros after them:
// n_i = Tk, or i + Tk − Tq + 1 with the causal mask aligned to the last key.
template <typename T> void masked_softmax_rows(T* s, int64_t Tq, int64_t Tk, bool causal) {
  for (int64_t i = 0; i < Tq; ++i) {
    T* row = s + i * Tk;
    const int64_t n = causal ? i + Tk - Tq + 1 : Tk;
    T m = row[0];
    for (int64_t j = 1; j < n; ++j) m = std::max(m, row[j]);
    for (int64_t j = 0; j < n; ++j) row[j] = exp_nonpositive_of(row[j] - m);
    const T inv = T(1 / lane_sum(n, [&](int64_t j) { return row[j]; }));
    for (int64_t j = 0; j < n; ++j) row[j] *= inv;
    std::fill(row + n, row + Tk, T(0));
  }
}

// Per-(batch, head) work below which attention stays on one thread.
bool attention_in_parallel(int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t D) {
  return B * H > 1 && B * H * Tq * Tk * D >= cpu::kParallelGrain * 8 && omp_get_max_threads() > 1;
}
}  // namespace

// ------------------------------------------------------------------------ LayerNorm / RMSNorm

void CpuBackend::norm(const Tensor& x, const Tensor* w, const Tensor* b, double eps, const Tensor* mean,
                      const Tensor& rstd, const Tensor& y) {
  const int64_t C = x.size(-1), rows = x.shape().last_dim_rows();
  dispatch_f32_f64(x.dtype(), mean ? "layer_norm" : "rms_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *xs = ptr<T>(x), *ws = ptr_or_null<T>(w), *bs = ptr_or_null<T>(b);
    T *mu_out = ptr_or_null<T>(mean), *rs_out = ptr<T>(rstd), *ys = ptr<T>(y);
#pragma omp parallel for if (rows > 1 && rows * C >= cpu::kParallelGrain) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xs + r * C;
      T* yr = ys + r * C;
      const double mu = mu_out ? lane_sum(C, [&](int64_t c) { return xr[c]; }) / double(C) : 0.0;
      const double var = lane_sum(C, [&](int64_t c) { return (double(xr[c]) - mu) * (double(xr[c]) - mu); }) / double(C);
      const double rs = 1.0 / std::sqrt(var + eps);
      if (mu_out) mu_out[r] = T(mu);
      rs_out[r] = T(rs);
      const T m = T(mu), s = T(rs);
      for (int64_t c = 0; c < C; ++c) {
        const T h = (xr[c] - m) * s;
        yr[c] = (ws ? h * ws[c] : h) + (bs ? bs[c] : T(0));
      }
    }
  });
}

void CpuBackend::norm_backward(const Tensor& x, const Tensor* w, const Tensor* mean, const Tensor& rstd,
                               const Tensor& gy, const Tensor* gx, const Tensor* gw, const Tensor* gb) {
  const int64_t C = x.size(-1), rows = x.shape().last_dim_rows();
  dispatch_f32_f64(x.dtype(), mean ? "layer_norm backward" : "rms_norm backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *xs = ptr<T>(x), *ws = ptr_or_null<T>(w), *mus = ptr_or_null<T>(mean), *rss = ptr<T>(rstd);
    const T* gys = ptr<T>(gy);
    T *gxs = ptr_or_null<T>(gx), *gws = ptr_or_null<T>(gw), *gbs = ptr_or_null<T>(gb);
    const bool parallel = rows > 1 && rows * C >= cpu::kParallelGrain && omp_get_max_threads() > 1;
    const int threads = parallel ? omp_get_max_threads() : 1;
    // Per thread: Σ_rows gy·x̂ (C) then Σ_rows gy (C).
    const bool params = gws || gbs;
    std::vector<double> partial(params ? size_t(threads) * 2 * size_t(C) : 0, 0.0);
#pragma omp parallel num_threads(threads) if (parallel)
    {
      double* pw = params ? partial.data() + size_t(omp_get_thread_num()) * 2 * size_t(C) : nullptr;
      double* pb = params ? pw + C : nullptr;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = xs + r * C;
        const T* gr = gys + r * C;
        const T m = mus ? mus[r] : T(0), s = rss[r];
        if (gxs) {
          // gx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = gy·w (no mean(ĝ) term for RMSNorm).
          auto g_hat = [&](int64_t c) { return ws ? gr[c] * ws[c] : gr[c]; };
          const double sum_g = mus ? lane_sum(C, g_hat) : 0.0;
          const double sum_gh = lane_sum(C, [&](int64_t c) { return double(g_hat(c)) * double((xr[c] - m) * s); });
          const T a = T(sum_g / double(C)), bh = T(sum_gh / double(C));
          T* gxr = gxs + r * C;
          for (int64_t c = 0; c < C; ++c) gxr[c] = s * (g_hat(c) - a - (xr[c] - m) * s * bh);
        }
        if (params)
          for (int64_t c = 0; c < C; ++c) {
            pw[c] += double(gr[c]) * double((xr[c] - m) * s);
            pb[c] += double(gr[c]);
          }
      }
    }
    if (!params) return;
    for (int64_t c = 0; c < C; ++c) {
      double sw = 0, sb = 0;
      for (int t = 0; t < threads; ++t) {
        sw += partial[size_t(t) * 2 * size_t(C) + size_t(c)];
        sb += partial[(size_t(t) * 2 + 1) * size_t(C) + size_t(c)];
      }
      if (gws) gws[c] = T(sw);
      if (gbs) gbs[c] = T(sb);
    }
  });
}

// ------------------------------------------------------------------------ attention

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                           const Tensor* keep, const Tensor* probs, const Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  const int64_t plane = Tq * Tk;
  dispatch_f32_f64(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const HeadMatrices<const T> Q = head_matrices<const T>(q), K = head_matrices<const T>(k), V = head_matrices<const T>(v);
    const HeadMatrices<T> O = head_matrices<T>(out);
    T* P = ptr_or_null<T>(probs);
    const T* keeps = ptr_or_null<const T>(keep);
#pragma omp parallel if (attention_in_parallel(B, H, Tq, Tk, D))
    {
      // Scores when the probabilities are not kept; dropped-out probabilities when keep.
      std::vector<T> scratch(size_t((P ? 0 : plane) + (keeps ? plane : 0)));
#pragma omp for collapse(2) schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
          const int64_t bh = b * H + h;
          T* p = P ? P + bh * plane : scratch.data();
          cpu::gemm(false, true, Tq, Tk, D, T(scale), Q.at(b, h), Q.ld, K.at(b, h), K.ld, T(0), p, Tk);   // (Tq, Tk)
          masked_softmax_rows(p, Tq, Tk, causal);
          const T* weights = p;
          if (keeps) {
            T* dropped = scratch.data() + (P ? 0 : plane);
            const T* kp = keeps + bh * plane;
            for (int64_t i = 0; i < plane; ++i) dropped[i] = p[i] * kp[i];
            weights = dropped;
          }
          cpu::gemm(false, false, Tq, D, Tk, T(1), weights, Tk, V.at(b, h), V.ld, T(0), O.at(b, h), O.ld);   // (Tq, D)
        }
    }
  });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                                    const Tensor* keep, const Tensor& gout, double scale, const Tensor& gq,
                                    const Tensor& gk, const Tensor& gv) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  const int64_t plane = Tq * Tk;
  dispatch_f32_f64(q.dtype(), "scaled_dot_product_attention backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const HeadMatrices<const T> Q = head_matrices<const T>(q), K = head_matrices<const T>(k), V = head_matrices<const T>(v);
    const HeadMatrices<const T> GO = head_matrices<const T>(gout);
    const HeadMatrices<T> GQ = head_matrices<T>(gq), GK = head_matrices<T>(gk), GV = head_matrices<T>(gv);
    const T* P = ptr<const T>(probs);
    const T* keeps = ptr_or_null<const T>(keep);
#pragma omp parallel if (attention_in_parallel(B, H, Tq, Tk, D))
    {
      std::vector<T> scratch(size_t(plane * (keeps ? 2 : 1)));
#pragma omp for collapse(2) schedule(static)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
          const int64_t bh = b * H + h;
          const T* p = P + bh * plane;
          const T* kp = keeps ? keeps + bh * plane : nullptr;
          T* dp = scratch.data();
          const T* weights = p;   // what multiplied v: the probabilities after dropout
          if (kp) {
            T* dropped = scratch.data() + plane;
            for (int64_t i = 0; i < plane; ++i) dropped[i] = p[i] * kp[i];
            weights = dropped;
          }
          const T* go = GO.at(b, h);
          cpu::gemm(true, false, Tk, D, Tq, T(1), weights, Tk, go, GO.ld, T(0), GV.at(b, h), GV.ld);   // gv = wᵀ·gout
          cpu::gemm(false, true, Tq, Tk, D, T(1), go, GO.ld, V.at(b, h), V.ld, T(0), dp, Tk);         // gout·vᵀ
          if (kp)
            for (int64_t i = 0; i < plane; ++i) dp[i] *= kp[i];
          // Softmax backward, row by row: ds = p ⊙ (dp − Σ_j p·dp).
          for (int64_t i = 0; i < Tq; ++i) {
            const T* pr = p + i * Tk;
            T* dr = dp + i * Tk;
            T dot = 0;
            for (int64_t j = 0; j < Tk; ++j) dot += pr[j] * dr[j];
            for (int64_t j = 0; j < Tk; ++j) dr[j] = pr[j] * (dr[j] - dot);
          }
          cpu::gemm(false, false, Tq, D, Tk, T(scale), dp, Tk, K.at(b, h), K.ld, T(0), GQ.at(b, h), GQ.ld);  // gq = s·ds·k
          cpu::gemm(true, false, Tk, D, Tq, T(scale), dp, Tk, Q.at(b, h), Q.ld, T(0), GK.at(b, h), GK.ld);   // gk = s·dsᵀ·q
        }
    }
  });
}

// ------------------------------------------------------------------------ bias + GELU

namespace {
// GPT-2's GELU(u) = u/2·(1 + t), t = tanh(z), z = k·(u + a·u³), and its derivative
// (1 + t)/2 + u/2·(1 − t²)·k·(1 + 3a·u²), from e = exp(−2|z|): 1 + t = 2/(1 + e) for z ≥ 0,
// 2e/(1 + e) below, and 1 − t² = 4e/(1 + e)², so neither loses precision where t → ±1.
constexpr double kGeluK = 0.79788456080286535588, kGeluA = 0.044715;
template <typename T> struct Gelu {
  T one_plus_t, sech2;
  explicit Gelu(T u) {
    const T z = T(kGeluK) * (u + T(kGeluA) * u * u * u);
    const T e = exp_nonpositive_of(T(-2) * std::abs(z));
    const T inv = T(1) / (T(1) + e);
    one_plus_t = (z >= 0 ? T(2) : T(2) * e) * inv;
    sech2 = T(4) * e * inv * inv;
  }
  T value(T u) const { return T(0.5) * u * one_plus_t; }
  T grad(T u) const {
    return T(0.5) * one_plus_t + T(0.5) * u * sech2 * T(kGeluK) * (T(1) + T(3 * kGeluA) * u * u);
  }
};
}  // namespace

void CpuBackend::bias_gelu(const Tensor& x, const Tensor* b, const Tensor& y) {
  const int64_t C = x.size(-1), rows = x.shape().last_dim_rows();
  dispatch_f32_f64(x.dtype(), "bias_gelu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const std::vector<T> no_bias(b ? 0 : size_t(C), T(0));   // a branch-free loop vectorises
    const T *xs = ptr<T>(x), *bs = b ? ptr<T>(*b) : no_bias.data();
    T* ys = ptr<T>(y);
#pragma omp parallel for if (rows > 1 && rows * C >= cpu::kParallelGrain) schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const T u = xs[r * C + c] + bs[c];
        ys[r * C + c] = Gelu<T>(u).value(u);
      }
  });
}

void CpuBackend::bias_gelu_backward(const Tensor& x, const Tensor* b, const Tensor& gy, const Tensor& gx,
                                    const Tensor* gb) {
  const int64_t C = x.size(-1), rows = x.shape().last_dim_rows();
  dispatch_f32_f64(x.dtype(), "bias_gelu backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const std::vector<T> no_bias(b ? 0 : size_t(C), T(0));
    const T *xs = ptr<T>(x), *bs = b ? ptr<T>(*b) : no_bias.data(), *gys = ptr<T>(gy);
    T *gxs = ptr<T>(gx), *gbs = ptr_or_null<T>(gb);
    const bool parallel = rows > 1 && rows * C >= cpu::kParallelGrain && omp_get_max_threads() > 1;
    const int threads = parallel ? omp_get_max_threads() : 1;
    std::vector<double> partial(gbs ? size_t(threads) * size_t(C) : 0, 0.0);   // per thread: Σ_rows gx
#pragma omp parallel num_threads(threads) if (parallel)
    {
      double* pb = gbs ? partial.data() + size_t(omp_get_thread_num()) * size_t(C) : nullptr;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < C; ++c) {
          const T u = xs[r * C + c] + bs[c];
          gxs[r * C + c] = gys[r * C + c] * Gelu<T>(u).grad(u);
        }
        if (pb)
          for (int64_t c = 0; c < C; ++c) pb[c] += double(gxs[r * C + c]);
      }
    }
    if (!gbs) return;
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int t = 0; t < threads; ++t) s += partial[size_t(t) * size_t(C) + size_t(c)];
      gbs[c] = T(s);
    }
  });
}

// ------------------------------------------------------------------------ rotary embedding

void CpuBackend::rotary(const Tensor& x, int64_t start, double theta, bool inverse, const Tensor& out) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), half = D / 2;
  // cos and ±sin of every (position, pair), computed in double.
  std::vector<double> cos_d(size_t(T * half)), sin_d(size_t(T * half));
  for (int64_t i = 0; i < half; ++i) {
    const double freq = std::pow(theta, -2.0 * double(i) / double(D));
    for (int64_t t = 0; t < T; ++t) {
      const double angle = double(start + t) * freq;
      cos_d[size_t(t * half + i)] = std::cos(angle);
      sin_d[size_t(t * half + i)] = inverse ? -std::sin(angle) : std::sin(angle);
    }
  }
  dispatch_f32_f64(x.dtype(), "apply_rotary", [&](auto tag) {
    using S = typename decltype(tag)::type;
    const std::vector<S> cs(cos_d.begin(), cos_d.end()), sn(sin_d.begin(), sin_d.end());
    const HeadMatrices<const S> X = head_matrices<const S>(x);
    const HeadMatrices<S> O = head_matrices<S>(out);
#pragma omp parallel for collapse(3) if (x.numel() >= cpu::kParallelGrain) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < T; ++t) {
          const S* xr = X.at(b, h) + t * X.ld;
          S* o = O.at(b, h) + t * O.ld;
          const S* c = cs.data() + t * half;
          const S* s = sn.data() + t * half;
          for (int64_t i = 0; i < half; ++i) {
            const S x1 = xr[i], x2 = xr[i + half];
            o[i] = x1 * c[i] - x2 * s[i];
            o[i + half] = x2 * c[i] + x1 * s[i];
          }
        }
  });
}

}  // namespace mox
