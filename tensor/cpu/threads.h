// threads.h — process-level settings of the CPU backend: OpenMP wait policy, OpenBLAS
// kernels, thread count.
//
// mox's loops and OpenBLAS share one OpenMP thread pool. GNU OpenMP's default wait policy
// keeps idle pool threads spinning; when the machine has other busy processes, every
// parallel region then waits for a descheduled spinner, and a 2-thread training step on a
// 2-core box slowed down 50× in our measurements (docs/DECISIONS.md, "OpenMP wait
// policy"). OpenBLAS picks its kernels from the CPU model, and a build older than the CPU
// (Debian 12's 0.3.21 on Sapphire Rapids) falls back to generic SSE3 "Prescott" kernels:
// 15 instead of 85 GFLOP/s per core on this project's machines (docs/DECISIONS.md,
// "OpenBLAS kernels"). Both libraries read their setting from the environment once, before
// main(), so the only way to change them is to start the program again with them set.
#pragma once

namespace mox {

// When OMP_WAIT_POLICY is unset, sets it to "passive"; when OPENBLAS_CORETYPE is unset and
// OpenBLAS fell back to a generic kernel on a CPU with AVX-512 (AVX2+FMA), sets it to
// "SkylakeX" ("Haswell"). If either changed, re-executes the running program with the same
// arguments (once; explicit settings are always respected). Call it first thing in main().
// Returns normally if the re-execution is not possible.
void configure_cpu_runtime(char** argv);

// The OpenBLAS kernel family in use ("SkylakeX", "Prescott", ...), for banners and benchmarks.
const char* blas_core_name();

// Threads for OpenMP loops and OpenBLAS (n ≥ 1).
void set_num_threads(int n);

}  // namespace mox
