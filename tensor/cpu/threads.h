// threads.h — process-level thread settings of the CPU backend.
//
// mox's loops and OpenBLAS share one OpenMP thread pool. GNU OpenMP's default wait policy
// keeps idle pool threads spinning; when the machine has other busy processes, every
// parallel region then waits for a descheduled spinner, and a 2-thread training step on a
// 2-core box slowed down 50× in our measurements (docs/DECISIONS.md, "OpenMP wait
// policy"). libgomp reads the policy from the environment once, before main(), so the only
// way to change it is to start the program again with it set.
#pragma once

namespace mox {

// When OMP_WAIT_POLICY is unset, sets it to "passive" and re-executes the running program
// with the same arguments (once; an explicit OMP_WAIT_POLICY, e.g. "active", is respected).
// Call it first thing in main(). Returns normally if the re-execution is not possible.
void prefer_passive_openmp_wait(char** argv);

// Threads for OpenMP loops and OpenBLAS (n ≥ 1).
void set_num_threads(int n);

}  // namespace mox
