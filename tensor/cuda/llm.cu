// llm.cu — CUDA kernels of the transformer layers, forward and backward: LayerNorm/RMSNorm,
// scaled dot-product attention, bias + GELU and rotary position embedding. f32, f64, and
// f16/bf16 (loaded into f32, computed and accumulated in f32, rounded on store; the CPU
// reference has no 16-bit path for these).
//
// Norm: one block per row; the mean and then the centred variance (two passes over the row,
// the second from cache) are block reductions of warp shuffles. The backward's gx is another
// block per row; gw/gb are column sums over rows, done in fixed-size row chunks (per-chunk
// partials, then a sum over chunks in order) so they are deterministic without atomics.
// Attention: the plain formulation the CPU uses — scores = scale·q·kᵀ by cuBLAS strided-
// batched GEMMs per (batch, head), a warp-per-row masked softmax (causal mask aligned to the
// last key) that writes the kept probabilities and the dropped-out weights, then weights·v;
// backward: gv = wᵀ·gout, dp = gout·vᵀ (⊙ keep), ds = p ⊙ (dp − Σ p·dp), gq = s·ds·k,
// gk = s·dsᵀ·q. q, k, v and the outputs are read and written through their strides (unit on
// D), so head views of (B, T, H, D) memory need no copy. The T×Tk scores are materialised
// here; the fused flash-style kernels (no probabilities kept) are in fused_attention.cu.
// bias_gelu: elementwise with tensor/math.h's gelu_tanh (+ its derivative); gb = column
// sums of gx. Rotary: cos/sin of every (position, pair) in double (angles reach thousands of
// radians), then one thread per pair.
#include <algorithm>
#include <cmath>

#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/libs.cuh"
#include "tensor/math.h"

namespace mox {

namespace {
template <typename T> const T* cptr(const Tensor& t) { return static_cast<const T*>(t.raw_data()); }
template <typename T> const T* cptr_or_null(const Tensor* t) { return t ? cptr<T>(*t) : nullptr; }
template <typename T> T* mptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }
template <typename T> T* mptr_or_null(const Tensor* t) { return t ? mptr<T>(*t) : nullptr; }

DType acc_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

unsigned row_blocks(int64_t rows) { return unsigned(std::min<int64_t>(rows, 65535 * 8)); }

// The kernels read and write norm's saved μ and r in x's compute type (backend.h).
void check_norm_stats(const char* op, const Tensor& x, const Tensor* mean, const Tensor& rstd) {
  for (const Tensor* t : {mean, &rstd})
    MOX_CHECK(!t || t->dtype() == acc_dtype(x.dtype()), op, " on CUDA: saved statistics ", describe(*t),
              " must be ", acc_dtype(x.dtype()), " for input ", describe(x));
}

// ------------------------------------------------------------------------ column sums
// out0[c] = Σ_r v0(r, c) and out1[c] = Σ_r v1(r, c) over a (rows, C) grid of values that the
// functor f adds into (v0, v1). Blocks of 32 columns × 8 row lanes each sum one chunk of rows
// into partial (chunks, 2, C); column_finish adds the chunks in order.
constexpr int kColLanes = 8;

template <typename A, typename F>
__global__ void column_partials(F f, int64_t rows, int64_t C, int64_t rows_per_chunk, A* partial) {
  __shared__ A s0[kColLanes][33], s1[kColLanes][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * 32 + tx;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  A a0 = A(0), a1 = A(0);
  if (c < C)
    for (int64_t r = r0 + ty; r < r1; r += kColLanes) f(r, c, a0, a1);
  s0[ty][tx] = a0;
  s1[ty][tx] = a1;
  __syncthreads();
  if (ty == 0 && c < C) {
    A t0 = A(0), t1 = A(0);
    for (int y = 0; y < kColLanes; ++y) {
      t0 += s0[y][tx];
      t1 += s1[y][tx];
    }
    partial[(int64_t(blockIdx.y) * 2) * C + c] = t0;
    partial[(int64_t(blockIdx.y) * 2 + 1) * C + c] = t1;
  }
}

template <typename T, typename A>
__global__ void column_finish(const A* partial, int64_t chunks, int64_t C, T* out0, T* out1) {
  MOX_GRID_STRIDE(c, C) {
    A t0 = A(0), t1 = A(0);
    for (int64_t k = 0; k < chunks; ++k) {
      t0 += partial[(k * 2) * C + c];
      t1 += partial[(k * 2 + 1) * C + c];
    }
    if (out0) out0[c] = T(t0);
    if (out1) out1[c] = T(t1);
  }
}

template <typename T, typename F>
void column_sums(F f, int64_t rows, int64_t C, T* out0, T* out1, DType dtype, Device device) {
  using A = cuda::acc_t<T>;
  if (C == 0 || (!out0 && !out1)) return;
  const int64_t rows_per_chunk = std::max<int64_t>(64, (rows + 1023) / 1024);
  const int64_t chunks = std::max<int64_t>(1, (rows + rows_per_chunk - 1) / rows_per_chunk);
  Tensor partial = empty({chunks * 2 * C}, acc_dtype(dtype), device);   // (chunks, 2, C)
  const int64_t col_blocks = (C + 31) / 32;
  MOX_CHECK(col_blocks <= INT32_MAX, "CUDA column sum: C=", C, " is too large");
  column_partials<A, F><<<dim3(unsigned(col_blocks), unsigned(chunks)), dim3(32, kColLanes), 0, cuda::stream()>>>(
      f, rows, C, rows_per_chunk, mptr<A>(partial));
  CUDA_CHECK_LAUNCH();
  column_finish<T, A><<<cuda::blocks_for(C), cuda::kThreads, 0, cuda::stream()>>>(mptr<A>(partial), chunks, C, out0,
                                                                                  out1);
  CUDA_CHECK_LAUNCH();
}

// ------------------------------------------------------------------------ norm kernels

// y = (x − μ)·r·w + b per row (μ = 0 without `center`); mean/rstd receive μ and r in the
// compute type (f32 for 16-bit x: a bf16 r would carry a 0.4 % error into the backward).
template <typename T>
__global__ void norm_kernel(const T* x, const T* w, const T* b, double eps, bool center, cuda::acc_t<T>* mean,
                            cuda::acc_t<T>* rstd, T* y, int64_t rows, int64_t C) {
  using A = cuda::acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * C;
    A mu = A(0);
    if (center) {
      A s = A(0);
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += A(xr[c]);
      mu = cuda::block_sum(s) / A(C);
    }
    A v = A(0);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A d = A(xr[c]) - mu;
      v += d * d;
    }
    const A rs = A(1) / sqrt(cuda::block_sum(v) / A(C) + A(eps));
    if (threadIdx.x == 0) {
      if (mean) mean[r] = mu;
      rstd[r] = rs;
    }
    T* yr = y + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A h = (A(xr[c]) - mu) * rs;
      yr[c] = T((w ? h * A(w[c]) : h) + (b ? A(b[c]) : A(0)));
    }
  }
}

// gx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = gy·w, x̂ = (x − μ)·r (no mean(ĝ) term for RMSNorm).
template <typename T>
__global__ void norm_backward_kernel(const T* x, const T* w, const cuda::acc_t<T>* mean, const cuda::acc_t<T>* rstd,
                                     const T* gy, T* gx, int64_t rows, int64_t C) {
  using A = cuda::acc_t<T>;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * C;
    const T* gr = gy + r * C;
    const A m = mean ? mean[r] : A(0), s = rstd[r];
    A sum_g = A(0), sum_gh = A(0);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A g = w ? A(gr[c]) * A(w[c]) : A(gr[c]);
      sum_g += g;
      sum_gh += g * ((A(xr[c]) - m) * s);
    }
    const A a = mean ? cuda::block_sum(sum_g) / A(C) : A(0);
    const A bh = cuda::block_sum(sum_gh) / A(C);
    T* gxr = gx + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const A g = w ? A(gr[c]) * A(w[c]) : A(gr[c]);
      gxr[c] = T(s * (g - a - (A(xr[c]) - m) * s * bh));
    }
  }
}

// (gy·x̂, gy) at (r, c), for gw and gb.
template <typename T> struct NormParamGrads {
  const T* x;
  const cuda::acc_t<T>*mean, *rstd;
  const T* gy;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t c, cuda::acc_t<T>& v0, cuda::acc_t<T>& v1) const {
    using A = cuda::acc_t<T>;
    const A g = A(gy[r * C + c]);
    const A m = mean ? mean[r] : A(0);
    v0 += g * ((A(x[r * C + c]) - m) * rstd[r]);
    v1 += g;
  }
};

// ------------------------------------------------------------------------ attention kernels

// Row r of the (rows, Tk) scores p (query i = r mod Tq) becomes the softmax of its first
// n = Tk (or i + Tk − Tq + 1 when causal) entries and zeros after; one warp per row. With
// write_p the probabilities go back to p; with keep, w = probabilities ⊙ keep (w may be p
// when the probabilities themselves are not kept).
template <typename T>
__global__ void attention_softmax_kernel(T* p, const T* keep, T* w, bool write_p, int64_t rows, int64_t Tq,
                                         int64_t Tk, bool causal) {
  using A = cuda::acc_t<T>;
  const int lane = threadIdx.x & 31;
  MOX_WARP_ROWS(r, rows) {
    T* row = p + r * Tk;
    const int64_t i = r % Tq, n = causal ? i + Tk - Tq + 1 : Tk;
    A m = -INFINITY;
    for (int64_t j = lane; j < n; j += 32) m = fmax(m, A(row[j]));
    m = cuda::warp_max(m);
    A s = A(0);
    for (int64_t j = lane; j < n; j += 32) s += cuda::dev_exp(A(row[j]) - m);
    const A inv = A(1) / cuda::warp_sum(s);
    for (int64_t j = lane; j < Tk; j += 32) {
      const T pt = T(j < n ? cuda::dev_exp(A(row[j]) - m) * inv : A(0));
      if (write_p) row[j] = pt;
      if (keep) w[r * Tk + j] = T(A(pt) * A(keep[r * Tk + j]));
    }
  }
}

// dp (rows, Tk) ← p ⊙ (dp' − Σ_j p·dp'), dp' = dp ⊙ keep (or dp); one warp per row.
template <typename T>
__global__ void attention_softmax_backward_kernel(const T* p, const T* keep, T* dp, int64_t rows, int64_t Tk) {
  using A = cuda::acc_t<T>;
  const int lane = threadIdx.x & 31;
  MOX_WARP_ROWS(r, rows) {
    const T* pr = p + r * Tk;
    T* dr = dp + r * Tk;
    const T* kr = keep ? keep + r * Tk : nullptr;
    A dot = A(0);
    for (int64_t j = lane; j < Tk; j += 32) {
      const A d = kr ? A(T(A(dr[j]) * A(kr[j]))) : A(dr[j]);
      dot += A(pr[j]) * d;
    }
    dot = cuda::warp_sum(dot);
    for (int64_t j = lane; j < Tk; j += 32) {
      const A d = kr ? A(T(A(dr[j]) * A(kr[j]))) : A(dr[j]);
      dr[j] = T(A(pr[j]) * (d - dot));
    }
  }
}

// out = a ⊙ b, n elements, contiguous.
template <typename T> __global__ void mul_kernel(const T* a, const T* b, T* out, int64_t n) {
  using A = cuda::acc_t<T>;
  MOX_GRID_STRIDE(i, n) out[i] = T(A(a[i]) * A(b[i]));
}

// The (rows, D) matrix of each (batch, head) of a (B, H, rows, D) tensor with unit stride on D.
struct HeadMat {
  const void* p;
  int64_t sb, sh, ld;
};
HeadMat heads(const Tensor& t) {
  return {t.raw_data(), t.stride(0), t.stride(1), t.size(2) == 1 ? t.size(3) : t.stride(2)};
}
HeadMat plane_heads(const Tensor& t, int64_t H, int64_t Tq, int64_t Tk) {   // contiguous (B, H, Tq, Tk)
  return {t.raw_data(), H * Tq * Tk, Tq * Tk, Tk};
}

// C = alpha·op(A)·op(B) + beta·C for every (batch, head): one strided-batched GEMM when the
// heads of all three operands sit at one stride, else one per batch (or per head) entry.
void head_gemm(DType dt, int64_t B, int64_t H, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
               const HeadMat& a, const HeadMat& b, double beta, const HeadMat& c) {
  const int64_t es = int64_t(dtype_size(dt));
  auto at = [es](const HeadMat& m, int64_t bi, int64_t hi) {
    return static_cast<const char*>(m.p) + (bi * m.sb + hi * m.sh) * es;
  };
  auto flat = [B, H](const HeadMat& m) { return B == 1 || m.sb == H * m.sh; };
  if (H == 1) {
    cuda::gemm(dt, ta, tb, M, N, K, alpha, a.p, a.ld, a.sb, b.p, b.ld, b.sb, beta, const_cast<void*>(c.p), c.ld,
               c.sb, B);
  } else if (flat(a) && flat(b) && flat(c)) {
    cuda::gemm(dt, ta, tb, M, N, K, alpha, a.p, a.ld, a.sh, b.p, b.ld, b.sh, beta, const_cast<void*>(c.p), c.ld,
               c.sh, B * H);
  } else if (B <= H) {
    for (int64_t bi = 0; bi < B; ++bi)
      cuda::gemm(dt, ta, tb, M, N, K, alpha, at(a, bi, 0), a.ld, a.sh, at(b, bi, 0), b.ld, b.sh, beta,
                 const_cast<char*>(at(c, bi, 0)), c.ld, c.sh, H);
  } else {
    for (int64_t hi = 0; hi < H; ++hi)
      cuda::gemm(dt, ta, tb, M, N, K, alpha, at(a, 0, hi), a.ld, a.sb, at(b, 0, hi), b.ld, b.sb, beta,
                 const_cast<char*>(at(c, 0, hi)), c.ld, c.sb, B);
  }
}

// ------------------------------------------------------------------------ bias + GELU kernels

template <typename T> __global__ void bias_gelu_kernel(const T* x, const T* b, T* y, int64_t n, int64_t C) {
  using A = cuda::acc_t<T>;
  MOX_GRID_STRIDE(i, n) {
    const A u = A(x[i]) + (b ? A(b[i % C]) : A(0));
    y[i] = T(math::gelu_tanh(u));
  }
}

template <typename T>
__global__ void bias_gelu_backward_kernel(const T* x, const T* b, const T* gy, T* gx, int64_t n, int64_t C) {
  using A = cuda::acc_t<T>;
  MOX_GRID_STRIDE(i, n) {
    const A u = A(x[i]) + (b ? A(b[i % C]) : A(0));
    gx[i] = T(A(gy[i]) * math::gelu_tanh_grad(u));
  }
}

template <typename T> struct ColumnOf {   // (m[r, c], 0): plain column sums of a (rows, C) matrix
  const T* m;
  int64_t C;
  __device__ void operator()(int64_t r, int64_t c, cuda::acc_t<T>& v0, cuda::acc_t<T>&) const {
    v0 += cuda::acc_t<T>(m[r * C + c]);
  }
};

// ------------------------------------------------------------------------ rotary kernels

// cs[t, i] = cos((start + t)·theta^(−2i/D)), sn[t, i] = ±sin(...), in double.
template <typename A>
__global__ void rotary_table_kernel(A* cs, A* sn, int64_t Tn, int64_t half, int64_t D, int64_t start, double theta,
                                    bool inverse) {
  MOX_GRID_STRIDE(k, Tn * half) {
    const int64_t t = k / half, i = k % half;
    const double angle = double(start + t) * pow(theta, -2.0 * double(i) / double(D));
    double s, c;
    sincos(angle, &s, &c);
    cs[k] = A(c);
    sn[k] = A(inverse ? -s : s);
  }
}

// One thread per (b, h, t, i < D/2): the pair (i, i + D/2) turns by the tabled angle.
template <typename T>
__global__ void rotary_kernel(const T* x, T* out, const cuda::acc_t<T>* cs, const cuda::acc_t<T>* sn, int64_t H,
                              int64_t Tn, int64_t half, int64_t xsb, int64_t xsh, int64_t xld, int64_t osb,
                              int64_t osh, int64_t o_ld, int64_t n) {
  using A = cuda::acc_t<T>;
  MOX_GRID_STRIDE(k, n) {
    const int64_t i = k % half, t = (k / half) % Tn, h = (k / (half * Tn)) % H, b = k / (half * Tn * H);
    const T* xr = x + b * xsb + h * xsh + t * xld;
    T* o = out + b * osb + h * osh + t * o_ld;
    const A c = cs[t * half + i], s = sn[t * half + i];
    const A x1 = A(xr[i]), x2 = A(xr[i + half]);
    o[i] = T(x1 * c - x2 * s);
    o[i + half] = T(x2 * c + x1 * s);
  }
}

}  // namespace

// ------------------------------------------------------------------------ launchers

void CudaBackend::norm(const Tensor& x, const Tensor* w, const Tensor* b, double eps, const Tensor* mean,
                       const Tensor& rstd, const Tensor& y) {
  const int64_t C = x.size(-1), rows = x.shape().last_dim_rows();
  check_norm_stats("norm", x, mean, rstd);
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), mean ? "layer_norm" : "rms_norm", T, {
    using A = cuda::acc_t<T>;
    norm_kernel<T><<<row_blocks(rows), cuda::row_threads(C), 0, cuda::stream()>>>(
        cptr<T>(x), cptr_or_null<T>(w), cptr_or_null<T>(b), eps, mean != nullptr, mptr_or_null<A>(mean),
        mptr<A>(rstd), mptr<T>(y), rows, C);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::norm_backward(const Tensor& x, const Tensor* w, const Tensor* mean, const Tensor& rstd,
                                const Tensor& gy, const Tensor* gx, const Tensor* gw, const Tensor* gb) {
  const int64_t C = x.size(-1), rows = x.shape().last_dim_rows();
  check_norm_stats("norm_backward", x, mean, rstd);
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), mean ? "layer_norm backward" : "rms_norm backward", T, {
    using A = cuda::acc_t<T>;
    if (gx && rows > 0) {
      norm_backward_kernel<T><<<row_blocks(rows), cuda::row_threads(C), 0, cuda::stream()>>>(
          cptr<T>(x), cptr_or_null<T>(w), cptr_or_null<A>(mean), cptr<A>(rstd), cptr<T>(gy), mptr<T>(*gx), rows,
          C);
      CUDA_CHECK_LAUNCH();
    }
    if (gw || gb) {
      const NormParamGrads<T> f{cptr<T>(x), cptr_or_null<A>(mean), cptr<A>(rstd), cptr<T>(gy), C};
      column_sums<T>(f, rows, C, mptr_or_null<T>(gw), mptr_or_null<T>(gb), x.dtype(), x.device());
    }
  });
}

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                            const Tensor* keep, const Tensor* probs, const Tensor& out) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  const DType dt = q.dtype();
  if (B * H * Tq == 0 || D == 0) return;
  const int64_t rows = B * H * Tq;
  // Scores (when the probabilities are not kept) or the dropped-out weights (when keep).
  Tensor scratch = (!probs || keep) ? empty({B, H, Tq, Tk}, dt, q.device()) : Tensor();
  const Tensor& p = probs ? *probs : scratch;   // scores, then probabilities
  const Tensor& weights = keep ? scratch : p;   // what multiplies v
  head_gemm(dt, B, H, false, true, Tq, Tk, D, scale, heads(q), heads(k), 0.0, plane_heads(p, H, Tq, Tk));
  MOX_CUDA_DISPATCH_FLOAT(dt, "scaled_dot_product_attention", T, {
    attention_softmax_kernel<T><<<cuda::warp_row_blocks(rows, 256), 256, 0, cuda::stream()>>>(
        mptr<T>(p), cptr_or_null<T>(keep), keep ? mptr<T>(scratch) : nullptr, /*write_p=*/probs != nullptr || !keep,
        rows, Tq, Tk, causal);
    CUDA_CHECK_LAUNCH();
  });
  head_gemm(dt, B, H, false, false, Tq, D, Tk, 1.0, plane_heads(weights, H, Tq, Tk), heads(v), 0.0, heads(out));
}

void CudaBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                                     const Tensor* keep, const Tensor& gout, double scale, const Tensor& gq,
                                     const Tensor& gk, const Tensor& gv) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  const DType dt = q.dtype();
  if (B * H * Tq == 0 || D == 0) return;
  const int64_t rows = B * H * Tq, plane = rows * Tk;
  Tensor dp = empty({B, H, Tq, Tk}, dt, q.device());   // gout·vᵀ, then the score gradient
  Tensor dropped = keep ? empty({B, H, Tq, Tk}, dt, q.device()) : Tensor();
  const Tensor& weights = keep ? dropped : probs;      // what multiplied v
  MOX_CUDA_DISPATCH_FLOAT(dt, "scaled_dot_product_attention backward", T, {
    if (keep) {
      mul_kernel<T><<<cuda::blocks_for(plane), cuda::kThreads, 0, cuda::stream()>>>(cptr<T>(probs), cptr<T>(*keep),
                                                                                    mptr<T>(dropped), plane);
      CUDA_CHECK_LAUNCH();
    }
    head_gemm(dt, B, H, true, false, Tk, D, Tq, 1.0, plane_heads(weights, H, Tq, Tk), heads(gout), 0.0,
              heads(gv));                                                                              // gv = wᵀ·gout
    head_gemm(dt, B, H, false, true, Tq, Tk, D, 1.0, heads(gout), heads(v), 0.0, plane_heads(dp, H, Tq, Tk));  // gout·vᵀ
    attention_softmax_backward_kernel<T><<<cuda::warp_row_blocks(rows, 256), 256, 0, cuda::stream()>>>(
        cptr<T>(probs), cptr_or_null<T>(keep), mptr<T>(dp), rows, Tk);
    CUDA_CHECK_LAUNCH();
    head_gemm(dt, B, H, false, false, Tq, D, Tk, scale, plane_heads(dp, H, Tq, Tk), heads(k), 0.0,
              heads(gq));                                                                              // gq = s·ds·k
    head_gemm(dt, B, H, true, false, Tk, D, Tq, scale, plane_heads(dp, H, Tq, Tk), heads(q), 0.0,
              heads(gk));                                                                              // gk = s·dsᵀ·q
  });
}

void CudaBackend::bias_gelu(const Tensor& x, const Tensor* b, const Tensor& y) {
  const int64_t n = x.numel(), C = x.size(-1);
  if (n == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), "bias_gelu", T, {
    bias_gelu_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(cptr<T>(x), cptr_or_null<T>(b),
                                                                                    mptr<T>(y), n, C);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::bias_gelu_backward(const Tensor& x, const Tensor* b, const Tensor& gy, const Tensor& gx,
                                     const Tensor* gb) {
  const int64_t n = x.numel(), C = x.size(-1), rows = C ? n / C : 0;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), "bias_gelu backward", T, {
    if (n > 0) {
      bias_gelu_backward_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
          cptr<T>(x), cptr_or_null<T>(b), cptr<T>(gy), mptr<T>(gx), n, C);
      CUDA_CHECK_LAUNCH();
    }
    if (gb) column_sums<T>(ColumnOf<T>{cptr<T>(gx), C}, rows, C, mptr<T>(*gb), static_cast<T*>(nullptr), x.dtype(),
                           x.device());
  });
}

void CudaBackend::rotary(const Tensor& x, int64_t start, double theta, bool inverse, const Tensor& out) {
  const int64_t B = x.size(0), H = x.size(1), Tn = x.size(2), D = x.size(3), half = D / 2;
  const int64_t n = B * H * Tn * half;
  if (n == 0) return;
  const DType dt = x.dtype();
  MOX_CUDA_DISPATCH_FLOAT(dt, "apply_rotary", T, {
    using A = cuda::acc_t<T>;
    Tensor table = empty({2, Tn * half}, acc_dtype(dt), x.device());   // cos, then ±sin
    A* cs = mptr<A>(table);
    A* sn = cs + Tn * half;
    rotary_table_kernel<A><<<cuda::blocks_for(Tn * half), cuda::kThreads, 0, cuda::stream()>>>(
        cs, sn, Tn, half, D, start, theta, inverse);
    CUDA_CHECK_LAUNCH();
    const HeadMat hx = heads(x), ho = heads(out);
    rotary_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        cptr<T>(x), mptr<T>(out), cs, sn, H, Tn, half, hx.sb, hx.sh, hx.ld, ho.sb, ho.sh, ho.ld, n);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mox
