// test_collectives.cpp — every ProcessGroup collective on exactly representable data, at the
// world size mpirun gave (make test: 2 and 4), in the world and in sub-groups; DeepSpeed's
// expert group layout; the collective timeout.
#include <gtest/gtest.h>

#include "dist/groups.h"
#include "dist/world.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"

namespace mox::dist {
namespace {

// Number of elements of `got` that differ from `want` (both converted to double).
int64_t wrong(const Tensor& got, const std::vector<double>& want) {
  const std::vector<double> g = got.to_vector<double>();
  if (g.size() != want.size()) return int64_t(std::max(g.size(), want.size()));
  int64_t n = 0;
  for (size_t i = 0; i < g.size(); ++i) n += g[i] != want[i];
  return n;
}

// Rank r's test tensor: (rows, 3) with values 10·r + i; with ≤ 4 ranks every value and every
// sum is an integer below 256, exact even in bf16.
Tensor rank_rows(int r, int64_t rows, DType dtype) {
  std::vector<double> v(size_t(rows * 3));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 10.0 * r + double(i);
  return raw::to_dtype(from_vector(v, {rows, 3}), dtype);
}

// Every collective on `g`, checked element by element.
void check_all_collectives(ProcessGroup& g) {
  const int n = g.size(), r = g.rank();
  for (DType dt : {DType::f32, DType::f64, DType::i32, DType::i64, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dt));
    // all_reduce sum / max (/ avg for floats)
    Tensor t = rank_rows(r, 2, dt);
    g.all_reduce(t, ReduceOp::sum);
    std::vector<double> sum(6), mx(6), avg(6);
    for (int i = 0; i < 6; ++i) {
      for (int q = 0; q < n; ++q) sum[size_t(i)] += 10.0 * q + i;
      mx[size_t(i)] = 10.0 * (n - 1) + i;
      avg[size_t(i)] = sum[size_t(i)] / n;
    }
    EXPECT_EQ(wrong(t, sum), 0);
    Tensor m = rank_rows(r, 2, dt);
    g.all_reduce(m, ReduceOp::max);
    EXPECT_EQ(wrong(m, mx), 0);
    if (is_floating(dt) && dt != DType::f16 && dt != DType::bf16) {   // n = 2, 4: sum/n exact
      Tensor a = rank_rows(r, 2, dt);
      g.all_reduce(a, ReduceOp::avg);
      EXPECT_EQ(wrong(a, avg), 0);
    }
    // broadcast from the last rank
    Tensor b = rank_rows(r, 2, dt);
    g.broadcast(b, n - 1);
    EXPECT_EQ(wrong(b, rank_rows(n - 1, 2, DType::f64).to_vector<double>()), 0);
    // all_gather: rank q's rows at [2q, 2q+2)
    std::vector<double> gathered;
    for (int q = 0; q < n; ++q)
      for (double v : rank_rows(q, 2, DType::f64).to_vector<double>()) gathered.push_back(v);
    Tensor ag = g.all_gather(rank_rows(r, 2, dt));
    EXPECT_EQ(ag.shape(), Shape({2 * n, 3}));
    EXPECT_EQ(wrong(ag, gathered), 0);
    // reduce_scatter: rank r gets Σ_q of rows [r, r+1) of rank q's (n, 3)
    Tensor rs = g.reduce_scatter(rank_rows(r, n, dt), ReduceOp::sum);
    std::vector<double> want(3, 0.0);
    for (int q = 0; q < n; ++q)
      for (int j = 0; j < 3; ++j) want[size_t(j)] += 10.0 * q + 3 * r + j;
    EXPECT_EQ(rs.shape(), Shape({1, 3}));
    EXPECT_EQ(wrong(rs, want), 0);
  }
}

TEST(Collectives, WorldExactForEveryOpAndDtype) {
  ASSERT_LE(world().size(), 4) << "the test values are exact in bf16 up to 4 ranks";
  check_all_collectives(world());
}

// Tests that need peers skip in a one-rank world (mox-dist-tests run without mpirun).
#define NEED_PEERS() \
  if (world().size() < 2) GTEST_SKIP() << "needs at least 2 ranks (run under mpirun -np 2 or 4)"


TEST(Collectives, SubGroupsExact) {
  NEED_PEERS();
  ProcessGroup& w = world();
  // Even and odd world ranks.
  std::shared_ptr<ProcessGroup> parity = w.split(w.rank() % 2, w.rank(), "parity");
  ASSERT_NE(parity, nullptr);
  EXPECT_EQ(parity->size(), (w.size() + 1 - w.rank() % 2) / 2);
  EXPECT_EQ(parity->world_ranks()[size_t(parity->rank())], w.rank());
  check_all_collectives(*parity);
  // The last two ranks listed in reverse: group rank 0 is world rank W-1.
  std::shared_ptr<ProcessGroup> tail = w.new_group({w.size() - 1, w.size() - 2}, "tail");
  if (w.rank() >= w.size() - 2) {
    ASSERT_NE(tail, nullptr);
    EXPECT_EQ(tail->world_ranks(), std::vector<int>({w.size() - 1, w.size() - 2}));
    EXPECT_EQ(tail->rank(), w.size() - 1 - w.rank());
    check_all_collectives(*tail);
  } else {
    EXPECT_EQ(tail, nullptr);
  }
}

// Rank r sends (r + q) % 3 rows to rank q (0 rows included), each row tagged with (r, q, i).
TEST(Collectives, AllToAllUnevenSplitsExact) {
  ProcessGroup& w = world();
  const int n = w.size(), r = w.rank();
  for (DType dt : {DType::f32, DType::i64, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<int64_t> send(static_cast<size_t>(n)), expect_recv(static_cast<size_t>(n));
    std::vector<double> values, want;
    for (int q = 0; q < n; ++q) {
      send[size_t(q)] = (r + q) % 3;
      for (int64_t i = 0; i < send[size_t(q)]; ++i)
        for (int j = 0; j < 2; ++j) values.push_back(30.0 * r + 8.0 * q + 2 * i + j);
    }
    for (int q = 0; q < n; ++q) {   // what rank q sends to r
      expect_recv[size_t(q)] = (q + r) % 3;
      for (int64_t i = 0; i < expect_recv[size_t(q)]; ++i)
        for (int j = 0; j < 2; ++j) want.push_back(30.0 * q + 8.0 * r + 2 * i + j);
    }
    const int64_t rows = int64_t(values.size()) / 2;
    Tensor t = raw::to_dtype(from_vector(values, {rows, 2}), dt);
    std::vector<int64_t> recv = w.exchange_counts(send);
    EXPECT_EQ(recv, expect_recv);
    Tensor out = w.all_to_all(t, send, recv);
    EXPECT_EQ(out.size(0), int64_t(want.size()) / 2);
    EXPECT_EQ(wrong(out, want), 0);
  }
}

TEST(Collectives, ArgumentErrorsNameTheCollective) {
  NEED_PEERS();
  ProcessGroup& w = world();
  Tensor t = zeros({4, 2});
  const std::vector<int64_t> none(static_cast<size_t>(w.size()), 0);
  mox::testing::expect_error([&] { w.all_to_all(t, none, none); }, {"all_to_all on group 'world'", "add up to 0 rows"});
  mox::testing::expect_error([&] { w.all_reduce(t.transpose(0, 1)); }, {"must be contiguous"});
  mox::testing::expect_error([&] { w.all_reduce(zeros({2}, DType::i64), ReduceOp::avg); }, {"avg needs a floating tensor"});
  mox::testing::expect_error([&] { w.broadcast(t, w.size()); }, {"root"});
  mox::testing::expect_error([&] { w.reduce_scatter(zeros({w.size() + 1, 2})); }, {"divisible by the group size"});
  mox::testing::expect_error([&] { w.new_group({0, 0}, "twice"); }, {"listed twice"});
}

TEST(Collectives, ExpertGroupsFollowDeepSpeedLayout) {
  ProcessGroup& w = world();
  const int W = w.size(), r = w.rank();
  for (int p = 1; p <= W; p *= 2) {
    const ExpertGroups& g = expert_groups(p);
    EXPECT_EQ(g.name, str("ep_size_", p));
    std::vector<int> ep, edp;
    for (int q = (r / p) * p; q < (r / p + 1) * p; ++q) ep.push_back(q);
    for (int q = r % p; q < W; q += p) edp.push_back(q);
    EXPECT_EQ(g.expert_parallel->world_ranks(), ep) << "p=" << p;
    EXPECT_EQ(g.expert_data_parallel->world_ranks(), edp) << "p=" << p;
    EXPECT_EQ(&expert_groups(g.name), &g);   // shared by name, built once
  }
  mox::testing::expect_error([&] { expert_groups(W + 1); }, {"must divide the world size"});
  mox::testing::expect_error([&] { expert_groups(std::string("ep_two")); }, {"not an expert group name"});
}

// A collective that a peer never joins fails after the timeout, naming itself and the group.
TEST(Collectives, MissingPeerTimesOutWithAClearError) {
  NEED_PEERS();
  ProcessGroup& w = world();
  std::shared_ptr<ProcessGroup> sub = w.split(0, w.rank(), "timeout_probe");
  if (w.rank() == 0) {
    const double saved = timeout_seconds();
    set_timeout_seconds(0.5);
    mox::testing::expect_error([&] { sub->barrier(); }, {"barrier on group 'timeout_probe' (rank 0 of"});
    set_timeout_seconds(saved);
  }
  w.barrier();
  if (w.rank() != 0) sub->barrier();   // completes rank 0's abandoned barrier
  w.barrier();
}

}  // namespace
}  // namespace mox::dist
