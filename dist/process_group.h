// process_group.h — ProcessGroup: the collectives of distributed training over a group of ranks.
//
// A ProcessGroup is an ordered set of processes ("ranks") that call the same collectives in
// the same order. The public methods validate their tensors (contiguous, shapes agreeing with
// the split sizes, dtype reducible) and call transport primitives on raw buffers: for CPU
// tensors the group's backend — MPI (dist/mpi_group.cpp), handling f16/bf16 reductions by
// widening to f32 — or the single-process group used when a program runs without mpirun
// (dist/world.cpp), where every collective is a copy; for CUDA tensors the group's
// CudaTransport (NCCL, dist/transport.h), created by the group's first CUDA collective.
// Every rank must pass tensors on the same kind of device. Tensors are split and
// concatenated along dim 0 ("rows").
//
// Every collective has a deadline (dist::timeout_seconds(), default 600 s, MOX_DIST_TIMEOUT):
// a peer that died or called something else makes it throw mox::Error naming the collective,
// the group and this rank, instead of hanging.
//
// What it is not: no autograd (dist/functional.h wraps all_to_all for the MoE layer), no
// transport of its own (DESIGN: existing engines only), no asynchronous handles yet.
// barrier() and exchange_counts() always go over MPI (no tensor says otherwise); a CUDA
// collective has completed on the GPU when it returns, so an MPI barrier after it suffices.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mox::dist {

class CudaTransport;

enum class ReduceOp { sum, avg, max };
const char* to_string(ReduceOp op);

class ProcessGroup {
 public:
  virtual ~ProcessGroup();

  int rank() const { return rank_; }                 // this process's index in the group
  int size() const { return int(world_ranks_.size()); }
  const std::string& name() const { return name_; }  // "world", "ep_size_2/expert_parallel_0", ...
  // The world rank of each member, in group-rank order.
  const std::vector<int>& world_ranks() const { return world_ranks_; }

  // In place on every rank: t ← op over ranks of t. avg needs a floating dtype.
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::sum);
  // In place: every rank's t ← root's t (same shape and dtype everywhere).
  void broadcast(const Tensor& t, int root);
  // (n, ...) on every rank → (size·n, ...), rank r's rows at [r·n, (r+1)·n).
  Tensor all_gather(const Tensor& t);
  // (size·n, ...) on every rank → (n, ...): rank r gets op over ranks of rows [r·n, (r+1)·n).
  Tensor reduce_scatter(const Tensor& t, ReduceOp op = ReduceOp::sum);
  // Rows [Σ_{q<r} send_rows[q], +send_rows[r]) of t go to rank r; the result stacks the rows
  // received from ranks 0, 1, ... (recv_rows[q] from rank q). Uneven splits, empty parts and
  // t with zero rows are fine; recv_rows must equal what the peers send (exchange_counts).
  Tensor all_to_all(const Tensor& t, const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows);
  // all_to_all of counts: send holds size()·k values, k for each rank; the result holds the
  // k values each rank sent to this one, in rank order.
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send);
  void barrier();

  // Collective over this group: every member calls it; members with the same color ≥ 0
  // form a new group, ordered by (key, rank). color < 0: not a member, returns null.
  std::shared_ptr<ProcessGroup> split(int color, int key, const std::string& name);
  // Collective over this group: the listed members (group ranks) form a new group, ordered
  // as listed; the others get null. Every member must pass the same list.
  std::shared_ptr<ProcessGroup> new_group(const std::vector<int>& ranks, const std::string& name);

  // "all_reduce on group 'world' (rank 1 of 2)": the prefix of every error (the transports'
  // too).
  std::string where(const char* op) const;

 protected:
  // (Out of line, as the destructor: CudaTransport is incomplete here.)
  ProcessGroup(std::string name, int rank, std::vector<int> world_ranks);

  // Transport primitives on host buffers (the CUDA ones are CudaTransport's). Byte counts
  // and element counts are per rank. Each one blocks until done or throws on timeout.
  virtual void allreduce_raw(void* buf, int64_t count, DType dtype, ReduceOp op) = 0;   // sum or max
  virtual void broadcast_raw(void* buf, int64_t bytes, int root) = 0;
  virtual void allgather_raw(const void* send, void* recv, int64_t bytes_per_rank) = 0;
  virtual void reduce_scatter_raw(const void* send, void* recv, int64_t count_per_rank, DType dtype, ReduceOp op) = 0;
  virtual void alltoallv_raw(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                             const std::vector<int64_t>& recv_bytes) = 0;
  virtual void barrier_raw() = 0;
  virtual std::shared_ptr<ProcessGroup> split_raw(int color, int key, const std::string& name) = 0;

 private:
  // The transport for CUDA tensors on `device`, made by the first call (collective: every
  // member makes it in the same collective). Later calls on another device are refused,
  // naming both devices. `where`/`op` name the collective in errors.
  CudaTransport& cuda_transport(const std::string& where, const char* op, Device device);

  std::string name_;
  int rank_;
  std::vector<int> world_ranks_;
  std::unique_ptr<CudaTransport> cuda_;
  Device cuda_device_;
};

}  // namespace mox::dist
