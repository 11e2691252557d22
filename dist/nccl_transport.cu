// nccl_transport.cu — the NCCL CudaTransport (dist/transport.h): ProcessGroup's collectives on
// CUDA tensors.
//
// Built by nvcc when the Makefile finds CUDA and nccl.h, into the CUDA backend's library
// (libmox_cuda.so); dist/process_group.cpp enters it through the two symbols at the end of
// this file.
//
// Bootstrap (collective over the group, over its MPI communicator): every rank shares its
// GPU's identity (host and PCI bus id) and two ranks on one GPU are refused with a message
// saying so (NCCL would only say "invalid usage"); group rank 0 makes the ncclUniqueId and
// broadcasts it with the group's CPU broadcast; every rank joins with ncclCommInitRankConfig
// on its current GPU. The communicator is non-blocking (NCCL ≥ 2.14), so neither joining nor
// the connection set-up of a first collective can hang the host without a deadline: a call
// that answers ncclInProgress is polled with ncclCommGetAsyncError.
//
// Collectives are enqueued on the CUDA backend's stream (cuda::stream()), then the host polls
// an event recorded after them (cudaEventQuery) together with ncclCommGetAsyncError, spinning
// briefly, then yielding, then sleeping 50 µs, like the MPI backend. Past
// dist::timeout_seconds() (or on an asynchronous NCCL error) the communicator is aborted
// (ncclCommAbort) and the call throws naming the collective, the group and the rank, in the
// MPI backend's words; the transport then refuses every later collective.
//
// all_to_all with uneven splits is ncclSend/ncclRecv per peer inside ncclGroupStart/End (this
// rank's own part is a device copy); barrier is an all_reduce of one element.
//
// What it is not: no stream of its own (no overlap with compute), no ncclCommSplit (each
// group bootstraps its own communicator over its own MPI communicator), one GPU per process.
#include <nccl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "dist/transport.h"
#include "dist/world.h"
#include "tensor/cuda/common.cuh"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "dist/nccl_transport.cu needs NCCL 2.14 or newer (non-blocking communicators, ncclAvg, ncclGetLastError)"
#endif

namespace mox::dist {

[[noreturn]] void throw_nccl_error(ncclResult_t rc, const char* call, const char* file, int line,
                                   const std::string& where, ncclComm_t comm) {
  const char* last = comm ? ncclGetLastError(comm) : ncclGetLastError(nullptr);
  MOX_FAIL(where, ": NCCL error in ", call, ": ", ncclGetErrorString(rc), last && *last ? str(" (", last, ")") : "",
           "  [", file, ":", line, "]");
}

}  // namespace mox::dist

// The family's check macro (DESIGN "Errors"): the call, NCCL's message, file and line; throws.
// `where` names the collective, the group and the rank, as MPI_CHECK's does.
#define NCCL_CHECK(call, where)                                                                       \
  do {                                                                                                \
    const ncclResult_t mox_nccl_rc_ = (call);                                                         \
    if (mox_nccl_rc_ != ncclSuccess)                                                                  \
      ::mox::dist::throw_nccl_error(mox_nccl_rc_, #call, __FILE__, __LINE__, where, nullptr);         \
  } while (0)

// A call on a transport's non-blocking communicator, completed under the deadline `until`
// (NcclTransport::settle); on failure the communicator is aborted and the call throws.
#define NCCL_ISSUE(call, where, until) settle((call), #call, __FILE__, __LINE__, where, until)

namespace mox::dist {

namespace {

using Clock = std::chrono::steady_clock;

ncclDataType_t nccl_type(DType t, const std::string& where) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8: return ncclUint8;
    default: MOX_FAIL(where, ": NCCL cannot reduce dtype ", dtype_name(t));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
  }
  return ncclSum;
}

std::string identity_of_current_device() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  char bus[64] = {};
  CUDA_CHECK(cudaDeviceGetPCIBusId(bus, int(sizeof bus), device));
  char host[128] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  return str(host, "/", bus);
}

// Back-off between polls, as the MPI backend's wait: spin, then yield, then sleep 50 µs.
void back_off(int polls, Clock::time_point start) {
  if (polls < 1000) return;
  if (Clock::now() - start < std::chrono::milliseconds(2)) std::this_thread::yield();
  else std::this_thread::sleep_for(std::chrono::microseconds(50));
}

class NcclTransport final : public CudaTransport {
 public:
  // Collective over `group` (see the file comment). `op` names the collective that asked.
  NcclTransport(ProcessGroup& group, const char* op) : group_(group) {
    const std::string w = group.where(op);
    const int n = group.size(), rank = group.rank();

    // 1. One GPU per rank: every rank sees every rank's GPU, so all refuse together.
    constexpr int64_t kId = 192;
    std::string me = identity_of_current_device();
    me.resize(size_t(kId - 1), '\0');
    std::vector<uint8_t> mine(me.begin(), me.end());
    mine.push_back(0);
    const std::vector<uint8_t> all = group.all_gather(from_vector(mine, {1, kId})).to_vector<uint8_t>();
    std::vector<std::string> ids(static_cast<size_t>(n));
    for (int q = 0; q < n; ++q) ids[size_t(q)] = reinterpret_cast<const char*>(&all[size_t(q * kId)]);
    for (int q = 0; q < n; ++q)
      for (int p = 0; p < q; ++p)
        MOX_CHECK(ids[size_t(p)] != ids[size_t(q)], w, ": cannot create the NCCL communicator: ranks ", p, " and ", q,
                  " of the group both use GPU ", ids[size_t(q)],
                  "; NCCL needs a GPU of its own for every rank (run at most as many ranks per node as GPUs, each rank "
                  "on its own device: CUDA_VISIBLE_DEVICES or cudaSetDevice by local rank before any CUDA work)");

    // 2. Rank 0's unique id, broadcast over MPI with a status byte (a failure there is
    //    every rank's error, not a hang).
    std::vector<uint8_t> blob(1 + sizeof(ncclUniqueId), 0);
    std::string id_error;
    if (rank == 0) {
      ncclUniqueId id;
      const ncclResult_t rc = ncclGetUniqueId(&id);
      if (rc == ncclSuccess) {
        blob[0] = 1;
        std::memcpy(blob.data() + 1, &id, sizeof id);
      } else {
        id_error = ncclGetErrorString(rc);
      }
    }
    Tensor shared = from_vector(blob, {int64_t(blob.size())});
    group.broadcast(shared, 0);
    blob = shared.to_vector<uint8_t>();
    MOX_CHECK(blob[0] == 1, w, ": cannot create the NCCL communicator: ncclGetUniqueId failed on rank 0 of the group",
              id_error.empty() ? std::string() : str(": ", id_error));
    ncclUniqueId id;
    std::memcpy(&id, blob.data() + 1, sizeof id);

    // 3. Join, non-blocking, under the collective deadline.
    cuda::stream();   // the backend's stream (and pool) exist on this GPU before NCCL joins
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const auto until = Clock::now() + deadline();
    NCCL_ISSUE(ncclCommInitRankConfig(&comm_, n, id, rank, &config), str(w, ": joining the NCCL communicator"), until);
    CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    CUDA_CHECK(cudaMalloc(&one_, sizeof(float)));
    CUDA_CHECK(cudaMemsetAsync(one_, 0, sizeof(float), cuda::stream()));
  }

  ~NcclTransport() override {
    if (comm_) {
      // A clean end: finalize (flushes, and waits for the peers' finalize, under the
      // deadline), then free. Destructors do not throw: anything else is an abort.
      const auto start = Clock::now(), until = start + deadline();
      ncclResult_t rc = ncclCommFinalize(comm_);
      for (int polls = 0; rc == ncclInProgress && Clock::now() < until; ++polls) {
        back_off(polls, start);
        if (ncclCommGetAsyncError(comm_, &rc) != ncclSuccess) rc = ncclInternalError;
      }
      if (rc == ncclSuccess) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    if (done_) cudaEventDestroy(done_);
    if (one_) cudaFree(one_);
  }

  const char* name() const override { return "nccl"; }

  void allreduce_raw(void* buf, int64_t count, DType dtype, ReduceOp op) override {
    const std::string w = start("all_reduce");
    const auto until = Clock::now() + deadline();
    NCCL_ISSUE(ncclAllReduce(buf, buf, size_t(count), nccl_type(dtype, w), nccl_op(op), comm_, cuda::stream()), w,
               until);
    wait(w, until);
  }

  void broadcast_raw(void* buf, int64_t bytes, int root) override {
    const std::string w = start("broadcast");
    const auto until = Clock::now() + deadline();
    NCCL_ISSUE(ncclBroadcast(buf, buf, size_t(bytes), ncclUint8, root, comm_, cuda::stream()), w, until);
    wait(w, until);
  }

  void allgather_raw(const void* send, void* recv, int64_t bytes_per_rank) override {
    const std::string w = start("all_gather");
    const auto until = Clock::now() + deadline();
    NCCL_ISSUE(ncclAllGather(send, recv, size_t(bytes_per_rank), ncclUint8, comm_, cuda::stream()), w, until);
    wait(w, until);
  }

  void reduce_scatter_raw(const void* send, void* recv, int64_t count_per_rank, DType dtype, ReduceOp op) override {
    const std::string w = start("reduce_scatter");
    const auto until = Clock::now() + deadline();
    NCCL_ISSUE(ncclReduceScatter(send, recv, size_t(count_per_rank), nccl_type(dtype, w), nccl_op(op), comm_,
                                 cuda::stream()),
               w, until);
    wait(w, until);
  }

  void alltoallv_raw(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                     const std::vector<int64_t>& recv_bytes) override {
    const std::string w = start("all_to_all");
    const auto until = Clock::now() + deadline();
    const int n = group_.size(), me = group_.rank();
    MOX_CHECK(int(send_bytes.size()) == n && int(recv_bytes.size()) == n, w, ": ", send_bytes.size(), " send and ",
              recv_bytes.size(), " receive sizes for a group of ", n);
    std::vector<int64_t> so(size_t(n) + 1, 0), ro(size_t(n) + 1, 0);
    for (int q = 0; q < n; ++q) {
      so[size_t(q) + 1] = so[size_t(q)] + send_bytes[size_t(q)];
      ro[size_t(q) + 1] = ro[size_t(q)] + recv_bytes[size_t(q)];
    }
    const char* s = static_cast<const char*>(send);
    char* r = static_cast<char*>(recv);
    MOX_CHECK(send_bytes[size_t(me)] == recv_bytes[size_t(me)], w, ": this rank sends ", send_bytes[size_t(me)],
              " bytes to itself but expects ", recv_bytes[size_t(me)]);
    if (send_bytes[size_t(me)] > 0)
      CUDA_CHECK(cudaMemcpyAsync(r + ro[size_t(me)], s + so[size_t(me)], size_t(send_bytes[size_t(me)]),
                                 cudaMemcpyDeviceToDevice, cuda::stream()));
    // The group is one NCCL operation: ncclSend/ncclRecv inside it only queue (they return
    // ncclSuccess or a usage error); ncclGroupEnd launches it and may answer ncclInProgress.
    // The group is always closed, even after a refused send, before anything throws.
    NCCL_CHECK(ncclGroupStart(), w);
    ncclResult_t queued = ncclSuccess;
    const char* refused = "";
    for (int q = 0; q < n && queued == ncclSuccess; ++q) {
      if (q == me) continue;
      if (send_bytes[size_t(q)] > 0) {
        queued = ncclSend(s + so[size_t(q)], size_t(send_bytes[size_t(q)]), ncclUint8, q, comm_, cuda::stream());
        refused = "ncclSend";
      }
      if (queued == ncclSuccess && recv_bytes[size_t(q)] > 0) {
        queued = ncclRecv(r + ro[size_t(q)], size_t(recv_bytes[size_t(q)]), ncclUint8, q, comm_, cuda::stream());
        refused = "ncclRecv";
      }
    }
    const ncclResult_t launched = ncclGroupEnd();
    if (queued != ncclSuccess) settle(queued, refused, __FILE__, __LINE__, w, until);
    settle(launched, "ncclGroupEnd()", __FILE__, __LINE__, w, until);
    wait(w, until);
  }

  void barrier_raw() override {
    const std::string w = start("barrier");
    const auto until = Clock::now() + deadline();
    NCCL_ISSUE(ncclAllReduce(one_, one_, 1, ncclFloat32, ncclSum, comm_, cuda::stream()), w, until);
    wait(w, until);
  }

 private:
  static Clock::duration deadline() {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_seconds()));
  }

  // The error prefix of `op`; refuses when an earlier failure aborted the communicator.
  std::string start(const char* op) const {
    std::string w = group_.where(op);
    MOX_CHECK(comm_ != nullptr, w, ": the group's NCCL communicator was aborted after an earlier error (",
              aborted_because_, "); this group can no longer move CUDA tensors");
    return w;
  }

  // Aborts the communicator (NCCL also stops its kernels), then throws `message`.
  [[noreturn]] void abort_and_fail(const std::string& message) {
    aborted_because_ = message;
    ncclComm_t c = comm_;
    comm_ = nullptr;
    if (c) ncclCommAbort(c);
    MOX_FAIL(message);
  }

  [[noreturn]] void timed_out(const std::string& w) {
    abort_and_fail(str(w, " did not complete within ", timeout_seconds(),
                       " s: a peer rank died, is stuck, or called a different collective (every rank of a group must "
                       "call the same collectives in the same order). MOX_DIST_TIMEOUT sets the limit in seconds. "
                       "The group's NCCL communicator was aborted."));
  }

  // A call on the non-blocking communicator: ncclInProgress means NCCL is still working on
  // the host side (joining, connecting to peers); poll until it settles or the deadline.
  void settle(ncclResult_t rc, const char* call, const char* file, int line, const std::string& w,
              Clock::time_point until) {
    const auto t0 = Clock::now();
    for (int polls = 0; rc == ncclInProgress; ++polls) {
      if (Clock::now() > until) timed_out(w);
      back_off(polls, t0);
      const ncclResult_t q = ncclCommGetAsyncError(comm_, &rc);
      if (q != ncclSuccess) rc = q;
    }
    if (rc != ncclSuccess) {
      std::string message;
      try {
        throw_nccl_error(rc, call, file, line, w, comm_);
      } catch (const Error& e) {
        message = e.what();
      }
      abort_and_fail(message);
    }
  }

  // Until the work queued on the stream so far has completed on the GPU; NCCL's asynchronous
  // errors (a peer's network failure) end the wait early.
  void wait(const std::string& w, Clock::time_point until) {
    CUDA_CHECK(cudaEventRecord(done_, cuda::stream()));
    const auto t0 = Clock::now();
    for (int polls = 0;; ++polls) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) CUDA_CHECK(q);
      if ((polls & 63) == 0) {
        ncclResult_t async = ncclSuccess;
        NCCL_CHECK(ncclCommGetAsyncError(comm_, &async), w);
        if (async != ncclSuccess && async != ncclInProgress)
          settle(async, "the collective (asynchronous error)", __FILE__, __LINE__, w, until);
      }
      if (Clock::now() > until) timed_out(w);
      back_off(polls, t0);
    }
  }

  ProcessGroup& group_;   // owns this transport
  ncclComm_t comm_ = nullptr;
  cudaEvent_t done_ = nullptr;
  float* one_ = nullptr;  // barrier's element (cudaMalloc: no Tensor, so no throwing destructor)
  std::string aborted_because_;
};

}  // namespace

}  // namespace mox::dist

// Looked up in the loaded library by dist/process_group.cpp. Collective over `group`.
extern "C" mox::dist::CudaTransport* mox_nccl_transport_create(mox::dist::ProcessGroup* group, const char* op) {
  return new mox::dist::NcclTransport(*group, op);
}

extern "C" int mox_nccl_device_identity(char* out, int capacity) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return 1;
  }
  const std::string id = mox::dist::identity_of_current_device();
  std::snprintf(out, size_t(capacity), "%s", id.c_str());
  return 0;
}
