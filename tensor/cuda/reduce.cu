// reduce.cu — CUDA kernels: reductions (sum, mean, max, min, prod over any set of dims),
// arg-reductions, softmax/log-softmax (+ backward), cumsum.
//
// Semantics are those of tensor/cpu/reduce.cpp, the reference: floating sums, means and
// products accumulate in double, integer ones in int64 (wrapping); max/min propagate NaN;
// the mean of nothing is NaN; argmax/argmin return the first NaN if any, else the first
// position of the extreme value; softmax ignores NaN when taking the row max (as std::max
// does on the CPU) and works in float for f16/bf16/f32, double for f64; cumsum accumulates
// in double (floats) or int64.
//
// How, and what it costs (correctness first; all inputs may be strided unless the front-end
// makes them contiguous):
//   reduce     the input is seen as (rows = kept positions) × (cols = reduced positions),
//              each a coalesced strided view, so no permuted copy is made. Many rows
//              (≥ 64 Ki) or short rows (≤ 16): one thread per output, a sequential loop in
//              row-major order of the reduced dims — the CPU's order, so sums are bitwise
//              equal to the CPU's. Otherwise each row is split into chunks of ≥ 1024
//              elements, one 256-thread block per (row, chunk) reduces a chunk in shared
//              memory into a double/int64 partial, and a second kernel combines the partials
//              in order. Tree order differs from the CPU's sequential order only in the last
//              bits of the double accumulator. Reducing leading dims of a contiguous tensor
//              (bias gradients) in the split path reads with a stride (uncoalesced); fine for
//              the sizes mox trains, the place to optimise if profiles say so.
//   arg_reduce same split: a thread per output when outputs are many or the dim is short,
//              else a block per output reducing (value, index) pairs with the CPU's rule.
//              Exact (indices are compared, not summed).
//   softmax    one warp per row (8 rows per block): max, Σ exp, then the outputs; three
//              passes over the row, shuffles for the reductions. Float sums in tree order.
//   cumsum     one thread per line (outer × inner) scanning sequentially when lines are many
//              or short — bitwise the CPU's result; otherwise one block per line with a
//              shared-memory scan per 256-element tile and a running carry (double/int64).
// Not here: matmul-style reductions (gemm.cu), norms (llm.cu).
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/cuda_backend.h"

namespace mox {

namespace {

using cuda::acc_t;
using cuda::ptr;
using cuda::Scratch;

// Accumulator of sums/products: double for floats, int64 for integers (the CPU's sum_t).
template <typename T>
using sum_t = std::conditional_t<std::is_floating_point_v<acc_t<T>>, double, int64_t>;

constexpr int kBlock = 256;

// A strided view with extent-1 dims dropped and continuing dims merged.
cuda::View coalesced(const int64_t* shape, const int64_t* strides, int n) {
  cuda::View v;
  int r = 0;
  for (int d = 0; d < n; ++d) {
    if (shape[d] == 1) continue;
    if (r > 0 && v.strides[r - 1] == strides[d] * shape[d]) {
      v.shape[r - 1] *= shape[d];
      v.strides[r - 1] = strides[d];
    } else {
      v.shape[r] = shape[d];
      v.strides[r] = strides[d];
      ++r;
    }
  }
  v.ndim = r;
  return v;
}

__device__ __forceinline__ int64_t view_offset(const cuda::View& v, int64_t i) {
  if (v.ndim == 0) return 0;
  if (v.ndim == 1) return i * v.strides[0];
  return cuda::offset_of(v, i);
}

// ------------------------------------------------------------------ reduce

// Wrapping integer arithmetic (signed overflow is undefined in C++; two's complement wraps).
__device__ __forceinline__ int64_t wrap_add(int64_t a, int64_t b) { return int64_t(uint64_t(a) + uint64_t(b)); }
__device__ __forceinline__ int64_t wrap_mul(int64_t a, int64_t b) { return int64_t(uint64_t(a) * uint64_t(b)); }
__device__ __forceinline__ double wrap_add(double a, double b) { return a + b; }
__device__ __forceinline__ double wrap_mul(double a, double b) { return a * b; }

template <typename S> __device__ __forceinline__ bool is_nan(S v) {
  if constexpr (std::is_floating_point_v<S>) return v != v;
  else return false;
}

// The identity of each op (max starts below everything; NaN is handled in combine).
template <typename S> __device__ __forceinline__ S identity(ReduceOp op) {
  switch (op) {
    case ReduceOp::prod: return S(1);
    case ReduceOp::max:
      if constexpr (std::is_floating_point_v<S>) return -INFINITY;
      else return std::numeric_limits<S>::min();
    case ReduceOp::min:
      if constexpr (std::is_floating_point_v<S>) return INFINITY;
      else return std::numeric_limits<S>::max();
    default: return S(0);
  }
}

// acc ⊕ v. max/min: a NaN (in either) wins, as the CPU's loop stops at the first NaN.
template <typename S> __device__ __forceinline__ S combine(ReduceOp op, S acc, S v) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean: return wrap_add(acc, v);
    case ReduceOp::prod: return wrap_mul(acc, v);
    case ReduceOp::max:
      if (is_nan(acc)) return acc;
      if (is_nan(v)) return v;
      return v > acc ? v : acc;
    case ReduceOp::min:
      if (is_nan(acc)) return acc;
      if (is_nan(v)) return v;
      return v < acc ? v : acc;
  }
  return acc;
}

template <typename T, typename S> __device__ __forceinline__ T finish(ReduceOp op, S acc, int64_t cols) {
  if (op == ReduceOp::mean) {
    if constexpr (std::is_floating_point_v<S>) acc = cols ? acc / S(cols) : S(NAN);
  }
  return T(acc_t<T>(acc));
}

template <typename T, typename S>
__global__ void reduce_serial_kernel(const T* x, cuda::View kept, cuda::View red, int64_t rows, int64_t cols,
                                     ReduceOp op, T* out) {
  MOX_GRID_STRIDE(r, rows) {
    const T* base = x + view_offset(kept, r);
    S acc = identity<S>(op);
    for (int64_t j = 0; j < cols; ++j) acc = combine(op, acc, S(acc_t<T>(base[view_offset(red, j)])));
    out[r] = finish<T, S>(op, acc, cols);
  }
}

// Block reduction of one value per thread; the result is valid in thread 0.
template <typename S> __device__ S block_combine(ReduceOp op, S v) {
  __shared__ S buf[kBlock];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) buf[threadIdx.x] = combine(op, buf[threadIdx.x], buf[threadIdx.x + s]);
    __syncthreads();
  }
  return buf[0];
}

// grid (rows, chunks): partial[r·chunks + c] = the chunk c of row r.
template <typename T, typename S>
__global__ void reduce_chunks_kernel(const T* x, cuda::View kept, cuda::View red, int64_t cols, int64_t per_chunk,
                                     ReduceOp op, S* partial) {
  const int64_t r = blockIdx.x, c = blockIdx.y;
  const T* base = x + view_offset(kept, r);
  const int64_t begin = c * per_chunk, end = min(cols, begin + per_chunk);
  S acc = identity<S>(op);
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x)
    acc = combine(op, acc, S(acc_t<T>(base[view_offset(red, j)])));
  acc = block_combine(op, acc);
  if (threadIdx.x == 0) partial[r * gridDim.y + c] = acc;
}

template <typename T, typename S>
__global__ void reduce_partials_kernel(const S* partial, int64_t rows, int64_t chunks, int64_t cols, ReduceOp op,
                                       T* out) {
  MOX_GRID_STRIDE(r, rows) {
    S acc = identity<S>(op);
    for (int64_t c = 0; c < chunks; ++c) acc = combine(op, acc, partial[r * chunks + c]);
    out[r] = finish<T, S>(op, acc, cols);
  }
}

// ------------------------------------------------------------------ arg_reduce

// (v, i) comes before (w, j): a NaN first (lower index among NaNs), else the larger (max)
// or smaller (min) value, ties to the lower index — the CPU's first-NaN/first-extreme rule.
template <typename A> __device__ __forceinline__ bool arg_better(bool is_max, A v, int64_t i, A w, int64_t j) {
  const bool nv = is_nan(v), nw = is_nan(w);
  if (nv != nw) return nv;
  if (!nv && v != w) return is_max ? v > w : v < w;
  return i < j;
}

template <typename T>
__global__ void arg_serial_kernel(const T* x, cuda::View kept, int64_t n, int64_t stride, bool is_max,
                                  int64_t outs, int64_t* out) {
  using A = acc_t<T>;
  MOX_GRID_STRIDE(o, outs) {
    const T* base = x + view_offset(kept, o);
    int64_t best = 0;
    A bv = A(base[0]);
    for (int64_t j = 1; j < n && !is_nan(bv); ++j) {   // stops at the first NaN (NaN wins)
      const A v = A(base[j * stride]);
      if (is_nan(v) || (is_max ? v > bv : v < bv)) { bv = v; best = j; }
    }
    out[o] = best;
  }
}

template <typename T>
__global__ void arg_block_kernel(const T* x, cuda::View kept, int64_t n, int64_t stride, bool is_max, int64_t* out) {
  using A = acc_t<T>;
  __shared__ A sv[kBlock];
  __shared__ int64_t si[kBlock];
  const int64_t o = blockIdx.x;
  const T* base = x + view_offset(kept, o);
  A bv = A(0);
  int64_t bi = -1;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const A v = A(base[j * stride]);
    if (bi < 0 || arg_better(is_max, v, j, bv, bi)) { bv = v; bi = j; }
  }
  sv[threadIdx.x] = bv;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) {
      const int64_t j = si[threadIdx.x + s];
      if (j >= 0 && (si[threadIdx.x] < 0 || arg_better(is_max, sv[threadIdx.x + s], j, sv[threadIdx.x], si[threadIdx.x]))) {
        sv[threadIdx.x] = sv[threadIdx.x + s];
        si[threadIdx.x] = j;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[o] = si[0];
}

// ------------------------------------------------------------------ softmax

constexpr int kWarp = 32;

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
  for (int m = kWarp / 2; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}
// std::max(m, v) of the CPU: (m < v) ? v : m — a NaN never replaces m.
template <typename A> __device__ __forceinline__ A nan_skipping_max(A m, A v) { return m < v ? v : m; }
template <typename A> __device__ __forceinline__ A warp_max(A v) {
  for (int m = kWarp / 2; m > 0; m >>= 1) v = nan_skipping_max(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}

template <typename T>
__global__ void softmax_kernel(const T* x, int64_t rows, int64_t cols, bool log, T* out) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % kWarp;
  MOX_WARP_ROWS(r, rows) {
    const T* xr = x + r * cols;
    T* orow = out + r * cols;
    A mx = -std::numeric_limits<A>::infinity();
    for (int64_t c = lane; c < cols; c += kWarp) mx = nan_skipping_max(mx, A(xr[c]));
    mx = warp_max(mx);
    if (mx == -std::numeric_limits<A>::infinity()) mx = A(0);   // all -inf: avoid inf - inf
    A sum = 0;
    for (int64_t c = lane; c < cols; c += kWarp) sum += ::exp(A(xr[c]) - mx);
    sum = warp_sum(sum);
    if (log) {
      const A log_sum = ::log(sum);   // (x − max) − log Σ, as the CPU (see reduce.cpp)
      for (int64_t c = lane; c < cols; c += kWarp) orow[c] = T((A(xr[c]) - mx) - log_sum);
    } else {
      const A inv = A(1) / sum;
      for (int64_t c = lane; c < cols; c += kWarp) orow[c] = T(::exp(A(xr[c]) - mx) * inv);
    }
  }
}

template <typename T>
__global__ void softmax_backward_kernel(const T* y, const T* gy, int64_t rows, int64_t cols, bool log, T* gx) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % kWarp;
  MOX_WARP_ROWS(r, rows) {
    const T *yr = y + r * cols, *gr = gy + r * cols;
    T* out = gx + r * cols;
    A dot = 0;
    if (log) {   // gx = gy − softmax · Σ gy
      for (int64_t c = lane; c < cols; c += kWarp) dot += A(gr[c]);
      dot = warp_sum(dot);
      for (int64_t c = lane; c < cols; c += kWarp) out[c] = T(A(gr[c]) - ::exp(A(yr[c])) * dot);
    } else {     // gx = y · (gy − Σ gy·y)
      for (int64_t c = lane; c < cols; c += kWarp) dot += A(gr[c]) * A(yr[c]);
      dot = warp_sum(dot);
      for (int64_t c = lane; c < cols; c += kWarp) out[c] = T(A(yr[c]) * (A(gr[c]) - dot));
    }
  }
}

// ------------------------------------------------------------------ cumsum

template <typename T>
__global__ void cumsum_serial_kernel(const T* x, int64_t lines, int64_t n, int64_t inner, T* out) {
  using S = sum_t<T>;
  MOX_GRID_STRIDE(l, lines) {
    const int64_t a = l / inner, i = l - a * inner;
    S acc = 0;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t k = (a * n + j) * inner + i;
      acc = wrap_add(acc, S(acc_t<T>(x[k])));
      out[k] = T(acc_t<T>(acc));
    }
  }
}

// One block per line: tiles of blockDim elements, inclusive scan in shared memory
// (Hillis–Steele), plus the carry of the tiles before.
template <typename T>
__global__ void cumsum_block_kernel(const T* x, int64_t n, int64_t inner, T* out) {
  using S = sum_t<T>;
  __shared__ S buf[kBlock];
  const int64_t l = blockIdx.x, a = l / inner, i = l - a * inner;
  S carry = 0;
  for (int64_t t0 = 0; t0 < n; t0 += blockDim.x) {
    const int64_t j = t0 + threadIdx.x;
    const int64_t k = (a * n + j) * inner + i;
    buf[threadIdx.x] = j < n ? S(acc_t<T>(x[k])) : S(0);
    __syncthreads();
    for (int s = 1; s < int(blockDim.x); s <<= 1) {
      const S add = int(threadIdx.x) >= s ? buf[threadIdx.x - s] : S(0);
      __syncthreads();
      buf[threadIdx.x] = wrap_add(buf[threadIdx.x], add);
      __syncthreads();
    }
    if (j < n) out[k] = T(acc_t<T>(wrap_add(carry, buf[threadIdx.x])));
    carry = wrap_add(carry, buf[blockDim.x - 1]);
    __syncthreads();
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Typed launchers (templates, so that `if constexpr` discards the bool instantiations).
template <typename T>
void reduce_typed(ReduceOp op, const Tensor& x, const cuda::View& kept, const cuda::View& red, int64_t rows,
                  int64_t cols, const Tensor& out) {
  if constexpr (std::is_same_v<T, bool>) {
    MOX_FAIL("reduce: bool input must be cast first");
  } else {
    using S = sum_t<T>;
    const T* xs = ptr<T>(x);
    T* o = ptr<T>(out);
    if (rows >= 65536 || cols <= 16) {
      reduce_serial_kernel<T, S><<<cuda::blocks_for(rows), kBlock, 0, cuda::stream()>>>(xs, kept, red, rows, cols, op, o);
      CUDA_CHECK_LAUNCH();
      return;
    }
    // Enough blocks to fill the GPU (≥ 2048 in all), each with ≥ 1024 elements.
    const int64_t chunks = std::max<int64_t>(1, std::min({ceil_div(cols, 1024), ceil_div(2048, rows), int64_t(1024)}));
    const int64_t per_chunk = ceil_div(cols, chunks);
    Scratch partial(size_t(rows * chunks) * sizeof(S));
    reduce_chunks_kernel<T, S><<<dim3(unsigned(rows), unsigned(chunks)), kBlock, 0, cuda::stream()>>>(
        xs, kept, red, cols, per_chunk, op, partial.as<S>());
    CUDA_CHECK_LAUNCH();
    reduce_partials_kernel<T, S><<<cuda::blocks_for(rows), kBlock, 0, cuda::stream()>>>(partial.as<S>(), rows, chunks,
                                                                                      cols, op, o);
    CUDA_CHECK_LAUNCH();
  }
}

template <typename T>
void cumsum_typed(const Tensor& x, int64_t lines, int64_t n, int64_t inner, const Tensor& out) {
  if constexpr (std::is_same_v<T, bool>) {
    MOX_FAIL("cumsum: bool input must be cast first");
  } else {
    if (lines >= 4096 || n <= 64)
      cumsum_serial_kernel<T><<<cuda::blocks_for(lines), kBlock, 0, cuda::stream()>>>(ptr<T>(x), lines, n, inner,
                                                                                     ptr<T>(out));
    else
      cumsum_block_kernel<T><<<unsigned(lines), kBlock, 0, cuda::stream()>>>(ptr<T>(x), n, inner, ptr<T>(out));
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

void CudaBackend::reduce(ReduceOp op, const Tensor& x, const bool* mask, const Tensor& out) {
  const int rank = x.dim();
  int64_t ks[Shape::kMaxRank], kst[Shape::kMaxRank], rs[Shape::kMaxRank], rst[Shape::kMaxRank];
  int nk = 0, nr = 0;
  int64_t rows = 1, cols = 1;
  for (int d = 0; d < rank; ++d) {
    if (mask[d]) { rs[nr] = x.size(d); rst[nr++] = x.stride(d); cols *= x.size(d); }
    else { ks[nk] = x.size(d); kst[nk++] = x.stride(d); rows *= x.size(d); }
  }
  if (rows == 0) return;
  const cuda::View kept = coalesced(ks, kst, nk), red = coalesced(rs, rst, nr);
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, reduce_typed<T>(op, x, kept, red, rows, cols, out));
}

void CudaBackend::arg_reduce(bool is_max, const Tensor& x, int dim, const Tensor& out) {
  const int rank = x.dim();
  const int64_t n = rank ? x.size(dim) : 1, stride = rank ? x.stride(dim) : 0;
  int64_t ks[Shape::kMaxRank], kst[Shape::kMaxRank];
  int nk = 0;
  int64_t outs = 1;
  for (int d = 0; d < rank; ++d)
    if (d != dim) { ks[nk] = x.size(d); kst[nk++] = x.stride(d); outs *= x.size(d); }
  if (outs == 0 || n == 0) return;
  const cuda::View kept = coalesced(ks, kst, nk);
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, {
    if (outs >= 65536 || n <= 64) {
      arg_serial_kernel<T><<<cuda::blocks_for(outs), kBlock, 0, cuda::stream()>>>(ptr<T>(x), kept, n, stride, is_max,
                                                                                  outs, ptr<int64_t>(out));
    } else {
      MOX_CHECK(outs < (int64_t(1) << 31), "arg_reduce: too many outputs for one launch");
      arg_block_kernel<T><<<unsigned(outs), kBlock, 0, cuda::stream()>>>(ptr<T>(x), kept, n, stride, is_max,
                                                                         ptr<int64_t>(out));
    }
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::softmax(const Tensor& x, bool log, const Tensor& out) {
  const int64_t cols = x.shape().back(), rows = x.shape().last_dim_rows();
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), "softmax", T, {
    softmax_kernel<T><<<cuda::warp_row_blocks(rows, kBlock), kBlock, 0, cuda::stream()>>>(ptr<T>(x), rows, cols, log,
                                                                                          ptr<T>(out));
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& gy, bool log, const Tensor& gx) {
  const int64_t cols = y.shape().back(), rows = y.shape().last_dim_rows();
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(y.dtype(), "softmax_backward", T, {
    softmax_backward_kernel<T><<<cuda::warp_row_blocks(rows, kBlock), kBlock, 0, cuda::stream()>>>(
        ptr<T>(y), ptr<T>(gy), rows, cols, log, ptr<T>(gx));
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::cumsum(const Tensor& x, int dim, const Tensor& out) {
  int64_t outer = 1, n = x.size(dim), inner = 1;
  for (int d = 0; d < dim; ++d) outer *= x.size(d);
  for (int d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  const int64_t lines = outer * inner;
  if (lines == 0 || n == 0) return;
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, cumsum_typed<T>(x, lines, n, inner, out));
}

}  // namespace mox
