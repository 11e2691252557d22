// threads.cpp — see threads.h.
#include "tensor/cpu/threads.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <cstdlib>

#include "tensor/error.h"

namespace mox {

void prefer_passive_openmp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 0) != 0) return;
  execv("/proc/self/exe", argv);   // only returns on failure: carry on with the default policy
}

void set_num_threads(int n) {
  MOX_CHECK(n >= 1, "thread count ", n, " must be at least 1");
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace mox
