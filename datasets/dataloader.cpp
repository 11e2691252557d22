// dataloader.cpp — batch assembly and the prefetch thread; the epoch order and sharding
// come from DistributedSampler (see dataloader.h).
#include "datasets/dataloader.h"

#include <algorithm>
#include <utility>

#include "tensor/random.h"

namespace mox::data {
namespace {

void check_image(const Tensor& image, int64_t index) {
  MOX_CHECK(image.defined() && image.dim() == 3 && image.dtype() == DType::u8 &&
                image.device().is_cpu() && image.is_contiguous(),
            "DataLoader: dataset example ", index,
            " is not a contiguous (C, H, W) u8 CPU image: ",
            image.defined() ? describe(image) : std::string("undefined tensor"));
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), opt_(std::move(options)), table_(opt_.normalize),
      sampler_(0) {   // an empty placeholder until the options are checked
  MOX_CHECK(dataset_ != nullptr, "DataLoader: dataset is null");
  MOX_CHECK(opt_.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", opt_.batch_size);
  MOX_CHECK(opt_.prefetch >= 0, "DataLoader: prefetch must be >= 0, got ", opt_.prefetch);
  MOX_CHECK(opt_.world_size >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world_size,
            "DataLoader: need 0 <= rank < world_size, got rank ", opt_.rank, " of world_size ",
            opt_.world_size);
  MOX_CHECK(opt_.augment.crop_padding >= 0, "DataLoader: augment.crop_padding must be >= 0, got ",
            opt_.augment.crop_padding);
  const int64_t n = dataset_->size();
  MOX_CHECK(n > 0, "DataLoader: the dataset is empty");
  // Padding mode always: every rank gets ceil(n / world_size) samples. The loader's own
  // drop_last acts on batches below, not on the sampler.
  sampler_ = DistributedSampler(n, {opt_.rank, opt_.world_size, opt_.shuffle, opt_.seed,
                                    /*drop_last=*/false});
  const int64_t per_rank = sampler_.num_samples();
  batches_ = opt_.drop_last ? per_rank / opt_.batch_size
                            : (per_rank + opt_.batch_size - 1) / opt_.batch_size;
  MOX_CHECK(batches_ > 0, "DataLoader: batch_size ", opt_.batch_size, " exceeds the ", per_rank,
            " samples this rank gets per epoch and drop_last is set: an epoch would be empty");
}

DataLoader::~DataLoader() { stop_worker(); }

void DataLoader::start_epoch(int64_t epoch) { restore(epoch, 0); }

void DataLoader::restore(int64_t epoch, int64_t batch) {
  MOX_CHECK(epoch >= 0, "DataLoader: epoch must be >= 0, got ", epoch);
  MOX_CHECK(batch >= 0 && batch <= batches_, "DataLoader: cannot restore to batch ", batch,
            " of an epoch with ", batches_, " batches");
  stop_worker();

  sampler_.set_epoch(epoch);
  indices_ = sampler_.indices();   // (samples_per_epoch())

  epoch_ = epoch;
  batch_ = batch;
  if (opt_.prefetch > 0 && batch_ < batches_) start_worker();
}

LoaderState DataLoader::state() const { return {std::max<int64_t>(epoch_, 0), batch_}; }

Batch DataLoader::build(int64_t b) const {
  const int64_t begin = b * opt_.batch_size;
  const int64_t count = std::min(opt_.batch_size, samples_per_epoch() - begin);
  uint64_t key = derive_key(opt_.seed, kAugmentStream);   // (seed, augment, epoch, rank, b)
  key = derive_key(derive_key(derive_key(key, uint64_t(epoch_)), uint64_t(opt_.rank)), uint64_t(b));
  Generator gen(key);

  const int64_t first_index = indices_[size_t(begin)];
  Example first = dataset_->get(first_index);
  check_image(first.image, first_index);
  const Shape chw = first.image.shape();   // (C, H, W) of every image in the batch
  table_.check_channels(chw[0], str("DataLoader: dataset example ", first_index));

  Batch out;
  out.images = empty({count, chw[0], chw[1], chw[2]}, DType::f32);   // (B, C, H, W)
  out.labels = empty({count}, DType::i64);                           // (B)
  float* images = out.images.data<float>();
  int64_t* labels = out.labels.data<int64_t>();
  const int64_t image_numel = chw.numel();
  for (int64_t j = 0; j < count; ++j) {
    const int64_t index = indices_[size_t(begin + j)];
    Example ex = j == 0 ? std::move(first) : dataset_->get(index);
    if (j > 0) {
      check_image(ex.image, index);
      MOX_CHECK(ex.image.shape() == chw, "DataLoader: dataset example ", index, " is ",
                ex.image.shape(), " but example ", first_index, " in the same batch is ", chw,
                "; images of one batch must have one size (resize them first)");
    }
    labels[j] = ex.label;
    transform_into(ex.image, draw_augment(opt_.augment, gen), table_, images + j * image_numel);
  }
  return out;
}

bool DataLoader::next(Batch& out) {
  MOX_CHECK(epoch_ >= 0, "DataLoader::next: call start_epoch(epoch) or restore() first");
  if (batch_ >= batches_) return false;
  if (opt_.prefetch == 0) {
    out = build(batch_);
    ++batch_;
    return true;
  }
  if (!worker_.joinable()) start_worker();   // after an error: retry from this batch
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !queue_.empty(); });
    slot = std::move(queue_.front());
    queue_.pop_front();
  }
  cv_.notify_all();
  if (slot.error) {
    stop_worker();   // it stopped at the failed batch
    std::rethrow_exception(slot.error);
  }
  out = std::move(slot.batch);
  if (++batch_ == batches_) stop_worker();   // it has finished the epoch
  return true;
}

void DataLoader::start_worker() {
  stop_ = false;
  queue_.clear();
  worker_ = std::thread(&DataLoader::worker_loop, this, batch_);
}

void DataLoader::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
  queue_.clear();
}

void DataLoader::worker_loop(int64_t first) {
  for (int64_t b = first; b < batches_; ++b) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || int64_t(queue_.size()) < opt_.prefetch; });
      if (stop_) return;
    }
    Slot slot;
    try {
      slot.batch = build(b);
    } catch (...) {
      slot.error = std::current_exception();
    }
    const bool failed = slot.error != nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(slot));
    }
    cv_.notify_all();
    if (failed) return;
  }
}

}  // namespace mox::data
