// threads.cpp — see threads.h.
#include "tensor/cpu/threads.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tensor/cpu/blas.h"
#include "tensor/error.h"

namespace mox {

namespace {

// The OpenBLAS core to ask for, or null to leave OpenBLAS's own choice. Only a fallback to
// a generic x86 kernel on a CPU that has the vector units of a known family is overridden.
const char* openblas_core_override() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return nullptr;
#if defined(__x86_64__)
  const char* chosen = openblas_get_corename();
  const bool generic = chosen && (std::strcmp(chosen, "Prescott") == 0 || std::strcmp(chosen, "Core2") == 0 ||
                                  std::strcmp(chosen, "Nehalem") == 0 || std::strcmp(chosen, "Sandybridge") == 0);
  if (!generic) return nullptr;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

}  // namespace

void configure_cpu_runtime(char** argv) {
  try {
    cpu::gemm_library_choice();   // a bad MOX_CPU_GEMM is a usage error now, not inside a kernel
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(2);
  }
  bool changed = false;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) changed |= setenv("OMP_WAIT_POLICY", "passive", 0) == 0;
  if (const char* core = openblas_core_override()) changed |= setenv("OPENBLAS_CORETYPE", core, 0) == 0;
  if (changed) execv("/proc/self/exe", argv);   // only returns on failure: carry on as we are
}

const char* blas_core_name() { return openblas_get_corename(); }

void set_num_threads(int n) {
  MOX_CHECK(n >= 1, "thread count ", n, " must be at least 1");
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace mox
