// blas.h — the CPU backend's one GEMM entry point: C (M×N, leading dim ldc) =
// alpha·op(A)·op(B) + beta·C, row-major, f32 or f64. Every CPU matmul, convolution
// (im2col) and attention product goes through here.
//
// Which library runs it: f32 GEMMs of at least kOnednnMinMacs multiply-adds go to oneDNN's
// sgemm (JIT-generated AVX-512/AVX2 kernels), smaller ones and all f64 ones to OpenBLAS.
// Debian 12's OpenBLAS 0.3.21 reaches ~60 % of one core's FMA peak on AVX-512 (its SkylakeX
// sgemm kernel), oneDNN ~80 %; on small shapes (the CIFAR-10 convolutions, 64×84×84) OpenBLAS
// has less fixed cost. See docs/DECISIONS.md and bench/RESULTS.md. The environment variable
// MOX_CPU_GEMM=openblas|onednn forces one library for every f32 GEMM (to measure A/B).
//
// Both libraries use the process's OpenMP pool (set_num_threads); called inside a parallel
// region they run on the calling thread. What it is not: a GEMM of our own, or batched.
#pragma once
#include <cstdint>

namespace mox::cpu {

// Below this many multiply-adds (M·N·K) OpenBLAS's lower call overhead wins.
constexpr int64_t kOnednnMinMacs = int64_t(1) << 21;

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// "oneDNN", "OpenBLAS" or "size" (the default rule above): what MOX_CPU_GEMM selected.
const char* gemm_library_choice();

}  // namespace mox::cpu
