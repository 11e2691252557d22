// gemm.cpp — CPU batched and grouped matrix multiply through cpu::gemm (tensor/cpu/blas.h:
// oneDNN or OpenBLAS, f32/f64); 16-bit floats are widened to f32 first (a reference path, not a
// fast one).
//
// grouped_gemm is a loop of one-matrix bmm calls, one per non-empty problem, in group order: the
// very GEMM (library, shape, flags, threads) that a Linear over that group's rows runs, so it
// is bit-identical to per-group linear(). Neither BLAS library has a grouped entry point; the
// gain on the CPU is the one graph node and the absent cat/index copies around it (moe/README.md).
//
// Each operand's last two dims must have a unit stride in one of them (the front-end
// guarantees it), which maps to a BLAS transpose flag and leading dimension with no copy.
#include "tensor/cpu/blas.h"
#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/ops.h"

namespace mox {

namespace {
struct GemmOperand {
  bool trans;
  int64_t ld;
};

// How BLAS sees the (rows, cols) matrix with the given strides.
GemmOperand blas_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  if (col_stride == 1 || cols == 1) return {false, std::max<int64_t>(row_stride, std::max<int64_t>(cols, 1))};
  return {true, std::max<int64_t>(col_stride, std::max<int64_t>(rows, 1))};
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
      // Small matrices: one single-threaded GEMM per thread; large ones: the library's threads;
      // tiny batches: one thread (a parallel region costs more than the work).
      const bool per_thread = B > 1 && M * N * K < (1 << 18) && B * M * N * K >= cpu::kParallelGrain * 8;
#pragma omp parallel for if (per_thread) schedule(static)
      for (int64_t i = 0; i < B; ++i)
        cpu::gemm(ga.trans, gb.trans, M, N, K, T(1), ap + i * a.stride(0), ga.ld, bp + i * b.stride(0), gb.ld, beta,
                  cp + i * M * N, N);
    }
  });
}

void CpuBackend::grouped_gemm(const std::vector<Tensor>& a, const std::vector<Tensor>& b, const std::vector<Tensor>& out,
                              bool accumulate) {
  for (size_t g = 0; g < out.size(); ++g) {
    if (out[g].numel() == 0) continue;   // M_g or N_g = 0
    bmm(raw::unsqueeze(a[g], 0), raw::unsqueeze(b[g], 0), raw::unsqueeze(out[g], 0), accumulate);
  }
}

}  // namespace mox
