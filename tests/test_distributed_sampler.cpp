// test_distributed_sampler.cpp — DistributedSampler in one process: every rank's share is
// computed here for world sizes 1..5 (no MPI needed). Shares are disjoint and cover the dataset
// (padding and drop_last as PyTorch), have equal sizes, reshuffle per epoch, depend only on the
// seed; the DataLoader's drop_last (per batch) leaves the sampler padding; bad ranks are errors
// naming the values.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "datasets/dataloader.h"
#include "datasets/distributed_sampler.h"
#include "tests/expect_error.h"

namespace mox::data {
namespace {

// Every rank's indices for one epoch.
std::vector<std::vector<int64_t>> shares(int64_t n, int64_t world, bool shuffle, bool drop_last, uint64_t seed,
                                         int64_t epoch) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t r = 0; r < world; ++r) {
    DistributedSampler s(n, {r, world, shuffle, seed, drop_last});
    s.set_epoch(epoch);
    out.push_back(s.indices());
  }
  return out;
}

TEST(DistributedSampler, SharesAreEqualDisjointAndCoverTheDataset) {
  for (int64_t n : {0, 1, 7, 10, 12, 13}) {
    for (int64_t world = 1; world <= 5; ++world) {
      for (bool shuffle : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "n=" << n << " world=" << world << " shuffle=" << shuffle);
        // Padding: ceil(n/W) each; every item at least once; exactly total-n repeats.
        {
          const auto s = shares(n, world, shuffle, false, 7, 3);
          const int64_t per = (n + world - 1) / world;
          std::map<int64_t, int> seen;
          for (const auto& share : s) {
            EXPECT_EQ(int64_t(share.size()), per);
            for (int64_t i : share) {
              EXPECT_TRUE(i >= 0 && i < n) << i;
              ++seen[i];
            }
          }
          EXPECT_EQ(int64_t(seen.size()), n);
          int64_t repeats = 0;
          for (const auto& [i, c] : seen) repeats += c - 1;
          EXPECT_EQ(repeats, per * world - n);
        }
        // drop_last: floor(n/W) each; no item twice; exactly n mod W left out.
        {
          const auto s = shares(n, world, shuffle, true, 7, 3);
          std::set<int64_t> seen;
          for (const auto& share : s) {
            EXPECT_EQ(int64_t(share.size()), n / world);
            for (int64_t i : share) EXPECT_TRUE(seen.insert(i).second) << "index " << i << " twice";
          }
          EXPECT_EQ(int64_t(seen.size()), n - n % world);
        }
      }
    }
  }
}

// Without shuffle the shares are PyTorch's: rank r gets r, r+W, ... of 0..n-1 padded by wrapping.
TEST(DistributedSampler, UnshuffledSharesMatchPyTorch) {
  // DistributedSampler(range(10), num_replicas=4, rank=r, shuffle=False)
  const auto pad = shares(10, 4, false, false, 0, 0);
  EXPECT_EQ(pad[0], (std::vector<int64_t>{0, 4, 8}));
  EXPECT_EQ(pad[1], (std::vector<int64_t>{1, 5, 9}));
  EXPECT_EQ(pad[2], (std::vector<int64_t>{2, 6, 0}));
  EXPECT_EQ(pad[3], (std::vector<int64_t>{3, 7, 1}));
  // ... drop_last=True
  const auto cut = shares(10, 4, false, true, 0, 0);
  EXPECT_EQ(cut[0], (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(cut[3], (std::vector<int64_t>{3, 7}));
  // More ranks than items: padding wraps more than once (PyTorch repeats the list).
  const auto tiny = shares(2, 5, false, false, 0, 0);
  EXPECT_EQ(tiny, (std::vector<std::vector<int64_t>>{{0}, {1}, {0}, {1}, {0}}));
  EXPECT_EQ(DistributedSampler(2, {0, 5, false, 0, true}).num_samples(), 0);
}

TEST(DistributedSampler, EpochReshufflesAndSeedDetermines) {
  const int64_t n = 64;
  const auto e0 = shares(n, 4, true, false, 11, 0);
  const auto e1 = shares(n, 4, true, false, 11, 1);
  EXPECT_EQ(e0, shares(n, 4, true, false, 11, 0)) << "same seed and epoch: same shares";
  EXPECT_NE(e0, e1) << "set_epoch must reshuffle";
  EXPECT_NE(e0, shares(n, 4, true, false, 12, 0)) << "another seed: another order";
  // The per-epoch permutation is global: epoch 1's shares still partition the dataset.
  std::set<int64_t> all;
  for (const auto& s : e1) all.insert(s.begin(), s.end());
  EXPECT_EQ(int64_t(all.size()), n);
  // set_epoch on an existing sampler equals a fresh sampler at that epoch; epoch() reports it.
  DistributedSampler s(n, {2, 4, true, 11, false});
  s.set_epoch(1);
  EXPECT_EQ(s.epoch(), 1);
  EXPECT_EQ(s.indices(), e1[2]);
  s.set_epoch(0);
  EXPECT_EQ(s.indices(), e0[2]);
  EXPECT_EQ(s.total_size(), n);
}

// A dataset whose label is the example's index, to read the DataLoader's order back.
class IndexDataset : public Dataset {
 public:
  explicit IndexDataset(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  Example get(int64_t i) const override { return {zeros({1, 1, 1}, DType::u8), i}; }
  std::vector<std::string> class_names() const override { return {"index"}; }

 private:
  int64_t n_;
};

// The DataLoader takes its shares from a DistributedSampler in padding mode; its own drop_last
// drops the rank's last partial batch and must not turn into the sampler's drop_last (cutting
// the dataset's tail). 23 items on 4 ranks: 6 each (padded), not 5; batches of 3 → 2 full ones.
TEST(DistributedSampler, LoaderDropLastDropsPartialBatchesNotTheDatasetTail) {
  const int64_t n = 23, world = 4;
  auto dataset = std::make_shared<IndexDataset>(n);
  std::set<int64_t> seen;
  for (int64_t rank = 0; rank < world; ++rank) {
    LoaderOptions lo;
    lo.batch_size = 3;
    lo.shuffle = true;
    lo.seed = 99;
    lo.drop_last = true;
    lo.prefetch = 0;
    lo.rank = rank;
    lo.world_size = world;
    DataLoader loader(dataset, lo);
    EXPECT_EQ(loader.samples_per_epoch(), 6);
    EXPECT_EQ(loader.batches_per_epoch(), 2);
    loader.start_epoch(2);
    std::vector<int64_t> got;
    Batch b;
    while (loader.next(b))
      for (int64_t v : b.labels.to_vector<int64_t>()) got.push_back(v);
    DistributedSampler padded(n, {rank, world, true, 99, /*drop_last=*/false});
    padded.set_epoch(2);
    EXPECT_EQ(got, padded.indices()) << "rank " << rank;
    seen.insert(got.begin(), got.end());
  }
  EXPECT_EQ(int64_t(seen.size()), n) << "padding mode: no item left out";
}

TEST(DistributedSampler, BadArgumentsNameTheValues) {
  using mox::testing::expect_error;
  expect_error([] { DistributedSampler(10, {4, 4}); }, {"rank 4", "world_size=4"});
  expect_error([] { DistributedSampler(10, {-1, 2}); }, {"rank -1"});
  expect_error([] { DistributedSampler(10, {0, 0}); }, {"world_size must be >= 1, got 0"});
  expect_error([] { DistributedSampler(-3, {0, 1}); }, {"size must be >= 0, got -3"});
  DistributedSampler s(10, {0, 2});
  expect_error([&] { s.set_epoch(-1); }, {"epoch must be >= 0, got -1"});
}

}  // namespace
}  // namespace mox::data
