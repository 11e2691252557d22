// fused_attention.cu — flash-style attention on CUDA, forward and backward, without the
// (B, H, Tq, Tk) probabilities: tensor/attention_math.h's algorithm (FlashAttention-2's,
// on CUDA cores) with its dropout decision and causal limit, the same code the CPU's fused
// attention (tensor/cpu/fused_attention.cpp) uses.
//
// Work split. A block of kWarps warps owns kRowsPerBlock consecutive rows of one (batch,
// head) — query rows in the forward and the gq kernel, key rows in the gk/gv kernel — each
// warp kRows of them, and walks the other side in tiles of 32 staged in shared memory (as
// f32, or f64 for f64). In a tile, lane l takes the tile's l-th key (or query): it computes
// that one score as a dot product over D, the warp reduces the tile's maximum and sum, and
// the accumulation over the tile is split the other way: lane l owns head features
// l, l + 32, ... (D ≤ 32·DPL) and adds each tile entry's weight (a warp shuffle) times that
// entry's row. Rows staged for lane-strided dot products are padded to D + 1 (no bank
// conflicts). Causal blocks stop at the last key (or start at the first query) any of their
// rows can see.
// Backward: D_i = gout_i·out_i (a warp per row), then gq with query rows per warp (scores,
// probabilities and dS recomputed from q, k and the row's lse), then gk/gv with key rows per
// warp (recomputed again). Every sum is one thread's, in a fixed order: no atomics, so
// results are deterministic.
// Loads and stores go through the tensors' strides (unit on D): head views of (B, T, H, D)
// memory, and the thirds of a packed qkv gradient, need no copy.
//
// What it is not: a tensor-core (mma/wgmma) kernel — the scores and the accumulation are
// CUDA-core FMAs — nor a split-K decode kernel (one query per head fills few warps); head
// dims above kCudaFusedAttentionMaxHeadDim (= 128) are an error (the materialised path in
// llm.cu takes them).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tensor/attention_math.h"
#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/libs.cuh"

namespace mox {

namespace {
using attention_math::dropout_multiplier;
using attention_math::visible_keys;

constexpr int kWarps = 8;
constexpr int kRows = 4;                          // rows per warp
constexpr int kRowsPerBlock = kWarps * kRows;     // 32
constexpr int kTile = 32;                         // keys (or queries) per shared-memory tile
static_assert(kTile == kRowsPerBlock, "stage_tile stages a block's own rows as one tile");

// Strides of a (B, H, T, D) tensor with unit stride on D.
struct HeadRows {
  int64_t sb, sh, st;
  __host__ __device__ int64_t at(int64_t b, int64_t h, int64_t t) const { return b * sb + h * sh + t * st; }
};
HeadRows head_rows(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

template <typename T> struct FusedArgs {
  const T *q, *k, *v, *out, *gout;
  T *o_w, *gq, *gk, *gv;          // outputs of the kernel at hand (others null)
  cuda::acc_t<T>* lse;            // (B, H, Tq)
  const cuda::acc_t<T>* delta;    // (B, H, Tq): gout_i·out_i (backward)
  HeadRows qs, ks, vs, os, gos, gqs, gks, gvs;
  int64_t H, Tq, Tk, D;
  bool causal;
  cuda::acc_t<T> scale;
  AttentionDropout dropout;
};

// Rows [t0, t0 + 32) of one head of a (B, H, T, D) tensor into smem[32][ld] as A, zeros past T.
template <typename T, typename A>
__device__ void stage_tile(A* smem, int64_t ld, const T* x, const HeadRows& s, int64_t b, int64_t h, int64_t t0,
                           int64_t T_, int64_t D) {
  for (int64_t e = threadIdx.x; e < kTile * D; e += blockDim.x) {
    const int64_t r = e / D, d = e % D, t = t0 + r;
    smem[r * ld + d] = t < T_ ? A(x[s.at(b, h, t) + d]) : A(0);
  }
}

template <typename A> __device__ __forceinline__ A dot(const A* a, const A* b, int64_t D) {
  A s = A(0);
  for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

// A warp's row accumulator: lane l holds features l, l + 32, …, l + 32·(DPL − 1) (those < D).
template <typename A, int DPL> __device__ __forceinline__ void zero_row(A (&acc)[DPL]) {
#pragma unroll
  for (int c = 0; c < DPL; ++c) acc[c] = A(0);
}
// acc += w·row (row: D features in shared memory).
template <typename A, int DPL>
__device__ __forceinline__ void add_scaled_row(A (&acc)[DPL], A w, const A* row, int lane, int64_t D) {
#pragma unroll
  for (int c = 0; c < DPL; ++c)
    if (lane + 32 * c < D) acc[c] += w * row[lane + 32 * c];
}
// dst[0, D) = factor·acc, converted to T.
template <typename T, typename A, int DPL>
__device__ __forceinline__ void store_row(T* dst, const A (&acc)[DPL], A factor, int lane, int64_t D) {
#pragma unroll
  for (int c = 0; c < DPL; ++c)
    if (lane + 32 * c < D) dst[lane + 32 * c] = T(acc[c] * factor);
}

// Blocks of one kernel: (batch·head) × row tiles, flattened.
__device__ __forceinline__ void block_rows(int64_t T_, int64_t H, int64_t& b, int64_t& h, int64_t& bh, int64_t& t0) {
  const int64_t tiles = (T_ + kRowsPerBlock - 1) / kRowsPerBlock;
  bh = int64_t(blockIdx.x) / tiles;
  b = bh / H;
  h = bh % H;
  t0 = (int64_t(blockIdx.x) % tiles) * kRowsPerBlock;
}

// ------------------------------------------------------------------------ forward

template <typename T, int DPL> __global__ void __launch_bounds__(kWarps * 32) fused_forward_kernel(FusedArgs<T> a) {
  using A = cuda::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  const int64_t D = a.D;
  A* kt = reinterpret_cast<A*>(smem_bytes);   // [kTile][D + 1]
  A* vt = kt + kTile * (D + 1);               // [kTile][D]
  A* qt = vt + kTile * D;                     // [kRowsPerBlock][D]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t b, h, bh, i0;
  block_rows(a.Tq, a.H, b, h, bh, i0);
  stage_tile(qt, D, a.q, a.qs, b, h, i0, a.Tq, D);

  A m[kRows], l[kRows], acc[kRows][DPL];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = A(0);
    zero_row(acc[r]);
  }
  const int64_t keys = visible_keys(min(a.Tq, i0 + kRowsPerBlock) - 1, a.Tq, a.Tk, a.causal);
  for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
    __syncthreads();   // the previous tile is consumed
    stage_tile(kt, D + 1, a.k, a.ks, b, h, j0, a.Tk, D);
    stage_tile(vt, D, a.v, a.vs, b, h, j0, a.Tk, D);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = warp * kRows + r;
      const int64_t i = i0 + row;
      if (i >= a.Tq) continue;   // uniform over the warp, as is the next test
      const int64_t n = visible_keys(i, a.Tq, a.Tk, a.causal);
      if (j0 >= n) continue;
      const int64_t j = j0 + lane;
      const A s = j < n ? dot(qt + row * D, kt + lane * (D + 1), D) * a.scale : A(-INFINITY);
      const A m_new = fmax(m[r], cuda::warp_max(s));   // finite: key j0 < n is visible
      const A factor = cuda::dev_exp(m[r] - m_new);    // 0 while nothing was accumulated
      const A p = j < n ? cuda::dev_exp(s - m_new) : A(0);
      l[r] = l[r] * factor + cuda::warp_sum(p);
      const A w = j < n ? p * dropout_multiplier<T, A>(a.dropout, bh * a.Tq + i, a.Tk, j) : A(0);
#pragma unroll
      for (int c = 0; c < DPL; ++c) acc[r][c] *= factor;
      const int nt = int(min(int64_t(kTile), n - j0));
      for (int jj = 0; jj < nt; ++jj) {
        add_scaled_row(acc[r], __shfl_sync(0xffffffffu, w, jj), vt + jj * D, lane, D);
      }
      m[r] = m_new;
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t i = i0 + warp * kRows + r;
    if (i >= a.Tq) continue;
    store_row(a.o_w + a.os.at(b, h, i), acc[r], A(1) / l[r], lane, D);
    if (lane == 0) a.lse[bh * a.Tq + i] = m[r] + log(l[r]);
  }
}

// ------------------------------------------------------------------------ backward

// delta[r] = gout_r·out_r, a warp per query row.
template <typename T> __global__ void fused_delta_kernel(FusedArgs<T> a, cuda::acc_t<T>* delta, int64_t rows) {
  using A = cuda::acc_t<T>;
  const int lane = threadIdx.x & 31;
  MOX_WARP_ROWS(r, rows) {
    const int64_t i = r % a.Tq, bh = r / a.Tq, b = bh / a.H, h = bh % a.H;
    const T* o = a.out + a.os.at(b, h, i);
    const T* g = a.gout + a.gos.at(b, h, i);
    A s = A(0);
    for (int64_t d = lane; d < a.D; d += 32) s += A(o[d]) * A(g[d]);
    s = cuda::warp_sum(s);
    if (lane == 0) delta[r] = s;
  }
}

// dS_ij and (through w) P_ij·mult_ij of query row r = bh·Tq + i, key j, from the staged q and
// gout rows and k and v rows.
template <typename T, typename A>
__device__ __forceinline__ A score_grad(const FusedArgs<T>& a, const A* qi, const A* gi, const A* kj, const A* vj,
                                        A lse_i, A delta_i, int64_t r, int64_t j, A& w) {
  const A P = cuda::dev_exp(fmin(dot(qi, kj, a.D) * a.scale - lse_i, A(0)));
  const A mult = dropout_multiplier<T, A>(a.dropout, r, a.Tk, j);
  w = P * mult;
  return mult == A(0) ? -P * delta_i : P * (dot(gi, vj, a.D) * mult - delta_i);
}

// gq_i = scale·Σ_j dS_ij·k_j: query rows per warp, key tiles across lanes.
template <typename T, int DPL> __global__ void __launch_bounds__(kWarps * 32) fused_gq_kernel(FusedArgs<T> a) {
  using A = cuda::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  const int64_t D = a.D;
  A* kt = reinterpret_cast<A*>(smem_bytes);   // [kTile][D + 1]
  A* vt = kt + kTile * (D + 1);               // [kTile][D + 1]
  A* qt = vt + kTile * (D + 1);               // [kRowsPerBlock][D]
  A* gt = qt + kRowsPerBlock * D;             // [kRowsPerBlock][D]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t b, h, bh, i0;
  block_rows(a.Tq, a.H, b, h, bh, i0);
  stage_tile(qt, D, a.q, a.qs, b, h, i0, a.Tq, D);
  stage_tile(gt, D, a.gout, a.gos, b, h, i0, a.Tq, D);

  A acc[kRows][DPL], lse[kRows], delta[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t i = min(i0 + warp * kRows + r, a.Tq - 1);
    lse[r] = a.lse[bh * a.Tq + i];
    delta[r] = a.delta[bh * a.Tq + i];
    zero_row(acc[r]);
  }
  const int64_t keys = visible_keys(min(a.Tq, i0 + kRowsPerBlock) - 1, a.Tq, a.Tk, a.causal);
  for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
    __syncthreads();
    stage_tile(kt, D + 1, a.k, a.ks, b, h, j0, a.Tk, D);
    stage_tile(vt, D + 1, a.v, a.vs, b, h, j0, a.Tk, D);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = warp * kRows + r;
      const int64_t i = i0 + row;
      if (i >= a.Tq) continue;
      const int64_t n = visible_keys(i, a.Tq, a.Tk, a.causal);
      if (j0 >= n) continue;
      const int64_t j = j0 + lane;
      A w = A(0), ds = A(0);
      if (j < n)
        ds = score_grad(a, qt + row * D, gt + row * D, kt + lane * (D + 1), vt + lane * (D + 1), lse[r], delta[r],
                        bh * a.Tq + i, j, w);
      const int nt = int(min(int64_t(kTile), n - j0));
      for (int jj = 0; jj < nt; ++jj) {
        add_scaled_row(acc[r], __shfl_sync(0xffffffffu, ds, jj), kt + jj * (D + 1), lane, D);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t i = i0 + warp * kRows + r;
    if (i < a.Tq) store_row(a.gq + a.gqs.at(b, h, i), acc[r], a.scale, lane, D);
  }
}

// gk_j = scale·Σ_i dS_ij·q_i and gv_j = Σ_i P_ij·mult_ij·gout_i: key rows per warp, query
// tiles across lanes.
template <typename T, int DPL> __global__ void __launch_bounds__(kWarps * 32) fused_gkv_kernel(FusedArgs<T> a) {
  using A = cuda::acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem_bytes[];
  const int64_t D = a.D;
  A* qt = reinterpret_cast<A*>(smem_bytes);   // [kTile][D + 1]
  A* gt = qt + kTile * (D + 1);               // [kTile][D + 1]
  A* kt = gt + kTile * (D + 1);               // [kRowsPerBlock][D]
  A* vt = kt + kRowsPerBlock * D;             // [kRowsPerBlock][D]
  A* lse_t = vt + kRowsPerBlock * D;          // [kTile]
  A* delta_t = lse_t + kTile;                 // [kTile]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t b, h, bh, j0;
  block_rows(a.Tk, a.H, b, h, bh, j0);
  stage_tile(kt, D, a.k, a.ks, b, h, j0, a.Tk, D);
  stage_tile(vt, D, a.v, a.vs, b, h, j0, a.Tk, D);

  A acck[kRows][DPL], accv[kRows][DPL];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    zero_row(acck[r]);
    zero_row(accv[r]);
  }
  // With `causal`, query i sees key j when i ≥ j − (Tk − Tq): the block's first key decides.
  const int64_t first_query = a.causal ? max(int64_t(0), j0 - (a.Tk - a.Tq)) : 0;
  for (int64_t i0 = first_query; i0 < a.Tq; i0 += kTile) {
    __syncthreads();
    stage_tile(qt, D + 1, a.q, a.qs, b, h, i0, a.Tq, D);
    stage_tile(gt, D + 1, a.gout, a.gos, b, h, i0, a.Tq, D);
    if (threadIdx.x < kTile) {
      const int64_t i = min(i0 + int64_t(threadIdx.x), a.Tq - 1);
      lse_t[threadIdx.x] = a.lse[bh * a.Tq + i];
      delta_t[threadIdx.x] = a.delta[bh * a.Tq + i];
    }
    __syncthreads();
    const int nt = int(min(int64_t(kTile), a.Tq - i0));
    const int64_t i = i0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int row = warp * kRows + r;
      const int64_t j = j0 + row;
      if (j >= a.Tk) continue;   // uniform over the warp, as is the next test
      if (visible_keys(i0 + nt - 1, a.Tq, a.Tk, a.causal) <= j) continue;   // no query of the tile sees j
      A w = A(0), ds = A(0);
      if (lane < nt && j < visible_keys(i, a.Tq, a.Tk, a.causal))
        ds = score_grad(a, qt + lane * (D + 1), gt + lane * (D + 1), kt + row * D, vt + row * D, lse_t[lane],
                        delta_t[lane], bh * a.Tq + i, j, w);
      for (int ii = 0; ii < nt; ++ii) {
        add_scaled_row(accv[r], __shfl_sync(0xffffffffu, w, ii), gt + ii * (D + 1), lane, D);
        add_scaled_row(acck[r], __shfl_sync(0xffffffffu, ds, ii), qt + ii * (D + 1), lane, D);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t j = j0 + warp * kRows + r;
    if (j >= a.Tk) continue;
    store_row(a.gk + a.gks.at(b, h, j), acck[r], a.scale, lane, D);
    store_row(a.gv + a.gvs.at(b, h, j), accv[r], A(1), lane, D);
  }
}

// ------------------------------------------------------------------------ launch

template <typename T>
FusedArgs<T> fused_args(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                        const AttentionDropout& dropout) {
  FusedArgs<T> a{};
  a.q = cuda::ptr<T>(q);
  a.k = cuda::ptr<T>(k);
  a.v = cuda::ptr<T>(v);
  a.qs = head_rows(q);
  a.ks = head_rows(k);
  a.vs = head_rows(v);
  a.H = q.size(1);
  a.Tq = q.size(2);
  a.Tk = k.size(2);
  a.D = q.size(3);
  a.causal = causal;
  a.scale = cuda::acc_t<T>(scale);
  a.dropout = dropout;
  return a;
}

// Calls f with the register width DPL (head features per lane) that covers D.
template <typename F> void with_features_per_lane(int64_t D, const char* op, F&& f) {
  MOX_CHECK(D <= kCudaFusedAttentionMaxHeadDim, op, ": the CUDA fused attention takes head dims up to ",
            kCudaFusedAttentionMaxHeadDim, ", got D=", D,
            "; use the materialised kernel (set_attention_kernel(AttentionKernel::materialized) or "
            "--attention materialized)");
  if (D <= 32) f(std::integral_constant<int, 1>{});
  else if (D <= 64) f(std::integral_constant<int, 2>{});
  else f(std::integral_constant<int, 4>{});
}

// Launches kernel over `blocks` blocks with `smem` bytes of dynamic shared memory, opting in
// above the default 48 KiB.
template <typename K, typename... Args> void launch(K kernel, int64_t blocks, size_t smem, Args... args) {
  MOX_CHECK(blocks <= INT32_MAX, "attention (fused): ", blocks, " thread blocks exceed CUDA's grid limit of 2^31 − 1");
  if (smem > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<unsigned(blocks), kWarps * 32, smem, cuda::stream()>>>(args...);
  CUDA_CHECK_LAUNCH();
}

int64_t row_blocks(int64_t B, int64_t H, int64_t T_) { return B * H * ((T_ + kRowsPerBlock - 1) / kRowsPerBlock); }
}  // namespace

void CudaBackend::attention_fused(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                  const AttentionDropout& dropout, const Tensor& out, const Tensor& lse) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  if (B * H * Tq == 0 || D == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(q.dtype(), "attention (fused)", T, {
    using A = cuda::acc_t<T>;
    FusedArgs<T> a = fused_args<T>(q, k, v, causal, scale, dropout);
    a.o_w = cuda::ptr<T>(out);
    a.os = head_rows(out);
    a.lse = cuda::ptr<A>(lse);
    const size_t smem = size_t(kTile * (D + 1) + kTile * D + kRowsPerBlock * D) * sizeof(A);
    with_features_per_lane(D, "attention (fused)", [&](auto dpl) {
      launch(fused_forward_kernel<T, decltype(dpl)::value>, row_blocks(B, H, Tq), smem, a);
    });
  });
}

void CudaBackend::attention_fused_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                           const Tensor& lse, const Tensor& gout, bool causal, double scale,
                                           const AttentionDropout& dropout, const Tensor& gq, const Tensor& gk,
                                           const Tensor& gv) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  if (B * H * Tq == 0 || D == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(q.dtype(), "attention (fused) backward", T, {
    using A = cuda::acc_t<T>;
    FusedArgs<T> a = fused_args<T>(q, k, v, causal, scale, dropout);
    a.out = cuda::ptr<T>(out);
    a.os = head_rows(out);
    a.gout = cuda::ptr<T>(gout);
    a.gos = head_rows(gout);
    a.lse = cuda::ptr<A>(lse);
    a.gq = cuda::ptr<T>(gq);
    a.gqs = head_rows(gq);
    a.gk = cuda::ptr<T>(gk);
    a.gks = head_rows(gk);
    a.gv = cuda::ptr<T>(gv);
    a.gvs = head_rows(gv);
    const size_t smem_gq = size_t(2 * kTile * (D + 1) + 2 * kRowsPerBlock * D) * sizeof(A);
    const size_t smem_gkv = size_t(2 * kTile * (D + 1) + 2 * kRowsPerBlock * D + 2 * kTile) * sizeof(A);
    with_features_per_lane(D, "attention (fused) backward", [&](auto dpl) {
      const int64_t rows = B * H * Tq;
      cuda::Scratch delta(size_t(rows) * sizeof(A));
      fused_delta_kernel<T><<<cuda::warp_row_blocks(rows, kWarps * 32), kWarps * 32, 0, cuda::stream()>>>(
          a, delta.as<A>(), rows);
      CUDA_CHECK_LAUNCH();
      a.delta = delta.as<A>();
      launch(fused_gq_kernel<T, decltype(dpl)::value>, row_blocks(B, H, Tq), smem_gq, a);
      launch(fused_gkv_kernel<T, decltype(dpl)::value>, row_blocks(B, H, Tk), smem_gkv, a);
    });
  });
}

}  // namespace mox
