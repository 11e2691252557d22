// index.cu — CUDA kernels: gather, scatter_add, index_select, index_add, topk, argsort.
//
// Semantics are those of tensor/cpu/index.cpp, the reference. Indices arrive as contiguous
// i64, bounds-checked by the front-end (tensor/ops.cpp); so do the contiguous src of the
// accumulating ops and the contiguous x of index_select/topk/argsort (gather's x may be
// strided). Orders are the CPU's strict total orders: NaN is the largest value, −0 equals
// +0, ties keep the lower index first.
//
// How, and what it costs:
//   gather, index_select  one thread per output element; a gather of strided x reads it in
//                         place (no contiguous copy).
//   scatter_add, index_add deterministic, and bitwise equal to the CPU for every dtype (no
//                         atomics): the destinations are stably radix-sorted (CUB) together
//                         with their source positions; then the first thread of each run of
//                         equal destinations adds that run's sources in ascending source
//                         order — the CPU's serial order — rounding to the dtype after each
//                         add as the CPU does. Cost: one O(N) radix sort of N 64-bit keys
//                         (only the bits that can differ are sorted) plus one pass; a
//                         destination hit d times costs one thread d sequential adds, so
//                         heavily repeated indices (thousands of hits on one row) serialise.
//                         index_add sorts only the m indices, then works on (outer, m, inner).
//   topk                  k ≤ 32 and rows ≤ 16384 long: one warp per row selects the k
//                         winners one after another — pick j is the best element that comes
//                         after pick j−1 in the total order — O(k·n/32) per row, no scratch.
//                         Otherwise as argsort, keeping the first k of each row.
//   argsort               CUB's stable segmented radix sort (DeviceSegmentedSort::
//                         StableSortPairs) of order-preserving unsigned keys (floats: sign-
//                         flipped bits, −0 → +0, every NaN → the largest key; signed ints:
//                         sign bit flipped; descending: the keys complemented, which keeps
//                         ties in index order). O(n) passes of the key's width per row, plus
//                         scratch of ~2 keys + 2 indices per element.
// Not here: the index bounds checks (front-end), gather/scatter of whole rows for MoE
// (built on index_select/index_add in moe/).
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <cstring>
#include <type_traits>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/cuda_backend.h"

namespace mox {

namespace {

using cuda::acc_t;
using cuda::ptr;
using cuda::Scratch;

constexpr int kBlock = 256;
constexpr int kWarp = 32;

// Bits needed to represent every value in [0, n) (at least 1).
int bits_for(int64_t n) {
  int b = 1;
  while (b < 64 && (uint64_t(1) << b) < uint64_t(n)) ++b;
  return b;
}

__global__ void iota_kernel(int64_t* v, int64_t n, int64_t mod) {
  MOX_GRID_STRIDE(i, n) v[i] = i % mod;
}

// Stable sort of (keys, values) by the low `end_bit` bits of the keys.
template <typename K>
void radix_sort_pairs(const K* keys_in, K* keys_out, const int64_t* vals_in, int64_t* vals_out, int64_t n, int end_bit) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, vals_in, vals_out, n, 0, end_bit,
                                             cuda::stream()));
  Scratch tmp(bytes ? bytes : 1);   // a null pointer would make CUB only size the call
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp.p, bytes, keys_in, keys_out, vals_in, vals_out, n, 0, end_bit,
                                             cuda::stream()));
}

// ------------------------------------------------------------------ gather, index_select

// iv: index's shape with x's strides, the stride of `dim` zeroed (added from the index).
template <typename T>
__global__ void gather_kernel(const T* x, cuda::View iv, int64_t dim_stride, const int64_t* idx, int64_t n, T* out) {
  MOX_GRID_STRIDE(k, n) out[k] = x[cuda::offset_of(iv, k) + idx[k] * dim_stride];
}

template <typename T>
__global__ void index_select_kernel(const T* x, const int64_t* idx, int64_t m, int64_t n, int64_t inner, int64_t total,
                                    T* out) {
  MOX_GRID_STRIDE(t, total) {
    const int64_t j = t % inner, r = t / inner, i = r % m, a = r / m;
    out[t] = x[(a * n + idx[i]) * inner + j];
  }
}

// ------------------------------------------------------------------ scatter_add, index_add

// Destination offset of every source element of scatter_add (as uint64 keys).
__global__ void scatter_keys_kernel(cuda::View iv, int64_t dim_stride, const int64_t* idx, int64_t n, uint64_t* keys) {
  MOX_GRID_STRIDE(k, n) keys[k] = uint64_t(cuda::offset_of(iv, k) + idx[k] * dim_stride);
}

// The first thread of each run of equal sorted keys adds the run's sources in order.
template <typename T>
__global__ void scatter_runs_kernel(const uint64_t* keys, const int64_t* perm, int64_t n, const T* src, T* out) {
  using A = acc_t<T>;
  MOX_GRID_STRIDE(p, n) {
    const uint64_t key = keys[p];
    if (p > 0 && keys[p - 1] == key) continue;
    T d = out[key];
    for (int64_t q = p; q < n && keys[q] == key; ++q) d = T(A(d) + A(src[perm[q]]));
    out[key] = d;
  }
}

// Over (outer, m, inner): thread (a, p, j) with p the start of a run of equal sorted indices
// adds src[a, perm[q], j] for the run into out[a, index, j].
template <typename T>
__global__ void index_add_runs_kernel(const uint64_t* keys, const int64_t* perm, int64_t m, int64_t n, int64_t inner,
                                      int64_t total, const T* src, T* out) {
  using A = acc_t<T>;
  MOX_GRID_STRIDE(t, total) {
    const int64_t j = t % inner, r = t / inner, p = r % m, a = r / m;
    const uint64_t key = keys[p];
    if (p > 0 && keys[p - 1] == key) continue;
    T* dst = out + (a * n + int64_t(key)) * inner + j;
    T d = *dst;
    for (int64_t q = p; q < m && keys[q] == key; ++q) d = T(A(d) + A(src[(a * m + perm[q]) * inner + j]));
    *dst = d;
  }
}

// ------------------------------------------------------------------ orders

template <typename A> __device__ __forceinline__ bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return v != v;
  else return false;
}

// The CPU's before_desc / before_asc: strict weak orders, NaN largest, ties by lower index.
template <typename A> __device__ __forceinline__ bool before(bool desc, A a, int64_t ia, A b, int64_t ib) {
  const bool na = is_nan(a), nb = is_nan(b);
  if (na != nb) return desc ? na : nb;
  if (!na && a != b) return desc ? a > b : a < b;
  return ia < ib;
}

// The unsigned key type of a dtype's width.
template <int Bytes> struct key_of;
template <> struct key_of<1> { using type = uint8_t; };
template <> struct key_of<2> { using type = uint16_t; };
template <> struct key_of<4> { using type = uint32_t; };
template <> struct key_of<8> { using type = uint64_t; };
template <typename T> using sort_key_t = typename key_of<int(sizeof(T))>::type;

// An unsigned key whose ascending order is before_asc's value order (ties left to the
// stable sort): floats map −0 to +0 and every NaN to the largest key.
template <typename T> __device__ __forceinline__ sort_key_t<T> order_key(T v) {
  using K = sort_key_t<T>;
  using A = acc_t<T>;
  constexpr K sign = K(K(1) << (8 * sizeof(K) - 1));
  if constexpr (std::is_floating_point_v<A>) {
    const A a = A(v);
    if (a != a) return K(~K(0));
    if (a == A(0)) return sign;   // ±0 → the key of +0
    K u;
    memcpy(&u, &v, sizeof(K));
    return (u & sign) ? K(~u) : K(u | sign);
  } else if constexpr (std::is_same_v<T, bool>) {
    return K(v ? 1 : 0);
  } else {
    K u;
    memcpy(&u, &v, sizeof(K));
    if constexpr (std::is_signed_v<T>) return K(u ^ sign);
    else return u;
  }
}

template <typename T>
__global__ void keys_kernel(const T* x, int64_t n, bool descending, sort_key_t<T>* keys) {
  MOX_GRID_STRIDE(i, n) {
    const sort_key_t<T> k = order_key(x[i]);
    keys[i] = descending ? sort_key_t<T>(~k) : k;
  }
}

__global__ void row_offsets_kernel(int* offsets, int64_t rows, int64_t n) {
  MOX_GRID_STRIDE(r, rows + 1) offsets[r] = int(r * n);
}

// Stable sort of each row of contiguous x (rows, n) into perm (positions within the row).
template <typename T>
void sort_rows(const Tensor& x, int64_t rows, int64_t n, bool descending, int64_t* perm) {
  using K = sort_key_t<T>;
  const int64_t total = rows * n;
  MOX_CHECK(total < (int64_t(1) << 31), "argsort/topk on CUDA: ", describe(x),
            " has more than 2^31 elements to sort; split it");
  Scratch keys_in(size_t(total) * sizeof(K)), keys_out(size_t(total) * sizeof(K));
  Scratch vals_in(size_t(total) * sizeof(int64_t)), offsets(size_t(rows + 1) * sizeof(int));
  keys_kernel<T><<<cuda::blocks_for(total), kBlock, 0, cuda::stream()>>>(ptr<T>(x), total, descending, keys_in.as<K>());
  CUDA_CHECK_LAUNCH();
  iota_kernel<<<cuda::blocks_for(total), kBlock, 0, cuda::stream()>>>(vals_in.as<int64_t>(), total, n);
  CUDA_CHECK_LAUNCH();
  row_offsets_kernel<<<cuda::blocks_for(rows + 1), kBlock, 0, cuda::stream()>>>(offsets.as<int>(), rows, n);
  CUDA_CHECK_LAUNCH();
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(nullptr, bytes, keys_in.as<K>(), keys_out.as<K>(),
                                                       vals_in.as<int64_t>(), perm, total, rows, offsets.as<int>(),
                                                       offsets.as<int>() + 1, cuda::stream()));
  Scratch tmp(bytes ? bytes : 1);   // a null pointer would make CUB only size the call
  CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(tmp.p, bytes, keys_in.as<K>(), keys_out.as<K>(),
                                                       vals_in.as<int64_t>(), perm, total, rows, offsets.as<int>(),
                                                       offsets.as<int>() + 1, cuda::stream()));
}

// ------------------------------------------------------------------ topk

// Shuffle of any compute type (sub-word types travel as int).
template <typename A> __device__ __forceinline__ A shfl_xor(A v, int m) {
  if constexpr (sizeof(A) < 4) return A(__shfl_xor_sync(0xffffffffu, int(v), m));
  else return __shfl_xor_sync(0xffffffffu, v, m);
}

constexpr int64_t kSelectMaxK = 32, kSelectMaxN = 16384;

template <typename T>
__global__ void topk_select_kernel(const T* x, int64_t rows, int64_t n, int64_t k, bool largest, T* values,
                                   int64_t* indices) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % kWarp;
  MOX_WARP_ROWS(r, rows) {
    const T* row = x + r * n;
    A pv = A(0);
    int64_t pi = -1;   // the previous pick
    for (int64_t j = 0; j < k; ++j) {
      A bv = A(0);
      int64_t bi = -1;
      for (int64_t c = lane; c < n; c += kWarp) {
        const A v = A(row[c]);
        if (pi >= 0 && !before(largest, pv, pi, v, c)) continue;   // already picked
        if (bi < 0 || before(largest, v, c, bv, bi)) { bv = v; bi = c; }
      }
      for (int m = kWarp / 2; m > 0; m >>= 1) {   // butterfly: every lane ends with the winner
        const A ov = shfl_xor(bv, m);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, m);
        if (oi >= 0 && (bi < 0 || before(largest, ov, oi, bv, bi))) { bv = ov; bi = oi; }
      }
      if (lane == 0) {
        values[r * k + j] = row[bi];
        indices[r * k + j] = bi;
      }
      pv = bv;
      pi = bi;
    }
  }
}

template <typename T>
__global__ void take_first_kernel(const T* x, const int64_t* perm, int64_t n, int64_t k, int64_t total, T* values,
                                  int64_t* indices) {
  MOX_GRID_STRIDE(t, total) {
    const int64_t r = t / k, j = t - r * k;
    const int64_t i = perm[r * n + j];
    indices[t] = i;
    values[t] = x[r * n + i];
  }
}

// ------------------------------------------------------------------ typed launchers

template <typename T>
void scatter_add_typed(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  if constexpr (std::is_same_v<T, bool>) {
    return;   // as the CPU: nothing to add on bool
  } else {
    const int64_t n = index.numel();
    if (n == 0) return;
    cuda::View iv = cuda::view_of(index);
    const int64_t dim_stride = out.dim() ? out.stride(dim) : 0;
    for (int d = 0; d < iv.ndim; ++d) iv.strides[d] = d == dim ? 0 : out.stride(d);
    Scratch keys(size_t(n) * 8), sorted(size_t(n) * 8), vals(size_t(n) * 8), perm(size_t(n) * 8);
    scatter_keys_kernel<<<cuda::blocks_for(n), kBlock, 0, cuda::stream()>>>(iv, dim_stride, ptr<int64_t>(index), n,
                                                                            keys.as<uint64_t>());
    CUDA_CHECK_LAUNCH();
    iota_kernel<<<cuda::blocks_for(n), kBlock, 0, cuda::stream()>>>(vals.as<int64_t>(), n, n);
    CUDA_CHECK_LAUNCH();
    radix_sort_pairs<uint64_t>(keys.as<uint64_t>(), sorted.as<uint64_t>(), vals.as<int64_t>(), perm.as<int64_t>(), n,
                               bits_for(out.numel()));
    scatter_runs_kernel<T><<<cuda::blocks_for(n), kBlock, 0, cuda::stream()>>>(sorted.as<uint64_t>(), perm.as<int64_t>(),
                                                                               n, ptr<T>(src), ptr<T>(out));
    CUDA_CHECK_LAUNCH();
  }
}

template <typename T>
void index_add_typed(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  if constexpr (std::is_same_v<T, bool>) {
    return;   // as the CPU: nothing to add on bool
  } else {
    const int64_t m = index.numel();
    int64_t outer = 1, n = out.size(dim), inner = 1;
    for (int d = 0; d < dim; ++d) outer *= out.size(d);
    for (int d = dim + 1; d < out.dim(); ++d) inner *= out.size(d);
    const int64_t total = outer * m * inner;
    if (total == 0) return;
    Scratch sorted(size_t(m) * 8), vals(size_t(m) * 8), perm(size_t(m) * 8);
    iota_kernel<<<cuda::blocks_for(m), kBlock, 0, cuda::stream()>>>(vals.as<int64_t>(), m, m);
    CUDA_CHECK_LAUNCH();
    // The i64 indices are in [0, n) (checked by the front-end): they are their own keys.
    radix_sort_pairs<uint64_t>(reinterpret_cast<const uint64_t*>(ptr<int64_t>(index)), sorted.as<uint64_t>(),
                               vals.as<int64_t>(), perm.as<int64_t>(), m, bits_for(n));
    index_add_runs_kernel<T><<<cuda::blocks_for(total), kBlock, 0, cuda::stream()>>>(
        sorted.as<uint64_t>(), perm.as<int64_t>(), m, n, inner, total, ptr<T>(src), ptr<T>(out));
    CUDA_CHECK_LAUNCH();
  }
}

template <typename T>
void topk_typed(const Tensor& x, int64_t k, bool largest, const Tensor& values, const Tensor& indices) {
  const int64_t n = x.shape().back(), rows = x.shape().last_dim_rows();
  if (rows == 0 || k == 0) return;
  if (k <= kSelectMaxK && n <= kSelectMaxN) {
    topk_select_kernel<T><<<cuda::warp_row_blocks(rows, kBlock), kBlock, 0, cuda::stream()>>>(
        ptr<T>(x), rows, n, k, largest, ptr<T>(values), ptr<int64_t>(indices));
    CUDA_CHECK_LAUNCH();
    return;
  }
  Scratch perm(size_t(rows * n) * sizeof(int64_t));
  sort_rows<T>(x, rows, n, largest, perm.as<int64_t>());
  take_first_kernel<T><<<cuda::blocks_for(rows * k), kBlock, 0, cuda::stream()>>>(
      ptr<T>(x), perm.as<int64_t>(), n, k, rows * k, ptr<T>(values), ptr<int64_t>(indices));
  CUDA_CHECK_LAUNCH();
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

void CudaBackend::gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  const int64_t n = index.numel();
  if (n == 0) return;
  cuda::View iv = cuda::view_of(index);
  const int64_t dim_stride = x.dim() ? x.stride(dim) : 0;
  for (int d = 0; d < iv.ndim; ++d) iv.strides[d] = d == dim ? 0 : x.stride(d);
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, {
    gather_kernel<T><<<cuda::blocks_for(n), kBlock, 0, cuda::stream()>>>(ptr<T>(x), iv, dim_stride, ptr<int64_t>(index),
                                                                        n, ptr<T>(out));
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  MOX_CUDA_DISPATCH_ALL(out.dtype(), T, scatter_add_typed<T>(out, dim, index, src));
}

void CudaBackend::index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  const int64_t m = index.numel();
  int64_t outer = 1, n = x.size(dim), inner = 1;
  for (int d = 0; d < dim; ++d) outer *= x.size(d);
  for (int d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  const int64_t total = outer * m * inner;
  if (total == 0) return;
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, {
    index_select_kernel<T><<<cuda::blocks_for(total), kBlock, 0, cuda::stream()>>>(ptr<T>(x), ptr<int64_t>(index), m, n,
                                                                                  inner, total, ptr<T>(out));
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  MOX_CUDA_DISPATCH_ALL(out.dtype(), T, index_add_typed<T>(out, dim, index, src));
}

void CudaBackend::topk(const Tensor& x, int64_t k, bool largest, const Tensor& values, const Tensor& indices) {
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, topk_typed<T>(x, k, largest, values, indices));
}

void CudaBackend::argsort(const Tensor& x, bool descending, const Tensor& indices) {
  const int64_t n = x.shape().back(), rows = x.shape().last_dim_rows();
  if (rows == 0) return;
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, sort_rows<T>(x, rows, n, descending, ptr<int64_t>(indices)));
}

}  // namespace mox
