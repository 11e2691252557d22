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
// grouped_gemm: G products of different shapes (an MoE layer's experts over their row groups)
// in one cublasGemmGroupedBatchedEx call (cublasDgemmGroupedBatched for f64), each problem a
// cuBLAS group of size 1 with the same column-major swap; the pointer arrays go to the device
// through stream-ordered scratch, the shapes and scalars stay on the host. A problem whose
// matrices do not start and step on 16-byte boundaries (a row group of odd width at an odd
// row) runs on its own through the strided API instead: cuBLAS cannot check pointers it
// reads from device memory. Same precision policy
// as bmm (TF32 per MOX_ALLOW_TF32; 16-bit with f32 compute).
// What it is not: cuBLASLt epilogues (bias/GELU fusion); a device-side grouped GEMM whose group
// sizes never visit the host (the MoE gate's counts are host integers already).
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

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
// Whether matrices at these pointers with these leading dimensions (elements) start and
// step on 16-byte boundaries, as tensor-core kernels read them. Row groups of an MoE layer
// start at arbitrary rows, so their pointers need not be.
bool tensor_core_aligned(std::initializer_list<const void*> ptrs, std::initializer_list<int64_t> lds, DType dtype) {
  const int64_t es = int64_t(dtype_size(dtype));
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  for (int64_t ld : lds)
    if ((ld * es) % 16 != 0) return false;
  return true;
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

void CudaBackend::grouped_gemm(const std::vector<Tensor>& a, const std::vector<Tensor>& b, const std::vector<Tensor>& out,
                               bool accumulate) {
  if (out.empty()) return;
  const DType dtype = out[0].dtype();
  cudaDataType_t type = CUDA_R_64F;   // f64 goes through cublasDgemmGroupedBatched
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  switch (dtype) {
    case DType::f64: break;
    case DType::f32:
      type = CUDA_R_32F;
      if (cuda::allow_tf32()) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
      break;
    case DType::f16: type = CUDA_R_16F; break;
    case DType::bf16: type = CUDA_R_16BF; break;
    default: MOX_FAIL("grouped matmul on CUDA needs a floating dtype (f32, f64, f16, bf16), got ", dtype);
  }
  // Per problem, in cuBLAS's column-major terms (as cuda::gemm): Cᵀ(N, M) = op(B)ᵀ · op(A)ᵀ,
  // so the first operand is b[g] and the second a[g].
  std::vector<cublasOperation_t> op_first, op_second;
  std::vector<int> m, n, k, ld_first, ld_second, ldc;
  std::vector<const void*> first, second, c;   // matrix pointers
  for (size_t g = 0; g < out.size(); ++g) {
    const int64_t M = out[g].size(0), N = out[g].size(1), K = a[g].size(1);
    if (M == 0 || N == 0) continue;
    if (K == 0) {   // an empty sum: zeros, or out[g] unchanged when accumulating
      if (!accumulate) CUDA_CHECK(cudaMemsetAsync(out[g].raw_data(), 0, out[g].nbytes(), cuda::stream()));
      continue;
    }
    const Layout la = layout(M, K, a[g].stride(0), a[g].stride(1));
    const Layout lb = layout(K, N, b[g].stride(0), b[g].stride(1));
    const int64_t ld_out = std::max<int64_t>(out[g].stride(0), N);
    if (!tensor_core_aligned({a[g].raw_data(), b[g].raw_data(), out[g].raw_data()}, {la.ld, lb.ld, ld_out}, dtype)) {
      // cuBLAS cannot check the alignment of pointers it reads from device memory: this problem
      // runs on its own, through the strided API, which checks and adapts.
      cuda::gemm(dtype, la.trans, lb.trans, M, N, K, 1.0, a[g].raw_data(), la.ld, 0, b[g].raw_data(), lb.ld, 0,
                 accumulate ? 1.0 : 0.0, out[g].raw_data(), ld_out, 0, 1);
      continue;
    }
    op_first.push_back(lb.trans ? CUBLAS_OP_T : CUBLAS_OP_N);
    op_second.push_back(la.trans ? CUBLAS_OP_T : CUBLAS_OP_N);
    m.push_back(cuda::as_int(N, "N"));
    n.push_back(cuda::as_int(M, "M"));
    k.push_back(cuda::as_int(K, "K"));
    ld_first.push_back(cuda::as_int(lb.ld, "ldb"));
    ld_second.push_back(cuda::as_int(la.ld, "lda"));
    ldc.push_back(cuda::as_int(ld_out, "ldc"));
    first.push_back(b[g].raw_data());
    second.push_back(a[g].raw_data());
    c.push_back(out[g].raw_data());
  }
  const int P = int(c.size());
  if (P == 0) return;
  // The matrix pointer arrays must be in device memory; the copy reads the host vector before
  // cudaMemcpyAsync returns (pageable source), and the scratch is freed in stream order.
  std::vector<const void*> ptrs = first;   // [first operands | second operands | outputs]
  ptrs.insert(ptrs.end(), second.begin(), second.end());
  ptrs.insert(ptrs.end(), c.begin(), c.end());
  cuda::Scratch dev(ptrs.size() * sizeof(void*));
  CUDA_CHECK(cudaMemcpyAsync(dev.p, ptrs.data(), ptrs.size() * sizeof(void*), cudaMemcpyHostToDevice, cuda::stream()));
  const void* const* d_first = dev.as<const void*>();
  const void* const* d_second = d_first + P;
  void* const* d_c = dev.as<void*>() + 2 * P;
  const std::vector<int> group_size(size_t(P), 1);
  if (dtype == DType::f64) {
    const std::vector<double> alpha(size_t(P), 1.0), beta(size_t(P), accumulate ? 1.0 : 0.0);
    CUBLAS_CHECK(cublasDgemmGroupedBatched(
        cuda::cublas(), op_first.data(), op_second.data(), m.data(), n.data(), k.data(), alpha.data(),
        reinterpret_cast<const double* const*>(d_first), ld_first.data(),
        reinterpret_cast<const double* const*>(d_second), ld_second.data(), beta.data(),
        reinterpret_cast<double* const*>(d_c), ldc.data(), P, group_size.data()));
    return;
  }
  const std::vector<float> alpha(size_t(P), 1.0f), beta(size_t(P), accumulate ? 1.0f : 0.0f);   // f32 scale type
  CUBLAS_CHECK(cublasGemmGroupedBatchedEx(cuda::cublas(), op_first.data(), op_second.data(), m.data(), n.data(),
                                          k.data(), alpha.data(), d_first, type, ld_first.data(), d_second, type,
                                          ld_second.data(), beta.data(), d_c, type, ldc.data(), P, group_size.data(),
                                          compute));
}

}  // namespace mox
