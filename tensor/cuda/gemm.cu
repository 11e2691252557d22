// gemm.cu — batched matrix multiply on the GPU through cuBLAS (strided-batched GemmEx), and the
// process's cuBLAS handle.
//
// bmm: out(B, M, N) = a(B, M, K) @ b(B, K, N). Each operand's last two dims have a unit stride
// in one of them (the front-end guarantees it), which becomes a cuBLAS transpose flag and a
// leading dimension, so transposed views need no copy; batch strides pass straight through
// (0 = one matrix broadcast over the batch). cuBLAS is column-major: the row-major product
// C = A·B is computed as Cᵀ = Bᵀ·Aᵀ, which swaps the operands and M/N and keeps each
// transpose flag (a row-major matrix is its transpose in column-major order).
// Precision: f32 with CUBLAS_COMPUTE_32F (no TF32 unless MOX_ALLOW_TF32=1), f64, f16/bf16 on
// tensor cores with f32 accumulation and no reduced-precision split-K reductions.
// What it is not: cuBLASLt epilogues (bias/GELU fusion), grouped GEMM for dropless MoE.
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/libs.cuh"

namespace mox::cuda {

cublasHandle_t cublas() {
  static cublasHandle_t handle = [] {
    cublasHandle_t created;
    CUBLAS_CHECK(cublasCreate(&created));
    CUBLAS_CHECK(cublasSetStream(created, stream()));
    // Tensor cores for 16-bit inputs still accumulate and reduce in f32.
    CUBLAS_CHECK(cublasSetMathMode(
        created, cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    return created;
  }();
  return handle;
}

bool allow_tf32() {
  static const bool allowed = [] {
    const char* v = std::getenv("MOX_ALLOW_TF32");
    return v && std::strcmp(v, "1") == 0;
  }();
  return allowed;
}

namespace {
int as_int(int64_t v, const char* what) {
  MOX_CHECK(v >= 0 && v <= INT_MAX, "CUDA matmul: ", what, "=", v,
            " exceeds cuBLAS's 32-bit limit; split the product into smaller matrices");
  return int(v);
}
// cuBLAS has run batched GEMMs as one grid with the batch on a 16-bit grid dimension;
// larger batches are issued in slices.
constexpr int64_t kMaxBatch = 65535;
}  // namespace

void gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
          const void* a, int64_t lda, int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b,
          double beta, void* c, int64_t ldc, int64_t stride_c, int64_t batch) {
  if (M == 0 || N == 0 || batch == 0) return;
  MOX_CHECK(K > 0, "cuda::gemm: K must be positive (the caller handles empty products)");
  cudaDataType_t type;
  cublasComputeType_t compute;
  const float alpha_f = float(alpha), beta_f = float(beta);
  const void* alpha_p = &alpha_f;
  const void* beta_p = &beta_f;
  switch (dtype) {
    case DType::f32:
      type = CUDA_R_32F;
      compute = allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      break;
    case DType::f64:
      type = CUDA_R_64F;
      compute = CUBLAS_COMPUTE_64F;
      alpha_p = &alpha;
      beta_p = &beta;
      break;
    case DType::f16: type = CUDA_R_16F; compute = CUBLAS_COMPUTE_32F; break;
    case DType::bf16: type = CUDA_R_16BF; compute = CUBLAS_COMPUTE_32F; break;
    default: MOX_FAIL("matmul on CUDA needs a floating dtype (f32, f64, f16, bf16), got ", dtype);
  }
  const int m = as_int(M, "M"), n = as_int(N, "N"), k = as_int(K, "K");
  const int ia = as_int(lda, "lda"), ib = as_int(ldb, "ldb"), ic = as_int(ldc, "ldc");
  const int64_t es = int64_t(dtype_size(dtype));
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  for (int64_t first = 0; first < batch; first += kMaxBatch) {
    const int64_t count = batch - first < kMaxBatch ? batch - first : kMaxBatch;
    const char* ap = static_cast<const char*>(a) + first * stride_a * es;
    const char* bp = static_cast<const char*>(b) + first * stride_b * es;
    char* cp = static_cast<char*>(c) + first * stride_c * es;
    // Cᵀ(N, M) = op(B)ᵀ(N, K) · op(A)ᵀ(K, M) in cuBLAS's column-major terms.
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas(), op_b, op_a, n, m, k, alpha_p, bp, type, ib, stride_b, ap,
                                            type, ia, stride_a, beta_p, cp, type, ic, stride_c, int(count),
                                            compute, CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace mox::cuda

namespace mox {

namespace {
struct Layout {
  bool trans;
  int64_t ld;
};
// How a row-major GEMM sees the (rows, cols) matrix with these strides (as the CPU's
// blas_layout): unit column stride → as stored; otherwise unit row stride → transposed.
Layout layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  if (col_stride == 1 || cols == 1) return {false, std::max<int64_t>(row_stride, std::max<int64_t>(cols, 1))};
  return {true, std::max<int64_t>(col_stride, std::max<int64_t>(rows, 1))};
}
}  // namespace

void CudaBackend::bmm(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
  const int64_t B = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  if (B == 0 || M == 0 || N == 0) return;
  if (K == 0) {   // an empty sum: zeros, or out unchanged when accumulating
    if (!accumulate) CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, out.nbytes(), cuda::stream()));
    return;
  }
  const Layout la = layout(M, K, a.stride(1), a.stride(2));
  const Layout lb = layout(K, N, b.stride(1), b.stride(2));
  cuda::gemm(a.dtype(), la.trans, lb.trans, M, N, K, 1.0, a.raw_data(), la.ld, a.stride(0), b.raw_data(), lb.ld,
             b.stride(0), accumulate ? 1.0 : 0.0, out.raw_data(), N, M * N, B);
}

}  // namespace mox
