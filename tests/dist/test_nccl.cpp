// test_nccl.cpp — ProcessGroup's collectives on CUDA tensors (the NCCL transport,
// dist/transport.h) against the same collectives on CPU tensors (MPI): every op and dtype on
// exactly representable data (0 wrong elements), in the world and in sub-groups, all_to_all
// with uneven and empty splits, f16/bf16 all_reduce (NCCL's native half sums), a multi-MiB
// buffer, the transport's barrier, the error for a second device, and the deadline (a
// missing peer aborts the communicator with the MPI backend's message).
//
// The NcclCollectives tests skip, saying why, without a GPU, without NCCL in the build, or
// when two ranks of the world share one GPU (NCCL refuses that; one GPU per rank). The
// NcclTransport test runs where no transport can be made (a CPU-only build or a machine
// without a GPU) and checks that every rank gets the reason instead of a hang.
#include <gtest/gtest.h>

#include <algorithm>

#include "dist/transport.h"
#include "dist/world.h"
#include "tests/cuda_test.h"
#include "tests/expect_error.h"

namespace mox::dist {
namespace {

using mox::testing::cuda;
using mox::testing::expect_equal;

// Why NCCL collectives cannot run on every rank of `g` (collective over g): "" when they can.
// Local reasons (no GPU, no NCCL) are the same on every rank of a job; a shared GPU is
// found from every rank's GPU identity, so all ranks skip together.
std::string nccl_skip_reason(ProcessGroup& g) {
  const std::string local = cuda_transport_unavailable();
  if (!local.empty()) return local;
  constexpr int64_t kId = 192;
  std::string me = cuda_device_identity();
  me.resize(size_t(kId - 1), '\0');
  me.push_back('\0');
  const std::vector<uint8_t> all =
      g.all_gather(from_vector(std::vector<uint8_t>(me.begin(), me.end()), {1, kId})).to_vector<uint8_t>();
  std::vector<std::string> ids;
  for (int q = 0; q < g.size(); ++q) ids.emplace_back(reinterpret_cast<const char*>(&all[size_t(q * kId)]));
  for (int q = 0; q < g.size(); ++q)
    for (int p = 0; p < q; ++p)
      if (ids[size_t(p)] == ids[size_t(q)])
        return str("ranks ", p, " and ", q, " share GPU ", ids[size_t(q)],
                   "; NCCL needs one GPU per rank (run as many ranks per node as GPUs, each on its own device)");
  return "";
}

#define REQUIRE_NCCL(g)                                                                       \
  REQUIRE_CUDA();                                                                             \
  if (const std::string why_ = nccl_skip_reason(g); !why_.empty()) GTEST_SKIP() << why_

// Rank r's test tensor: (rows, 3) with values 10·r + i, as test_collectives.cpp: with ≤ 4
// ranks and rows ≤ 4 every value and every sum is an integer below 256, exact in bf16, f16
// and u8, so NCCL's and MPI's summation orders give the same bits.
Tensor rank_rows(int r, int64_t rows, DType dtype) {
  std::vector<double> v(size_t(rows * 3));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 10.0 * r + double(i);
  return raw::to_dtype(from_vector(v, {rows, 3}), dtype);
}

bool power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

// Every collective of `g` on CUDA copies against the same collective on the CPU tensors.
void check_against_cpu(ProcessGroup& g) {
  const int n = g.size(), r = g.rank();
  for (DType dt : {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<ReduceOp> ops = {ReduceOp::sum, ReduceOp::max};
    // avg: NCCL pre-multiplies by 1/n, the CPU path divides the sum; equal bits when 1/n is exact.
    if (is_floating(dt) && power_of_two(n)) ops.push_back(ReduceOp::avg);
    for (ReduceOp op : ops) {
      SCOPED_TRACE(to_string(op));
      Tensor c = rank_rows(r, 2, dt), d = cuda(c);
      g.all_reduce(c, op);
      g.all_reduce(d, op);
      expect_equal(d, c, "all_reduce");
      Tensor rc = g.reduce_scatter(rank_rows(r, n, dt), op);
      Tensor rd = g.reduce_scatter(cuda(rank_rows(r, n, dt)), op);
      EXPECT_TRUE(rd.device().is_cuda());
      expect_equal(rd, rc, "reduce_scatter");
    }
    for (int root : {0, n - 1}) {
      Tensor c = rank_rows(r, 2, dt), d = cuda(c);
      g.broadcast(c, root);
      g.broadcast(d, root);
      expect_equal(d, c, str("broadcast from ", root));
    }
    Tensor ac = g.all_gather(rank_rows(r, 2, dt));
    Tensor ad = g.all_gather(cuda(rank_rows(r, 2, dt)));
    EXPECT_TRUE(ad.device().is_cuda());
    expect_equal(ad, ac, "all_gather");
  }
}

TEST(NcclCollectives, WorldEveryOpAndDtypeMatchesCpu) {
  ASSERT_LE(world().size(), 4) << "the test values are exact in bf16 up to 4 ranks";
  REQUIRE_NCCL(world());
  check_against_cpu(world());
}

TEST(NcclCollectives, SubGroupsMatchCpu) {
  ProcessGroup& w = world();
  if (w.size() < 2) GTEST_SKIP() << "needs at least 2 ranks (run under mpirun -np 2 or 4)";
  REQUIRE_NCCL(w);
  // Even and odd world ranks (two ranks each at -np 4; one-rank groups copy at -np 2).
  std::shared_ptr<ProcessGroup> parity = w.split(w.rank() % 2, w.rank(), "nccl_parity");
  ASSERT_NE(parity, nullptr);
  check_against_cpu(*parity);
  // Every rank in reverse order: group rank 0 is world rank W-1 (its own NCCL communicator).
  std::vector<int> reversed(static_cast<size_t>(w.size()));
  for (int q = 0; q < w.size(); ++q) reversed[size_t(q)] = w.size() - 1 - q;
  std::shared_ptr<ProcessGroup> rev = w.new_group(reversed, "nccl_reversed");
  ASSERT_NE(rev, nullptr);
  EXPECT_EQ(rev->rank(), w.size() - 1 - w.rank());
  check_against_cpu(*rev);
}

// Rank r sends (r + q) % 3 rows to rank q (0 rows included, and at -np 4 rank 0 sends itself
// nothing); each row tagged with (r, q, i). The CUDA result equals the CPU one.
TEST(NcclCollectives, AllToAllUnevenSplitsMatchCpu) {
  ProcessGroup& w = world();
  REQUIRE_NCCL(w);
  const int n = w.size(), r = w.rank();
  for (DType dt : {DType::f32, DType::i64, DType::bf16, DType::u8}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<int64_t> send(static_cast<size_t>(n));
    std::vector<double> values;
    for (int q = 0; q < n; ++q) {
      send[size_t(q)] = (r + q) % 3;
      for (int64_t i = 0; i < send[size_t(q)]; ++i)
        for (int j = 0; j < 2; ++j) values.push_back(30.0 * r + 8.0 * q + 2 * i + j);
    }
    Tensor t = raw::to_dtype(from_vector(values, {int64_t(values.size()) / 2, 2}), dt);
    const std::vector<int64_t> recv = w.exchange_counts(send);
    Tensor c = w.all_to_all(t, send, recv);
    Tensor d = w.all_to_all(cuda(t), send, recv);
    EXPECT_TRUE(d.device().is_cuda());
    expect_equal(d, c, "all_to_all");
  }
  // Nothing sent anywhere: (0, 5) in, (0, 5) out, on every rank.
  const std::vector<int64_t> none(static_cast<size_t>(n), 0);
  Tensor empty_out = w.all_to_all(cuda(zeros({0, 5})), none, none);
  EXPECT_EQ(empty_out.shape(), Shape({0, 5}));
}

// f16/bf16 all_reduce moves and sums 16-bit values natively (no f32 copy); on integers up
// to 256 (exact in both) the result equals the CPU path's widened sum, over a buffer long
// enough for NCCL to split it into many chunks.
TEST(NcclCollectives, HalfPrecisionAllReduceNative) {
  ProcessGroup& w = world();
  REQUIRE_NCCL(w);
  const int n = w.size(), r = w.rank();
  ASSERT_LE(n, 4);
  const int64_t len = 1 << 16;
  std::vector<double> v(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i) v[size_t(i)] = double((i * 7 + r * 13) % 64);   // sums ≤ 4·63
  for (DType dt : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max}) {
      Tensor c = raw::to_dtype(from_vector(v, {len}), dt), d = cuda(c);
      w.all_reduce(c, op);
      w.all_reduce(d, op);
      EXPECT_EQ(d.dtype(), dt);
      expect_equal(d, c, to_string(op));
    }
  }
}

// 16 MiB of f32 integers (< 2^24 after summing): NCCL's large-message protocols.
TEST(NcclCollectives, LargeBufferAllReduceAndAllGatherMatchCpu) {
  ProcessGroup& w = world();
  REQUIRE_NCCL(w);
  const int r = w.rank();
  const int64_t len = int64_t(4) << 20;
  std::vector<float> v(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i) v[size_t(i)] = float(i % 1000 + r);
  Tensor c = from_vector(v, {len});
  Tensor d = cuda(c);
  w.all_reduce(c);
  w.all_reduce(d);
  expect_equal(d, c, "all_reduce 16 MiB");
  expect_equal(w.all_gather(d.view({len / 4, 4})), w.all_gather(c.view({len / 4, 4})), "all_gather 16 MiB");
}

// The transport itself: its barrier, and a communicator of one rank (which ProcessGroup never
// builds: its one-rank collectives are copies) — what a one-GPU machine can run.
TEST(NcclCollectives, TransportBarrierAndOneRankCommunicator) {
  ProcessGroup& w = world();
  REQUIRE_NCCL(w);
  std::unique_ptr<CudaTransport> t = make_cuda_transport(w);
  EXPECT_STREQ(t->name(), "nccl");
  t->barrier_raw();
  t->barrier_raw();
  std::shared_ptr<ProcessGroup> self = w.split(w.rank(), 0, "nccl_self");
  std::unique_ptr<CudaTransport> one = make_cuda_transport(*self);
  Tensor x = cuda(rank_rows(w.rank(), 2, DType::f32));
  one->allreduce_raw(x.raw_data(), x.numel(), DType::f32, ReduceOp::sum);
  expect_equal(x, rank_rows(w.rank(), 2, DType::f32), "one-rank all_reduce");
  Tensor y = empty({2, 3}, DType::f32, Device::cuda());
  one->alltoallv_raw(x.raw_data(), {int64_t(x.nbytes())}, y.raw_data(), {int64_t(y.nbytes())});
  expect_equal(y, rank_rows(w.rank(), 2, DType::f32), "one-rank all_to_all");
  one->barrier_raw();
}

// A group's CUDA collectives use the device of its first one; a tensor on another device is
// refused naming both (before any communication, so every rank throws alike).
TEST(NcclCollectives, SecondDeviceIsAnErrorNamingBoth) {
  ProcessGroup& w = world();
  if (w.size() < 2) GTEST_SKIP() << "needs at least 2 ranks (a one-rank group never makes a transport)";
  REQUIRE_NCCL(w);
  std::shared_ptr<ProcessGroup> g = w.split(0, w.rank(), "nccl_devices");
  Tensor a = cuda(rank_rows(w.rank(), 2, DType::f32));
  g->all_reduce(a);   // the transport, on cuda:0
  Tensor b = zeros({2, 3}, DType::f32, Device::cuda(1));   // the backend's one GPU, labelled cuda:1
  mox::testing::expect_error([&] { g->all_reduce(b); },
                             {"all_reduce on group 'nccl_devices'", "cuda:1", "cuda:0", "one GPU per process"});
}

// A CUDA collective that a peer never joins fails after the timeout with the MPI backend's
// message, and the aborted communicator refuses later collectives. Rank 0 calls alone; then
// the others call alone (rank 0's communicator is gone), so every rank's times out.
TEST(NcclCollectives, MissingPeerTimesOutAndAborts) {
  ProcessGroup& w = world();
  if (w.size() < 2) GTEST_SKIP() << "needs at least 2 ranks";
  REQUIRE_NCCL(w);
  std::shared_ptr<ProcessGroup> g = w.split(0, w.rank(), "nccl_timeout_probe");
  Tensor x = cuda(rank_rows(w.rank(), 2, DType::f32));
  g->all_reduce(x);   // connected
  const double saved = timeout_seconds();
  auto alone = [&] {
    set_timeout_seconds(0.5);
    const std::string prefix = str("all_reduce on group 'nccl_timeout_probe' (rank ", g->rank(), " of ", g->size(), ")");
    mox::testing::expect_error([&] { g->all_reduce(x); }, {prefix});
    set_timeout_seconds(saved);
  };
  if (w.rank() == 0) {
    set_timeout_seconds(0.5);
    mox::testing::expect_error([&] { g->all_reduce(x); },
                               {"all_reduce on group 'nccl_timeout_probe' (rank 0 of", "did not complete within 0.5 s",
                                "MOX_DIST_TIMEOUT", "NCCL communicator was aborted"});
    set_timeout_seconds(saved);
    mox::testing::expect_error([&] { g->broadcast(x, 0); }, {"broadcast on group 'nccl_timeout_probe' (rank 0 of",
                                                             "was aborted after an earlier error"});
  }
  w.barrier();
  if (w.rank() != 0) alone();
  w.barrier();
}

// Where no transport can be made (this build or this machine), asking for one is an error
// on every rank that says why — never a rank left waiting in NCCL's bootstrap.
TEST(NcclTransport, UnavailableIsAnErrorOnEveryRankSayingWhy) {
  const std::string why = cuda_transport_unavailable();
  if (why.empty()) GTEST_SKIP() << "a CUDA transport can be made here (the NcclCollectives tests use it)";
  // In the order they are checked: the build, a GPU (and the library loading), NCCL in the build.
  if (!cuda_built()) {
    EXPECT_CONTAINS(why, "built without the CUDA backend");
  } else if (why.find("NCCL not found at build time") == std::string::npos) {
    EXPECT_CONTAINS(why, "no CUDA device is visible");
  }
  EXPECT_EQ(cuda_device_identity(), "");
  ProcessGroup& w = world();
  mox::testing::expect_error([&] { make_cuda_transport(w, "all_reduce"); },
                             {str("all_reduce on group 'world' (rank ", w.rank(), " of ", w.size(), ")"),
                              "cannot create the CUDA (NCCL) transport", why});
  // The group still works over MPI afterwards.
  Tensor t = from_vector<int64_t>({w.rank()}, {1});
  w.all_reduce(t);
  EXPECT_EQ(t.item<int64_t>(), int64_t(w.size()) * (w.size() - 1) / 2);
}

}  // namespace
}  // namespace mox::dist
