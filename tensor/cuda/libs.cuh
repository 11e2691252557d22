// libs.cuh — what gemm.cu, conv.cu and llm.cu share: the cuBLAS and cuDNN handles and their
// check macros, the row-major strided-batched GEMM every matrix product goes through, the
// accumulation type of each dtype, and warp/block reductions.
//
// CUBLAS_CHECK / CUDNN_CHECK throw mox::Error like CUDA_CHECK (common.cuh): the call, the
// library's message, file and line. Both handles are created lazily, once per process, on
// cuda::stream(); like that stream they assume one host thread drives the backend.
// TF32: off unless the environment sets MOX_ALLOW_TF32=1, so f32 products and convolutions
// match the CPU reference within 1e-3 (PyTorch's default for matmul; it allows TF32 in cuDNN,
// mox does not). 16-bit floats always use tensor cores with f32 accumulation.
#pragma once
#include <cublas_v2.h>
#include <cudnn.h>

#include "tensor/cuda/common.cuh"

#define CUBLAS_CHECK(call)                                                                      \
  do {                                                                                          \
    const cublasStatus_t mox_s_ = (call);                                                       \
    if (mox_s_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::mox::cuda::fail("cuBLAS", #call, cublasGetStatusString(mox_s_), __FILE__, __LINE__);    \
  } while (0)

#define CUDNN_CHECK(call)                                                                       \
  do {                                                                                          \
    const cudnnStatus_t mox_s_ = (call);                                                        \
    if (mox_s_ != CUDNN_STATUS_SUCCESS)                                                         \
      ::mox::cuda::fail("cuDNN", #call, cudnnGetErrorString(mox_s_), __FILE__, __LINE__);       \
  } while (0)

namespace mox::cuda {

cublasHandle_t cublas();   // gemm.cu
cudnnHandle_t cudnn();     // conv.cu
// MOX_ALLOW_TF32=1 in the environment (read once): f32 GEMMs and convolutions may round
// their inputs to TF32 on tensor cores (≈1e-3 relative error, several times faster).
bool allow_tf32();         // gemm.cu

// Row-major C = alpha·op(A)·op(B) + beta·C for `batch` matrices, as cblas_?gemm(CblasRowMajor)
// would compute each: op(A) is (M, K), op(B) is (K, N), C is (M, N); lda/ldb/ldc are row
// strides, stride_* the element distance between consecutive matrices (0 = the same matrix
// for every batch entry; never for C). K > 0. f32 (tf32 per allow_tf32), f64, and f16/bf16
// with f32 accumulation. Enqueued on cuda::stream().
void gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
          const void* a, int64_t lda, int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b,
          double beta, void* c, int64_t ldc, int64_t stride_c, int64_t batch);

// Kernels accumulate in acc_t (common.cuh): double for f64, float for f32 and the 16-bit floats.

__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }

template <typename A> __device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename A> __device__ __forceinline__ A warp_max(A v) {
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The sum of v over the block, returned to every thread. blockDim.x a multiple of 32 (≤ 1024);
// every thread of the block must call it (it synchronises the block).
template <typename A> __device__ A block_sum(A v) {
  __shared__ A partial[32];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();   // a previous call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? partial[lane] : A(0));
}

// Threads for a block that walks one row of C elements: a power of two in [32, 512].
inline int row_threads(int64_t C) {
  int t = 32;
  while (t < C && t < 512) t *= 2;
  return t;
}

}  // namespace mox::cuda
