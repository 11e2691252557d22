// process_group.cpp — ProcessGroup's validation layer over the backend's raw primitives (CPU
// tensors) or its CUDA transport (CUDA tensors), and the transport's factory.
#include "dist/process_group.h"

#include <algorithm>

#include "dist/transport.h"
#include "tensor/backend.h"
#include "tensor/cuda_library.h"
#include "tensor/ops.h"

// The NCCL transport (dist/nccl_transport.cu) is part of the CUDA backend library when the
// build found NCCL, entered through two of its symbols (tensor/cuda_library.h):
// create: collective over `group` (the host-side agreement below has already passed).
// identity: writes "host/PCI bus id" of the current GPU (NUL-terminated); returns 0, or
// non-zero when there is no GPU.
using NcclTransportCreate = mox::dist::CudaTransport* (*)(mox::dist::ProcessGroup* group, const char* op);
using NcclDeviceIdentity = int (*)(char* out, int capacity);

namespace mox::dist {

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
  }
  return "?";
}

ProcessGroup::ProcessGroup(std::string name, int rank, std::vector<int> world_ranks)
    : name_(std::move(name)), rank_(rank), world_ranks_(std::move(world_ranks)) {}

ProcessGroup::~ProcessGroup() = default;

std::string ProcessGroup::where(const char* op) const {
  return str(op, " on group '", name_, "' (rank ", rank_, " of ", size(), ")");
}

// ---- the CUDA transport's factory ----

std::string cuda_transport_unavailable() {
  if (const std::string why = cuda_unavailable_reason(); !why.empty()) return why;
  if (!cuda_library::symbol("mox_nccl_transport_create"))
    return "NCCL not found at build time: this mox has the CUDA backend but no NCCL transport (install NCCL so "
           "that nccl.h is in $CUDA_HOME/include or /usr/include, e.g. Debian's libnccl-dev, and rebuild)";
  return "";
}

std::string cuda_device_identity() {
  if (!cuda_transport_unavailable().empty()) return "";
  const auto identity = reinterpret_cast<NcclDeviceIdentity>(cuda_library::symbol("mox_nccl_device_identity"));
  char id[256] = {};
  return identity && identity(id, int(sizeof id)) == 0 ? std::string(id) : std::string();
}

std::unique_ptr<CudaTransport> make_cuda_transport(ProcessGroup& group, const char* op) {
  const std::string w = group.where(op);
  // Every rank says whether it can before any rank starts NCCL's bootstrap, so a rank that
  // cannot makes every rank throw together instead of leaving its peers in the bootstrap.
  const std::string reason = cuda_transport_unavailable();
  const Tensor ok = group.all_gather(from_vector<int64_t>({reason.empty() ? 1 : 0}, {1}));
  const std::vector<int64_t> oks = ok.to_vector<int64_t>();
  MOX_CHECK(reason.empty(), w, ": cannot create the CUDA (NCCL) transport: ", reason);
  const auto first_bad = std::find(oks.begin(), oks.end(), int64_t(0));
  MOX_CHECK(first_bad == oks.end(), w, ": cannot create the CUDA (NCCL) transport: rank ",
            first_bad - oks.begin(), " of the group cannot (see its error)");
  const auto create = reinterpret_cast<NcclTransportCreate>(cuda_library::symbol("mox_nccl_transport_create"));
  return std::unique_ptr<CudaTransport>(create(&group, op));
}

CudaTransport& ProcessGroup::cuda_transport(const std::string& where, const char* op, Device device) {
  if (!cuda_) {
    cuda_ = make_cuda_transport(*this, op);
    cuda_device_ = device;
  }
  MOX_CHECK(device == cuda_device_, where, ": the tensor is on ", device, " but this group's ", cuda_->name(),
            " communicator is on ", cuda_device_, " (one GPU per process: every CUDA collective of a group uses the "
            "device of its first)");
  return *cuda_;
}

namespace {

// A tensor a collective can move: defined, contiguous; on the CPU (MPI) or a CUDA device
// (the group's CUDA transport).
void check_buffer(const Tensor& t, const std::string& where) {
  MOX_CHECK(t.defined(), where, ": the tensor is undefined");
  MOX_CHECK(t.is_contiguous(), where, ": the tensor ", describe(t),
            " must be contiguous (collectives move whole buffers); call .contiguous() first");
}

// Elements in one row of t, counting a 0-row tensor's row from its trailing dims.
int64_t row_numel(const Tensor& t) {
  int64_t n = 1;
  for (int d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}

Shape with_rows(const Tensor& t, int64_t rows) {
  Shape s = t.shape();
  s[0] = rows;
  return s;
}

}  // namespace

void ProcessGroup::all_reduce(const Tensor& t, ReduceOp op) {
  const std::string w = where("all_reduce");
  check_buffer(t, w);
  MOX_CHECK(op != ReduceOp::avg || is_floating(t.dtype()), w, ": avg needs a floating tensor, got ", describe(t));
  MOX_CHECK(t.dtype() != DType::boolean, w, ": cannot reduce a bool tensor ", describe(t));
  if (t.numel() == 0) return;
  if (t.device().is_cuda()) {   // NCCL: f16/bf16 natively, avg as ncclAvg
    if (size() > 1) cuda_transport(w, "all_reduce", t.device()).allreduce_raw(t.raw_data(), t.numel(), t.dtype(), op);
    return;
  }
  if (t.dtype() == DType::f16 || t.dtype() == DType::bf16) {   // reduce in f32, round once
    Tensor wide = raw::to_dtype(t, DType::f32);
    all_reduce(wide, op);
    raw::copy_(t, raw::to_dtype(wide, t.dtype()));
    return;
  }
  if (size() > 1) allreduce_raw(t.raw_data(), t.numel(), t.dtype(), op == ReduceOp::max ? ReduceOp::max : ReduceOp::sum);
  if (op == ReduceOp::avg && size() > 1) raw::mul_(t, 1.0 / size());
}

void ProcessGroup::broadcast(const Tensor& t, int root) {
  const std::string w = where("broadcast");
  check_buffer(t, w);
  MOX_CHECK(root >= 0 && root < size(), w, ": root ", root, " is not a rank of the group (0..", size() - 1, ")");
  if (size() == 1 || t.numel() == 0) return;
  if (t.device().is_cuda())
    cuda_transport(w, "broadcast", t.device()).broadcast_raw(t.raw_data(), int64_t(t.nbytes()), root);
  else
    broadcast_raw(t.raw_data(), int64_t(t.nbytes()), root);
}

Tensor ProcessGroup::all_gather(const Tensor& t) {
  const std::string w = where("all_gather");
  check_buffer(t, w);
  MOX_CHECK(t.dim() >= 1, w, ": needs at least one dimension to stack along, got ", describe(t));
  Tensor out = empty(with_rows(t, t.size(0) * size()), t.dtype(), t.device());
  if (size() == 1) raw::copy_(out, t);
  else if (out.numel() > 0 && t.device().is_cuda())
    cuda_transport(w, "all_gather", t.device()).allgather_raw(t.raw_data(), out.raw_data(), int64_t(t.nbytes()));
  else if (out.numel() > 0) allgather_raw(t.raw_data(), out.raw_data(), int64_t(t.nbytes()));
  return out;
}

Tensor ProcessGroup::reduce_scatter(const Tensor& t, ReduceOp op) {
  const std::string w = where("reduce_scatter");
  check_buffer(t, w);
  MOX_CHECK(t.dim() >= 1 && t.size(0) % size() == 0, w, ": the input ", describe(t),
            " must have a first dimension divisible by the group size ", size());
  MOX_CHECK(op != ReduceOp::avg || is_floating(t.dtype()), w, ": avg needs a floating tensor, got ", describe(t));
  MOX_CHECK(t.dtype() != DType::boolean, w, ": cannot reduce a bool tensor ", describe(t));
  if (t.device().is_cpu() && (t.dtype() == DType::f16 || t.dtype() == DType::bf16))
    return raw::to_dtype(reduce_scatter(raw::to_dtype(t, DType::f32), op), t.dtype());
  const int64_t rows = t.size(0) / size();
  Tensor out = empty(with_rows(t, rows), t.dtype(), t.device());
  if (size() > 1 && t.device().is_cuda()) {   // NCCL: f16/bf16 natively, avg as ncclAvg
    if (out.numel() > 0)
      cuda_transport(w, "reduce_scatter", t.device())
          .reduce_scatter_raw(t.raw_data(), out.raw_data(), out.numel(), t.dtype(), op);
    return out;
  }
  if (size() == 1) raw::copy_(out, t);
  else if (out.numel() > 0)
    reduce_scatter_raw(t.raw_data(), out.raw_data(), out.numel(), t.dtype(), op == ReduceOp::max ? ReduceOp::max : ReduceOp::sum);
  if (op == ReduceOp::avg && size() > 1) raw::mul_(out, 1.0 / size());
  return out;
}

Tensor ProcessGroup::all_to_all(const Tensor& t, const std::vector<int64_t>& send_rows,
                                const std::vector<int64_t>& recv_rows) {
  const std::string w = where("all_to_all");
  check_buffer(t, w);
  MOX_CHECK(t.dim() >= 1, w, ": needs at least one dimension to split, got ", describe(t));
  MOX_CHECK(int(send_rows.size()) == size() && int(recv_rows.size()) == size(), w, ": ", send_rows.size(),
            " send and ", recv_rows.size(), " receive split sizes given; the group has ", size(), " ranks");
  int64_t sent = 0, received = 0;
  for (int r = 0; r < size(); ++r) {
    MOX_CHECK(send_rows[size_t(r)] >= 0 && recv_rows[size_t(r)] >= 0, w, ": negative split size for rank ", r);
    sent += send_rows[size_t(r)];
    received += recv_rows[size_t(r)];
  }
  MOX_CHECK(sent == t.size(0), w, ": the send splits add up to ", sent, " rows but the input ", describe(t), " has ",
            t.size(0));
  Tensor out = empty(with_rows(t, received), t.dtype(), t.device());
  const int64_t row_bytes = row_numel(t) * int64_t(dtype_size(t.dtype()));
  if (size() == 1) {
    raw::copy_(out, t);
    return out;
  }
  std::vector<int64_t> send_bytes(send_rows.size()), recv_bytes(recv_rows.size());
  for (size_t r = 0; r < send_rows.size(); ++r) {
    send_bytes[r] = send_rows[r] * row_bytes;
    recv_bytes[r] = recv_rows[r] * row_bytes;
  }
  const void* send = t.numel() ? t.raw_data() : nullptr;
  void* recv = out.numel() ? out.raw_data() : nullptr;
  if (t.device().is_cuda())
    cuda_transport(w, "all_to_all", t.device()).alltoallv_raw(send, send_bytes, recv, recv_bytes);
  else
    alltoallv_raw(send, send_bytes, recv, recv_bytes);
  return out;
}

std::vector<int64_t> ProcessGroup::exchange_counts(const std::vector<int64_t>& send) {
  const std::string w = where("exchange_counts");
  MOX_CHECK(!send.empty() && send.size() % size_t(size()) == 0, w, ": ", send.size(),
            " counts given; need the same positive number for each of the ", size(), " ranks");
  const int64_t k = int64_t(send.size()) / size();
  Tensor t = from_vector(send, {int64_t(send.size())});
  Tensor out = all_to_all(t, std::vector<int64_t>(size_t(size()), k), std::vector<int64_t>(size_t(size()), k));
  return out.to_vector<int64_t>();
}

void ProcessGroup::barrier() {
  if (size() > 1) barrier_raw();
}

std::shared_ptr<ProcessGroup> ProcessGroup::split(int color, int key, const std::string& name) {
  return split_raw(color < 0 ? -1 : color, key, name);
}

std::shared_ptr<ProcessGroup> ProcessGroup::new_group(const std::vector<int>& ranks, const std::string& name) {
  const std::string w = where("new_group");
  MOX_CHECK(!ranks.empty(), w, " '", name, "': the rank list is empty");
  std::vector<bool> seen(size_t(size()), false);
  int key = -1;
  for (size_t i = 0; i < ranks.size(); ++i) {
    const int r = ranks[i];
    MOX_CHECK(r >= 0 && r < size(), w, " '", name, "': rank ", r, " is not in the group (0..", size() - 1, ")");
    MOX_CHECK(!seen[size_t(r)], w, " '", name, "': rank ", r, " is listed twice");
    seen[size_t(r)] = true;
    if (r == rank()) key = int(i);
  }
  return split(key >= 0 ? 0 : -1, key, name);
}

}  // namespace mox::dist
