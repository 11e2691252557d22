// blas.cpp — see blas.h.
#include "tensor/cpu/blas.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include <cstdlib>
#include <cstring>

#include "tensor/error.h"

namespace mox::cpu {

namespace {

enum class Choice { size, openblas, onednn };

Choice read_choice() {
  const char* v = std::getenv("MOX_CPU_GEMM");
  if (v == nullptr || *v == '\0') return Choice::size;
  if (std::strcmp(v, "openblas") == 0) return Choice::openblas;
  if (std::strcmp(v, "onednn") == 0) return Choice::onednn;
  MOX_FAIL("MOX_CPU_GEMM='", v, "' is not one of openblas, onednn (or unset: by size)");
}

Choice choice() {
  static const Choice c = read_choice();
  return c;
}

CBLAS_TRANSPOSE cblas_trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const Choice how = choice();
  if (how == Choice::onednn || (how == Choice::size && M * N * K >= kOnednnMinMacs)) {
    const dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, a, lda, b, ldb,
                                       beta, c, ldc);
    MOX_CHECK(s == dnnl_success, "oneDNN sgemm failed (status ", int(s), ") for M=", M, " N=", N, " K=", K,
              " lda=", lda, " ldb=", ldb, " ldc=", ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, cblas_trans(trans_a), cblas_trans(trans_b), M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, cblas_trans(trans_a), cblas_trans(trans_b), M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
}

const char* gemm_library_choice() {
  switch (choice()) {
    case Choice::onednn: return "oneDNN";
    case Choice::openblas: return "OpenBLAS";
    default: return "size";
  }
}

}  // namespace mox::cpu
