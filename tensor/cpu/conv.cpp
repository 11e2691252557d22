// conv.cpp — CPU conv2d (im2col + GEMM) and max-pool 2d, forward and backward. NCHW.
//
// Images of a batch are processed in parallel, one per OpenMP thread, each with its own
// column buffer and single-threaded GEMMs (small convolutions do not profit from threaded
// BLAS); weight gradients are summed from per-thread partials. f32 and f64 only.
#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "tensor/cpu/blas.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace mox {

namespace {
struct ConvGeometry {
  int64_t N, C, H, W, OC, KH, KW, OH, OW;
  int64_t sh, sw, ph, pw;
  int64_t ckk() const { return C * KH * KW; }
  int64_t plane() const { return OH * OW; }
  bool is_pointwise() const { return KH == 1 && KW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

ConvGeometry geometry(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  ConvGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0,
                 p.stride_h, p.stride_w, p.pad_h, p.pad_w};
  g.OH = (g.H + 2 * g.ph - g.KH) / g.sh + 1;
  g.OW = (g.W + 2 * g.pw - g.KW) / g.sw + 1;
  return g;
}

// The output columns [lo, hi) whose input column ow·sw − pw + kw lies inside [0, W).
inline void valid_columns(const ConvGeometry& g, int64_t kw, int64_t& lo, int64_t& hi) {
  const int64_t shift = kw - g.pw;   // input column of output column 0
  lo = shift >= 0 ? 0 : (-shift + g.sw - 1) / g.sw;
  hi = g.W - shift <= 0 ? 0 : std::min<int64_t>(g.OW, (g.W - shift + g.sw - 1) / g.sw);
  if (hi < lo) hi = lo;
}

// col (C·KH·KW, OH·OW) ← one image (C, H, W); zero where the window is in the padding.
template <typename T>
void im2col(const ConvGeometry& g, const T* x, T* col) {
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        T* row = col + ((c * g.KH + kh) * g.KW + kw) * g.plane();
        int64_t lo, hi;
        valid_columns(g, kw, lo, hi);
        const int64_t shift = kw - g.pw;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + kh;
          T* dst = row + oh * g.OW;
          if (ih < 0 || ih >= g.H) { std::fill(dst, dst + g.OW, T(0)); continue; }
          const T* src = x + (c * g.H + ih) * g.W + shift;
          std::fill(dst, dst + lo, T(0));
          if (g.sw == 1) std::copy(src + lo, src + hi, dst + lo);
          else for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * g.sw];
          std::fill(dst + hi, dst + g.OW, T(0));
        }
      }
}

// One image's (C, H, W) gradient += col2im(col).
template <typename T>
void col2im_add(const ConvGeometry& g, const T* col, T* x) {
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const T* row = col + ((c * g.KH + kh) * g.KW + kw) * g.plane();
        int64_t lo, hi;
        valid_columns(g, kw, lo, hi);
        const int64_t shift = kw - g.pw;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.sh - g.ph + kh;
          if (ih < 0 || ih >= g.H) continue;
          T* dst = x + (c * g.H + ih) * g.W + shift;
          const T* src = row + oh * g.OW;
          if (g.sw == 1) for (int64_t ow = lo; ow < hi; ++ow) dst[ow] += src[ow];
          else for (int64_t ow = lo; ow < hi; ++ow) dst[ow * g.sw] += src[ow];
        }
      }
}

// C(M,N) = op(A)·op(B) + beta·C, row-major, single precision or double (tensor/cpu/blas.h).
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  cpu::gemm(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
}

template <typename F> void dispatch_blas(DType t, const char* op, F&& f) {
  if (t == DType::f32) return f(cpu::Tag<float>{});
  if (t == DType::f64) return f(cpu::Tag<double>{});
  MOX_FAIL(op, " on the CPU supports f32 and f64, got ", t, "; cast the input with .to(f32)");
}

// Threads for a batch of n images: one per image, but a single thread when the whole
// convolution is too small to pay for starting a parallel region.
int batch_threads(const ConvGeometry& g) {
  if (g.N * g.OC * g.plane() * g.ckk() < cpu::kParallelGrain * 8) return 1;
  return int(std::min<int64_t>(g.N, omp_get_max_threads()));
}
}  // namespace

void CpuBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p,
                        const Tensor& out) {
  const ConvGeometry g = geometry(x, w, p);
  dispatch_blas(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = static_cast<const T*>(x.raw_data());
    const T* ws = static_cast<const T*>(w.raw_data());
    const T* bs = bias ? static_cast<const T*>(bias->raw_data()) : nullptr;
    T* os = static_cast<T*>(out.raw_data());
    const int threads = batch_threads(g);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      std::vector<T> col(g.is_pointwise() ? 0 : size_t(g.ckk() * g.plane()));
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.N; ++n) {
        const T* xn = xs + n * g.C * g.H * g.W;
        T* on = os + n * g.OC * g.plane();
        const T* cols = xn;
        if (!g.is_pointwise()) { im2col(g, xn, col.data()); cols = col.data(); }
        T beta = T(0);
        if (bs) {
          for (int64_t oc = 0; oc < g.OC; ++oc) std::fill(on + oc * g.plane(), on + (oc + 1) * g.plane(), bs[oc]);
          beta = T(1);
        }
        gemm<T>(false, false, g.OC, g.plane(), g.ckk(), ws, g.ckk(), cols, g.plane(), beta, on, g.plane());
      }
    }
  });
}

void CpuBackend::conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Conv2dParams& p,
                                 const Tensor* gx, const Tensor* gw, const Tensor* gb) {
  const ConvGeometry g = geometry(x, w, p);
  dispatch_blas(x.dtype(), "conv2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = static_cast<const T*>(x.raw_data());
    const T* ws = static_cast<const T*>(w.raw_data());
    const T* gys = static_cast<const T*>(gy.raw_data());
    if (gb) {
      T* gbs = static_cast<T*>(gb->raw_data());
      for (int64_t oc = 0; oc < g.OC; ++oc) {
        double acc = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          const T* row = gys + (n * g.OC + oc) * g.plane();
          for (int64_t i = 0; i < g.plane(); ++i) acc += row[i];
        }
        gbs[oc] = T(acc);
      }
    }
    if (!gx && !gw) return;
    const int threads = batch_threads(g);
    const size_t wsize = size_t(g.OC * g.ckk());
    std::vector<T> gw_partial(gw ? wsize * size_t(threads) : 0, T(0));
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
      const int tid = omp_get_thread_num();
      std::vector<T> col(size_t(g.ckk() * g.plane()));
      T* my_gw = gw ? gw_partial.data() + size_t(tid) * wsize : nullptr;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.N; ++n) {
        const T* xn = xs + n * g.C * g.H * g.W;
        const T* gyn = gys + n * g.OC * g.plane();
        if (my_gw) {   // gw(OC, CKK) += gy_n(OC, P) · col_n(CKK, P)ᵀ
          const T* cols = xn;
          if (!g.is_pointwise()) { im2col(g, xn, col.data()); cols = col.data(); }
          gemm<T>(false, true, g.OC, g.ckk(), g.plane(), gyn, g.plane(), cols, g.plane(), T(1), my_gw, g.ckk());
        }
        if (gx) {      // col = wᵀ(CKK, OC) · gy_n(OC, P); gx_n = col2im(col)
          T* gxn = static_cast<T*>(gx->raw_data()) + n * g.C * g.H * g.W;
          if (g.is_pointwise()) {
            gemm<T>(true, false, g.ckk(), g.plane(), g.OC, ws, g.ckk(), gyn, g.plane(), T(0), gxn, g.plane());
          } else {
            gemm<T>(true, false, g.ckk(), g.plane(), g.OC, ws, g.ckk(), gyn, g.plane(), T(0), col.data(), g.plane());
            std::fill(gxn, gxn + g.C * g.H * g.W, T(0));
            col2im_add(g, col.data(), gxn);
          }
        }
      }
    }
    if (gw) {
      T* gws = static_cast<T*>(gw->raw_data());
      for (size_t i = 0; i < wsize; ++i) {
        T acc = T(0);
        for (int t = 0; t < threads; ++t) acc += gw_partial[size_t(t) * wsize + i];
        gws[i] = acc;
      }
    }
  });
}

void CpuBackend::max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out, const Tensor& indices) {
  const int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = out.size(2), OW = out.size(3);
  cpu::dispatch_float(x.dtype(), "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = cpu::acc_t<T>;
    const T* xs = static_cast<const T*>(x.raw_data());
    T* os = static_cast<T*>(out.raw_data());
    int64_t* is = static_cast<int64_t*>(indices.raw_data());
#pragma omp parallel for if (planes * H * W >= cpu::kParallelGrain) schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const T* xp = xs + pl * H * W;
      if (p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
          p.pad_w == 0) {   // the common 2×2 pool: pairwise selects, no loops or branches
        for (int64_t oh = 0; oh < OH; ++oh) {
          const T* r0 = xp + 2 * oh * W;
          const T* r1 = r0 + W;
          T* orow = os + (pl * OH + oh) * OW;
          int64_t* irow = is + (pl * OH + oh) * OW;
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t c = 2 * ow, i0 = 2 * oh * W + c;
            const A a = A(r0[c]), b = A(r0[c + 1]), d = A(r1[c]), e = A(r1[c + 1]);
            const bool t1 = b > a, t2 = e > d;   // ties keep the earlier element
            const A m1 = t1 ? b : a, m2 = t2 ? e : d;
            const int64_t i1 = i0 + t1, i2 = i0 + W + t2;
            const bool t3 = m2 > m1;
            orow[ow] = T(t3 ? m2 : m1);
            irow[ow] = t3 ? i2 : i1;
            if ((a != a) | (b != b) | (d != d) | (e != e)) {   // NaN propagates: first NaN wins
              const int64_t first_nan = a != a ? i0 : b != b ? i0 + 1 : d != d ? i0 + W : i0 + W + 1;
              orow[ow] = T(std::numeric_limits<A>::quiet_NaN());
              irow[ow] = first_nan;
            }
          }
        }
        continue;
      }
      for (int64_t oh = 0; oh < OH; ++oh) {
        const int64_t h0 = std::max<int64_t>(oh * p.stride_h - p.pad_h, 0);
        const int64_t h1 = std::min<int64_t>(oh * p.stride_h - p.pad_h + p.kernel_h, H);
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t w0 = std::max<int64_t>(ow * p.stride_w - p.pad_w, 0);
          const int64_t w1 = std::min<int64_t>(ow * p.stride_w - p.pad_w + p.kernel_w, W);
          A best = A(xp[h0 * W + w0]);
          int64_t best_i = h0 * W + w0;
          for (int64_t ih = h0; ih < h1; ++ih)
            for (int64_t iw = w0; iw < w1; ++iw) {   // branch-free select; a NaN wins and stays
              const A v = A(xp[ih * W + iw]);
              const bool take = (v > best) | (v != v);   // `|`: no branch; a later NaN keeps NaN
              best = take ? v : best;
              best_i = take ? ih * W + iw : best_i;
            }
          os[(pl * OH + oh) * OW + ow] = T(best);
          is[(pl * OH + oh) * OW + ow] = best_i;
        }
      }
    }
  });
}

void CpuBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  const int64_t planes = gx.size(0) * gx.size(1), HW = gx.size(2) * gx.size(3);
  const int64_t OHW = gy.size(2) * gy.size(3);
  cpu::dispatch_float(gx.dtype(), "max_pool2d backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = cpu::acc_t<T>;
    const T* gys = static_cast<const T*>(gy.raw_data());
    const int64_t* is = static_cast<const int64_t*>(indices.raw_data());
    T* gxs = static_cast<T*>(gx.raw_data());
#pragma omp parallel for if (planes * HW >= cpu::kParallelGrain) schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      T* gp = gxs + pl * HW;
      std::fill(gp, gp + HW, T(0));
      for (int64_t o = 0; o < OHW; ++o) {
        const int64_t i = is[pl * OHW + o];
        gp[i] = T(A(gp[i]) + A(gys[pl * OHW + o]));
      }
    }
  });
}

}  // namespace mox
