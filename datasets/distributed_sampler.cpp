// distributed_sampler.cpp — Generator key derivation, the epoch order, padding or cutting,
// and the strided share (see distributed_sampler.h).
#include "datasets/distributed_sampler.h"

#include <numeric>

#include "tensor/error.h"
#include "tensor/random.h"

namespace mox::data {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t derive_key(uint64_t key, uint64_t coordinate) { return splitmix64(key ^ splitmix64(coordinate)); }

DistributedSampler::DistributedSampler(int64_t size, SamplerOptions options) : size_(size), opt_(options) {
  MOX_CHECK(size_ >= 0, "DistributedSampler: the dataset size must be >= 0, got ", size_);
  MOX_CHECK(opt_.world_size >= 1, "DistributedSampler: world_size must be >= 1, got ", opt_.world_size);
  MOX_CHECK(opt_.rank >= 0 && opt_.rank < opt_.world_size, "DistributedSampler: rank ", opt_.rank,
            " is not in [0, world_size=", opt_.world_size, "); pass this process's rank in the data-parallel group");
  // PyTorch: drop_last → ceil((N - W) / W) = floor(N / W) when W does not divide N; else ceil(N / W).
  num_samples_ = opt_.drop_last ? size_ / opt_.world_size : (size_ + opt_.world_size - 1) / opt_.world_size;
}

void DistributedSampler::set_epoch(int64_t epoch) {
  MOX_CHECK(epoch >= 0, "DistributedSampler: epoch must be >= 0, got ", epoch);
  epoch_ = epoch;
}

std::vector<int64_t> DistributedSampler::indices() const {
  std::vector<int64_t> order;   // (size) the epoch's order
  if (opt_.shuffle) {
    Generator gen(derive_key(derive_key(opt_.seed, kShuffleStream), uint64_t(epoch_)));
    order = gen.permutation(size_);
  } else {
    order.resize(size_t(size_));
    std::iota(order.begin(), order.end(), int64_t(0));
  }
  std::vector<int64_t> mine(static_cast<size_t>(num_samples_));   // (num_samples)
  for (int64_t i = 0; i < num_samples_; ++i)          // positions past size wrap to the start
    mine[size_t(i)] = order[size_t((opt_.rank + i * opt_.world_size) % size_)];
  return mine;
}

}  // namespace mox::data
