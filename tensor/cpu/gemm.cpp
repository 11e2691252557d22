// gemm.cpp — CPU batched matrix multiply through OpenBLAS (f32/f64); 16-bit floats are
// widened to f32 first (a reference path, not a fast one).
//
// Each operand's last two dims must have a unit stride in one of them (the front-end
// guarantees it), which maps to a BLAS transpose flag and leading dimension with no copy.
#include <cblas.h>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/ops.h"

namespace mox {

namespace {
struct GemmOperand {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
};

// How BLAS sees the (rows, cols) matrix with the given strides.
GemmOperand blas_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  if (col_stride == 1 || cols == 1) return {CblasNoTrans, std::max<int64_t>(row_stride, std::max<int64_t>(cols, 1))};
  return {CblasTrans, std::max<int64_t>(col_stride, std::max<int64_t>(rows, 1))};
}

template <typename T>
void gemm(const GemmOperand& ga, const GemmOperand& gb, int64_t M, int64_t N, int64_t K,
          const T* a, const T* b, T* c, T beta) {
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ga.trans, gb.trans, M, N, K, 1.0f, a, ga.ld, b, gb.ld, beta, c, N);
  else
    cblas_dgemm(CblasRowMajor, ga.trans, gb.trans, M, N, K, 1.0, a, ga.ld, b, gb.ld, beta, c, N);
}
}  // namespace

void CpuBackend::bmm(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) {
  const int64_t B = out.size(0), M = out.size(1), N = out.size(2), K = a.size(2);
  if (a.dtype() == DType::f16 || a.dtype() == DType::bf16) {
    Tensor af = raw::to_dtype(a, DType::f32), bf = raw::to_dtype(b, DType::f32);
    Tensor of = raw::to_dtype(out, DType::f32);
    bmm(af, bf, of, accumulate);
    copy(of, out);
    return;
  }
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) fill(out, 0.0);
    return;
  }
  const GemmOperand ga = blas_layout(M, K, a.stride(1), a.stride(2));
  const GemmOperand gb = blas_layout(K, N, b.stride(1), b.stride(2));
  cpu::dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const T* ap = static_cast<const T*>(a.raw_data());
      const T* bp = static_cast<const T*>(b.raw_data());
      T* cp = static_cast<T*>(out.raw_data());
      const T beta = accumulate ? T(1) : T(0);
      // Small matrices: one single-threaded GEMM per thread; large ones: OpenBLAS threads;
      // tiny batches: one thread (a parallel region costs more than the work).
      const bool per_thread = B > 1 && M * N * K < (1 << 18) && B * M * N * K >= cpu::kParallelGrain * 8;
#pragma omp parallel for if (per_thread) schedule(static)
      for (int64_t i = 0; i < B; ++i)
        gemm<T>(ga, gb, M, N, K, ap + i * a.stride(0), bp + i * b.stride(0), cp + i * M * N, beta);
    }
  });
}

}  // namespace mox
