// dataloader.h — epochs of shuffled, sharded, normalised, augmented batches from a Dataset.
//
//   DataLoader loader(dataset, opts);
//   for (int64_t e = 0; e < epochs; ++e) {
//     loader.start_epoch(e);
//     Batch b;
//     while (loader.next(b)) { ... b.images (B, C, H, W) f32, b.labels (B) i64 ... }
//   }
//
// Determinism. Everything a batch holds is a pure function of (seed, epoch, rank, batch
// index): the epoch's order is a permutation drawn from a Generator keyed by (seed, epoch),
// and batch b's augmentation draws come from a Generator keyed by (seed, epoch, rank, b).
// So prefetch on or off gives bitwise-identical batches, and restore(epoch, b) continues a
// run exactly where state() said it was, without replaying the epoch.
//
// Sharding (distributed data parallel). Each epoch's indices come from a DistributedSampler
// (datasets/distributed_sampler.h) in padding mode: the epoch's order is padded by wrapping
// around to its start until its length is a multiple of world_size, then rank r takes
// positions r, r + world_size, r + 2·world_size, ... Every rank gets ceil(N / world_size)
// samples and hence the same number of batches; every sample is seen at least once per
// epoch, and at most world_size - 1 samples twice. LoaderOptions::drop_last is not the
// sampler's drop_last (cut the dataset's tail): it drops this rank's last partial batch.
//
// Prefetch. With prefetch = K > 0 a background thread builds batches in order into a queue
// of at most K. An exception while building a batch (a corrupt image, mixed image sizes) is
// re-thrown by next() at that batch's turn; calling next() again retries that batch. The
// thread is stopped and joined when an epoch is abandoned (start_epoch/restore midway) and
// in the destructor. A DataLoader is used by one thread at a time.
// Not here: multi-process loading, GPU upload, variable-size batching (resize first).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/distributed_sampler.h"
#include "datasets/transforms.h"

namespace mox::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = false;
  bool drop_last = false;   // drop this rank's last, partial batch (the sampler always pads)
  uint64_t seed = 0;        // keys the shuffle and the augmentation
  int64_t prefetch = 2;     // batches queued by a background thread; 0 = build inside next()
  int64_t rank = 0;         // this process's shard, 0 <= rank < world_size
  int64_t world_size = 1;
  Normalize normalize;      // per channel: (x / 255 - mean) / std
  Augment augment;          // random crop / flip; leave off for evaluation
};

struct Batch {
  Tensor images;   // (B, C, H, W) f32
  Tensor labels;   // (B) i64
};

// Where a loader is: the next batch next() returns is `batch` of `epoch`.
struct LoaderState {
  int64_t epoch = 0;
  int64_t batch = 0;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Batches this rank gets per epoch (the same on every rank).
  int64_t batches_per_epoch() const { return batches_; }
  // Samples this rank gets per epoch: ceil(dataset size / world_size).
  int64_t samples_per_epoch() const { return sampler_.num_samples(); }

  // Begin epoch `epoch` (>= 0) at its first batch, abandoning any epoch in progress.
  void start_epoch(int64_t epoch);
  // Begin epoch `epoch` at batch `batch` (0 <= batch <= batches_per_epoch()).
  void restore(int64_t epoch, int64_t batch);
  LoaderState state() const;
  // The next batch of the epoch into `out`; false when the epoch is exhausted.
  bool next(Batch& out);

  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return opt_; }

 private:
  struct Slot {   // one queued result of the prefetch thread
    Batch batch;
    std::exception_ptr error;
  };

  Batch build(int64_t b) const;   // reads only what is fixed during an epoch
  void start_worker();
  void stop_worker();
  void worker_loop(int64_t first);

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions opt_;
  NormalizeTable table_;
  DistributedSampler sampler_;      // padding mode (its drop_last off); set_epoch in restore
  int64_t batches_ = 0;
  int64_t epoch_ = -1;              // -1 until start_epoch/restore
  int64_t batch_ = 0;               // consumer position within the epoch
  std::vector<int64_t> indices_;    // (samples_per_epoch()) this rank's indices, epoch order

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Slot> queue_;          // at most opt_.prefetch
  bool stop_ = false;
};

}  // namespace mox::data
