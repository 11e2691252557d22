// test_blas.cpp — cpu::gemm (tensor/cpu/blas.h), the CPU backend's one GEMM entry point,
// against a naive double-precision triple loop: both libraries behind it (OpenBLAS below
// kOnednnMinMacs multiply-adds, oneDNN from there on), every transpose combination, leading
// dimensions wider than the matrix, alpha and beta (accumulate into C; with beta 0, C starts
// as NaN and must not be read), f32 and f64, and M, N, K of 1. The matmul/conv/attention
// tests reach it through the ops; this pins the library switch itself, so a shape on either
// side of the threshold gives the same numbers (run without MOX_CPU_GEMM set, or only the
// forced library is covered).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "tensor/cpu/blas.h"
#include "tensor/random.h"

namespace {

struct Case {
  int64_t M, N, K;
  bool ta, tb;
  double alpha, beta;
};

// C = alpha·op(A)·op(B) + beta·C with lda = (cols of the stored A) + 3, ldb + 5, ldc = N + 2.
template <typename T>
void check(const Case& c) {
  const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
  const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
  const int64_t lda = a_cols + 3, ldb = b_cols + 5, ldc = c.N + 2;
  mox::Generator gen(uint64_t(c.M * 131 + c.N * 7 + c.K));
  std::vector<T> a(size_t(a_rows * lda)), b(size_t(b_rows * ldb)), out(size_t(c.M * ldc));
  for (T& v : a) v = T(gen.next_uniform() * 2 - 1);
  for (T& v : b) v = T(gen.next_uniform() * 2 - 1);
  for (T& v : out) v = T(gen.next_uniform() * 2 - 1);
  // beta = 0: C must not be read (BLAS semantics), so a NaN there must not leak through
  if (c.beta == 0) std::fill(out.begin(), out.end(), std::numeric_limits<T>::quiet_NaN());
  const std::vector<T> before = out;
  mox::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), a.data(), lda, b.data(), ldb, T(c.beta), out.data(), ldc);
  const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-12;
  int64_t bad = 0;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double ref = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double av = c.ta ? a[size_t(k * lda + i)] : a[size_t(i * lda + k)];
        const double bv = c.tb ? b[size_t(j * ldb + k)] : b[size_t(k * ldb + j)];
        ref += av * bv;
      }
      if (c.beta != 0) ref = c.alpha * ref + c.beta * double(before[size_t(i * ldc + j)]);
      else ref = c.alpha * ref;
      const double got = out[size_t(i * ldc + j)];
      if (!(std::abs(got - ref) <= tol * (1 + std::sqrt(double(c.K)) + std::abs(ref)))) ++bad;   // NaN counts
    }
  EXPECT_EQ(bad, 0) << "M=" << c.M << " N=" << c.N << " K=" << c.K << " ta=" << c.ta << " tb=" << c.tb
                    << " alpha=" << c.alpha << " beta=" << c.beta;
  // the padding between rows of C is never written
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j)
      ASSERT_EQ(std::memcmp(&out[size_t(i * ldc + j)], &before[size_t(i * ldc + j)], sizeof(T)), 0);
}

std::vector<Case> cases() {
  std::vector<Case> out;
  // small (OpenBLAS), just below and above the threshold (2^21 = 128·128·128), large (oneDNN)
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 37, 5}, {9, 1, 13}, {6, 75, 1}, {16, 150, 100},
                               {128, 128, 127}, {128, 128, 128}, {130, 129, 131}, {257, 96, 300}};
  for (auto& s : shapes)
    for (int t = 0; t < 4; ++t)
      out.push_back({s[0], s[1], s[2], bool(t & 1), bool(t & 2), t == 3 ? 0.5 : 1.0, t >= 2 ? 1.0 : 0.0});
  return out;
}

TEST(CpuGemm, F32AgreesWithNaiveLoopOnBothSidesOfTheLibrarySwitch) {
  static_assert(mox::cpu::kOnednnMinMacs == 128 * 128 * 128, "the shapes above straddle the threshold");
  for (const Case& c : cases()) check<float>(c);
}

TEST(CpuGemm, F64AgreesWithNaiveLoop) {
  for (const Case& c : cases()) check<double>(c);
}

}  // namespace
