// test_loss_window.cpp — examples::LossWindow (examples/common/loss_window.h), the logging
// window of mox-cifar10 and mox-llm, at the world size mpirun gave. Checked: every rank gets the
// same steps, count and means — over the (step, rank) pairs with a finite loss — also when one
// rank's loss is not finite where the others' are, and when the logging rank has none at all; a
// window without a finite loss on any rank reports null and "all N steps skipped", not NaN; a
// normal window keeps its format, and each window starts empty.
#include <gtest/gtest.h>

#include <vector>

#include "dist/world.h"
#include "examples/common/loss_window.h"

namespace mox::examples {
namespace {

// (steps, with_loss, the means) of every rank, in rank order.
std::vector<std::vector<double>> gathered(const LossWindow::Means& m, size_t num_losses) {
  std::vector<double> mine{double(m.steps), double(m.with_loss)};
  for (size_t i = 0; i < num_losses; ++i) mine.push_back(m.values.empty() ? -1.0 : m.values[i]);
  const int64_t n = int64_t(mine.size());
  const std::vector<double> all = dist::world().all_gather(from_vector<double>(mine, {1, n})).to_vector<double>();
  std::vector<std::vector<double>> out;
  for (size_t r = 0; r < all.size(); r += size_t(n)) out.emplace_back(all.begin() + long(r), all.begin() + long(r) + n);
  return out;
}

TEST(LossWindow, EveryRankGetsTheSameCountsAndMeansWhenOnlySomeRanksLossesAreFinite) {
  dist::ProcessGroup& world = dist::world();
  const int W = world.size();
  LossWindow window(2);
  // Rank q's step s: losses (1 + q + 10 s, q / 2); rank 0's step 1 has none (its forward overflowed).
  auto finite = [](int q, int s) { return !(q == 0 && s == 1); };
  double sum0 = 0, sum1 = 0, count = 0;
  for (int s = 0; s < 3; ++s) {
    for (int q = 0; q < W; ++q)
      if (finite(q, s)) {
        sum0 += 1.0 + q + 10.0 * s;
        sum1 += 0.5 * q;
        count += 1;
      }
    const int r = world.rank();
    window.add(finite(r, s) ? std::vector<double>{1.0 + r + 10.0 * s, 0.5 * r} : std::vector<double>{});
  }
  const LossWindow::Means m = window.reduce(world);
  EXPECT_EQ(m.steps, 3);
  EXPECT_EQ(m.with_loss, 3 * W - 1);
  ASSERT_EQ(m.values.size(), 2u);
  EXPECT_DOUBLE_EQ(m.values[0], sum0 / count);
  EXPECT_DOUBLE_EQ(m.values[1], sum1 / count);
  const std::vector<std::vector<double>> all = gathered(m, 2);
  for (int q = 1; q < W; ++q) EXPECT_EQ(all[size_t(q)], all[0]) << "rank " << q << " logs other counts or means";
}

TEST(LossWindow, TheLoggingRankWithoutAFiniteLossLogsTheOtherRanksMean) {
  dist::ProcessGroup& world = dist::world();
  if (world.size() < 2) GTEST_SKIP() << "needs 2 ranks or more";
  LossWindow window(1);
  for (int s = 0; s < 4; ++s) window.add(world.rank() == 0 ? std::vector<double>{} : std::vector<double>{2.0 + s});
  const LossWindow::Means m = window.reduce(world);
  EXPECT_EQ(m.with_loss, 4 * (world.size() - 1));
  EXPECT_EQ(m.text(3), "3.500");
  const std::vector<std::vector<double>> all = gathered(m, 1);
  for (size_t q = 1; q < all.size(); ++q) EXPECT_EQ(all[q], all[0]) << "rank " << q;
}

TEST(LossWindow, AWindowWithoutAFiniteLossSaysAllStepsWereSkippedNotNaN) {
  dist::ProcessGroup& world = dist::world();
  LossWindow window(2);
  for (int s = 0; s < 5; ++s) window.add({});   // every rank's forward overflowed at every step
  LossWindow::Means m = window.reduce(world);
  EXPECT_EQ(m.steps, 5);
  EXPECT_EQ(m.with_loss, 0);
  EXPECT_TRUE(m.json(0).is_null());
  EXPECT_TRUE(m.json(1).is_null());
  EXPECT_EQ((nlohmann::json{{"loss", m.json(0)}}.dump()), R"({"loss":null})");
  EXPECT_EQ(m.text(3), "n/a (all 5 steps skipped)");
  // The next window starts empty; a normal window: numbers, and the log's fixed decimals.
  window.add({2.0, 0.25});
  window.add({2.5, 0.75});
  m = window.reduce(world);
  EXPECT_EQ(m.steps, 2);
  EXPECT_EQ(m.json(0).get<double>(), 2.25);
  EXPECT_EQ(m.json(1).get<double>(), 0.5);
  EXPECT_EQ(m.text(3), "2.250");
  EXPECT_EQ(m.text(4), "2.2500");
  window.add({});
  EXPECT_EQ(window.reduce(world).text(3), "n/a (all 1 step skipped)");
}

}  // namespace
}  // namespace mox::examples
