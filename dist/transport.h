// transport.h — the device transport of a ProcessGroup: its collectives on CUDA buffers.
//
// ProcessGroup's public collectives validate their tensor, then move it with MPI when it is
// on the CPU and with the group's CudaTransport when it is on a CUDA device (DESIGN: "NCCL
// moves CUDA tensors, bootstrapped over MPI"). The transport is created lazily by the first
// CUDA collective of a group of two or more ranks; its creation is collective over the group
// (every member reaches it in that same call) and uses the group's own CPU collectives.
//
// The NCCL implementation (dist/nccl_transport.cu) is compiled by nvcc when the build finds
// both the CUDA toolkit and nccl.h, into the CUDA backend's library (libmox_cuda.so, loaded on
// first use: tensor/cuda_library.h); this code enters it through two of the library's symbols,
// so a CPU-only build links, and a CUDA collective in a build without NCCL is an error saying so.
//
// NCCL's collectives run on the CUDA backend's stream (cuda::stream()), so they are ordered
// with the kernels that produced and will consume the tensors; each call returns when the
// collective has completed on the device, polling against dist::timeout_seconds() as the MPI
// backend does. On timeout (or an asynchronous NCCL error) the communicator is aborted and
// the call throws mox::Error naming the collective, the group and the rank; the transport
// then refuses further collectives.
//
// What it is not: no NCCL for CPU tensors, no streams of its own (no overlap yet), one GPU
// per process (two ranks of a group on the same GPU are refused at creation).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/process_group.h"

namespace mox::dist {

// Collectives on device buffers of this process's GPU: ProcessGroup's raw primitives, with
// the same arguments (counts and bytes per rank). Unlike the MPI primitives they also take
// ReduceOp::avg (NCCL's ncclAvg) and reduce f16/bf16 natively (NCCL sums them in their own
// precision, as PyTorch's NCCL backend does; the CPU path widens to f32). Each call blocks
// until the collective completed on the GPU, or throws on timeout.
class CudaTransport {
 public:
  virtual ~CudaTransport() = default;
  virtual const char* name() const = 0;   // "nccl"

  virtual void allreduce_raw(void* buf, int64_t count, DType dtype, ReduceOp op) = 0;
  virtual void broadcast_raw(void* buf, int64_t bytes, int root) = 0;
  virtual void allgather_raw(const void* send, void* recv, int64_t bytes_per_rank) = 0;
  virtual void reduce_scatter_raw(const void* send, void* recv, int64_t count_per_rank, DType dtype, ReduceOp op) = 0;
  // Uneven splits: send_bytes[q] to rank q from offset Σ_{p<q} send_bytes[p]; likewise recv.
  virtual void alltoallv_raw(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                             const std::vector<int64_t>& recv_bytes) = 0;
  // Returns when every rank reached it and the GPU work queued before it has completed.
  virtual void barrier_raw() = 0;
};

// Why this process cannot create a CUDA transport, or "" when it can: mox built without the
// CUDA backend, built with CUDA but without NCCL, or no GPU visible.
std::string cuda_transport_unavailable();

// This process's GPU as "host/PCI bus id" (e.g. "gpu-node-3/0000:1B:00.0"), or "" when no
// NCCL transport can be made here. Ranks showing the same one cannot share a communicator.
std::string cuda_device_identity();

// Collective over `group`: makes its transport (NCCL: rank 0's unique id is broadcast over
// the group's MPI communicator, then every rank joins the communicator on its current GPU).
// Every rank first shares whether it can; when any cannot, every rank throws naming that
// rank and why. `op` names the collective that asked for it in error messages.
// ProcessGroup calls it lazily; it is public for benchmarks and tests (a one-rank group's
// collectives never reach a transport, but a transport over one rank works).
std::unique_ptr<CudaTransport> make_cuda_transport(ProcessGroup& group, const char* op = "make_cuda_transport");

}  // namespace mox::dist
