// mpi_group.h — the MPI backend of ProcessGroup (CPU tensors), and the one-rank group.
//
// MpiGroup wraps an MPI communicator. Every collective is MPI's non-blocking form
// (MPI_Iallreduce, MPI_Ialltoallv, ...) completed by polling MPI_Test until done or until the
// deadline of dist::timeout_seconds(), so a dead or diverging peer is an error, not a hang.
// The waits back off (yield, then short sleeps), so ranks oversubscribing a core do not
// steal it from the peer they wait for.
//
// SelfGroup is a group of one process that never touches MPI: what a program run without
// mpirun gets as its world (and what splitting it gives).
//
// What it is not: no CUDA tensors (those go to the group's NCCL transport, dist/transport.h),
// no MPI outside dist/.
#pragma once
#include <memory>
#include <string>

#include "dist/process_group.h"

namespace mox::dist {

// The world group over MPI_COMM_WORLD; MPI must have been initialised (world.cpp does).
std::shared_ptr<ProcessGroup> make_mpi_world();
// A one-rank group named `name`.
std::shared_ptr<ProcessGroup> make_self_group(const std::string& name);

}  // namespace mox::dist
