// distributed_sampler.h — DistributedSampler: this rank's share of a dataset's indices, per epoch.
//
// PyTorch's torch.utils.data.DistributedSampler, for any indexable collection of `size` items:
//   1. the epoch's order: a permutation of 0..size-1 drawn from a Generator keyed by
//      (seed, epoch) — identical on every rank, a new one after set_epoch — or 0..size-1 when
//      shuffle is off;
//   2. equal shares: drop_last off — the order is padded by wrapping around to its start until
//      its length is a multiple of world_size (up to world_size-1 items appear twice);
//      drop_last on — its tail is cut to a multiple of world_size (up to world_size-1 items
//      are left out this epoch). Every rank gets num_samples() = ceil(size/W) or floor(size/W);
//   3. rank r takes positions r, r + W, r + 2W, ... of that order.
// So the shares of one epoch are disjoint (apart from the padding), cover the dataset (apart
// from what drop_last cuts), have equal sizes, and depend only on (size, rank, W, seed, epoch,
// shuffle, drop_last).
//
// This is the one implementation of the epoch order and the sharding: the image DataLoader
// (datasets/dataloader.h) takes each epoch's indices from a DistributedSampler in padding mode
// (drop_last off); its own drop_last is a different thing — it drops the rank's last partial
// batch. derive_key below is the one key derivation both use (the loader for augmentation).
//
// What it is not: it knows no MPI (rank and world size are plain numbers, from dist::world()
// in a program), loads nothing (feed its indices to a Dataset, a TextDataset, a custom loop),
// and keeps no position within an epoch.
#pragma once
#include <cstdint>
#include <vector>

namespace mox::data {

// Generator keys are derived, not drawn: a child key from a parent key and one more
// coordinate (splitmix64 mixing), so every random stream is a pure function of its
// coordinates. The first coordinate below a seed names the stream; keep them distinct.
uint64_t derive_key(uint64_t key, uint64_t coordinate);
inline constexpr uint64_t kShuffleStream = 1;   // the epoch order: (seed, 1, epoch)
inline constexpr uint64_t kAugmentStream = 2;   // DataLoader augmentation: (seed, 2, epoch, rank, b)

struct SamplerOptions {
  int64_t rank = 0;         // this process's share, 0 <= rank < world_size
  int64_t world_size = 1;   // number of shares (the data-parallel group's size)
  bool shuffle = true;      // PyTorch's default
  uint64_t seed = 0;        // the same on every rank
  bool drop_last = false;   // cut the dataset's tail to a multiple of world_size instead of padding
};

class DistributedSampler {
 public:
  // `size` items (>= 0). Throws naming the values when world_size < 1 or rank is not in
  // [0, world_size).
  DistributedSampler(int64_t size, SamplerOptions options = {});

  // Choose the epoch whose order indices() returns (>= 0; call it at the start of each epoch
  // on every rank, or every epoch repeats epoch 0's order).
  void set_epoch(int64_t epoch);
  int64_t epoch() const { return epoch_; }

  // This rank's indices for the current epoch, in order: (num_samples()) values in [0, size).
  std::vector<int64_t> indices() const;
  // Items each rank gets per epoch; the same on every rank.
  int64_t num_samples() const { return num_samples_; }
  // num_samples() · world_size: the padded (or cut) length of the epoch's order.
  int64_t total_size() const { return num_samples_ * opt_.world_size; }
  int64_t size() const { return size_; }
  const SamplerOptions& options() const { return opt_; }

 private:
  int64_t size_;
  SamplerOptions opt_;
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace mox::data
