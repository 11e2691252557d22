// world.h — the distributed runtime of one process: start-up, the world group, timeouts, exit.
//
// dist::init() is called once at the start of a program. Launched by mpirun (or scripts/moxrun)
// it starts MPI and the world group is MPI_COMM_WORLD; run plainly it makes a one-rank world
// without touching MPI, so every program and test works without mpirun. local_rank() is the
// rank among the processes on this node (the GPU index a rank should use).
//
// Ending: dist::finish(code) ends a program — code 0 finalises MPI; any other code, in a
// multi-rank world, aborts the whole job (MPI_Abort) so that peers waiting in a collective
// do not wait for their timeout. Examples call it from main's success and catch paths.
//
// What it is not: no launcher (scripts/moxrun, which also gives each rank one GPU through
// CUDA_VISIBLE_DEVICES); NCCL communicators are made per group on first use (dist/transport.h).
#pragma once
#include <memory>

#include "dist/process_group.h"

namespace mox::dist {

// Starts the runtime (idempotent) and returns the world group. The collective timeout is
// MOX_DIST_TIMEOUT seconds when set (must be a positive number), else 600.
ProcessGroup& init();
bool initialized();
// The world group; throws when init() was not called.
ProcessGroup& world();
std::shared_ptr<ProcessGroup> world_ptr();
// Rank among the processes of this node (0 in a one-rank world).
int local_rank();
// True when the process was started by mpirun (OpenMPI's environment is present).
bool launched_by_mpirun();

// Deadline of every collective, in seconds (> 0).
double timeout_seconds();
void set_timeout_seconds(double seconds);

// Ends the distributed runtime and returns `code` for main to return. In a multi-rank world
// a non-zero code aborts every rank of the job (and does not return).
int finish(int code);

}  // namespace mox::dist
