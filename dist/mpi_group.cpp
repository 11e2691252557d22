// mpi_group.cpp — MpiGroup (non-blocking MPI collectives with a deadline) and SelfGroup.
#include "dist/mpi_group.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <thread>

#include "dist/world.h"

namespace mox::dist {

#define MPI_CHECK(call, where)                                                                  \
  do {                                                                                          \
    const int mpi_rc_ = (call);                                                                 \
    if (mpi_rc_ != MPI_SUCCESS) ::mox::dist::throw_mpi_error(mpi_rc_, #call, __FILE__, __LINE__, where); \
  } while (0)

[[noreturn]] void throw_mpi_error(int rc, const char* call, const char* file, int line, const std::string& where) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  MOX_FAIL(where, ": ", call, " failed: ", std::string(text, size_t(len)), "  [", file, ":", line, "]");
}

namespace {

MPI_Datatype mpi_type(DType t, const std::string& where) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    default: MOX_FAIL(where, ": MPI cannot reduce dtype ", dtype_name(t));
  }
}

int to_int(int64_t v, const std::string& where, const char* what) {
  MOX_CHECK(v >= 0 && v <= INT_MAX, where, ": ", what, " ", v, " exceeds MPI's int count limit (", INT_MAX,
            "); split the tensor");
  return int(v);
}

// Waits for `req` until the collective deadline; polls MPI_Test (which also drives MPI's
// progress), first spinning, then yielding, then sleeping 50 µs between tests.
void wait(MPI_Request& req, const std::string& where) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(timeout_seconds());
  for (int polls = 0;; ++polls) {
    int done = 0;
    MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE), where);
    if (done) return;
    if (polls < 1000) continue;
    const auto now = Clock::now();
    if (now > deadline)
      MOX_FAIL(where, " did not complete within ", timeout_seconds(),
               " s: a peer rank died, is stuck, or called a different collective (every rank of a group must call "
               "the same collectives in the same order). MOX_DIST_TIMEOUT sets the limit in seconds.");
    if (now - start < std::chrono::milliseconds(2)) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

std::vector<int> members(MPI_Comm comm) {
  int n = 0;
  MPI_Comm_size(comm, &n);
  MPI_Group g, world;
  MPI_Comm_group(comm, &g);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> local(static_cast<size_t>(n)), global(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) local[size_t(i)] = i;
  MPI_Group_translate_ranks(g, n, local.data(), world, global.data());
  MPI_Group_free(&g);
  MPI_Group_free(&world);
  return global;
}

int rank_in(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

class MpiGroup final : public ProcessGroup {
 public:
  MpiGroup(std::string name, MPI_Comm comm) : ProcessGroup(std::move(name), rank_in(comm), members(comm)), comm_(comm) {}
  ~MpiGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
  }

 protected:
  void allreduce_raw(void* buf, int64_t count, DType dtype, ReduceOp op) override {
    const std::string w = where("all_reduce");
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf, to_int(count, w, "element count"), mpi_type(dtype, w),
                             op == ReduceOp::max ? MPI_MAX : MPI_SUM, comm_, &req), w);
    wait(req, w);
  }
  void broadcast_raw(void* buf, int64_t bytes, int root) override {
    const std::string w = where("broadcast");
    MPI_Request req;
    MPI_CHECK(MPI_Ibcast(buf, to_int(bytes, w, "byte count"), MPI_BYTE, root, comm_, &req), w);
    wait(req, w);
  }
  void allgather_raw(const void* send, void* recv, int64_t bytes_per_rank) override {
    const std::string w = where("all_gather");
    const int n = to_int(bytes_per_rank, w, "byte count");
    to_int(bytes_per_rank * size(), w, "total byte count");
    MPI_Request req;
    MPI_CHECK(MPI_Iallgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_, &req), w);
    wait(req, w);
  }
  void reduce_scatter_raw(const void* send, void* recv, int64_t count_per_rank, DType dtype, ReduceOp op) override {
    const std::string w = where("reduce_scatter");
    to_int(count_per_rank * size(), w, "element count");
    MPI_Request req;
    MPI_CHECK(MPI_Ireduce_scatter_block(send, recv, int(count_per_rank), mpi_type(dtype, w),
                                        op == ReduceOp::max ? MPI_MAX : MPI_SUM, comm_, &req), w);
    wait(req, w);
  }
  void alltoallv_raw(const void* send, const std::vector<int64_t>& send_bytes, void* recv,
                     const std::vector<int64_t>& recv_bytes) override {
    const std::string w = where("all_to_all");
    const size_t n = send_bytes.size();
    std::vector<int> sc(n), sd(n), rc(n), rd(n);
    int64_t so = 0, ro = 0;
    for (size_t r = 0; r < n; ++r) {
      sc[r] = to_int(send_bytes[r], w, "byte count");
      rc[r] = to_int(recv_bytes[r], w, "byte count");
      sd[r] = to_int(so, w, "byte offset");
      rd[r] = to_int(ro, w, "byte offset");
      so += send_bytes[r];
      ro += recv_bytes[r];
    }
    MPI_Request req;
    MPI_CHECK(MPI_Ialltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv, rc.data(), rd.data(), MPI_BYTE, comm_, &req), w);
    wait(req, w);
  }
  void barrier_raw() override {
    const std::string w = where("barrier");
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(comm_, &req), w);
    wait(req, w);
  }
  std::shared_ptr<ProcessGroup> split_raw(int color, int key, const std::string& name) override {
    const std::string w = where("split");
    // MPI_Comm_split is blocking: agree on the call first with a deadline-guarded barrier.
    barrier_raw();
    MPI_Comm sub;
    MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub), w);
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_shared<MpiGroup>(name, sub);
  }

 private:
  MPI_Comm comm_;
};

class SelfGroup final : public ProcessGroup {
 public:
  explicit SelfGroup(std::string name) : ProcessGroup(std::move(name), 0, {0}) {}

 protected:
  // A one-rank group's collectives are handled by ProcessGroup without reaching these.
  void allreduce_raw(void*, int64_t, DType, ReduceOp) override {}
  void broadcast_raw(void*, int64_t, int) override {}
  void allgather_raw(const void*, void*, int64_t) override {}
  void reduce_scatter_raw(const void*, void*, int64_t, DType, ReduceOp) override {}
  void alltoallv_raw(const void*, const std::vector<int64_t>&, void*, const std::vector<int64_t>&) override {}
  void barrier_raw() override {}
  std::shared_ptr<ProcessGroup> split_raw(int color, int, const std::string& name) override {
    return color < 0 ? nullptr : std::make_shared<SelfGroup>(name);
  }
};

}  // namespace

std::shared_ptr<ProcessGroup> make_mpi_world() { return std::make_shared<MpiGroup>("world", MPI_COMM_WORLD); }
std::shared_ptr<ProcessGroup> make_self_group(const std::string& name) { return std::make_shared<SelfGroup>(name); }

}  // namespace mox::dist
