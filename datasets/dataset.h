// dataset.h — Example and the abstract Dataset every loader reads from.
//
// A Dataset is an indexable, immutable collection of labelled images: size(), get(i),
// class_names(). get() is const and must be safe to call from several threads at once
// (the DataLoader's prefetch thread calls it while the caller may too). Images are u8
// (C, H, W), contiguous, on the CPU; turning them into float batches (normalisation,
// augmentation, batching) is the DataLoader's job, not the dataset's.
// Not here: text datasets, tokenizers, anything that decodes on the GPU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mox::data {

struct Example {
  Tensor image;        // (C, H, W) u8, contiguous, CPU. May be a view of the dataset's own
                       // buffer (Cifar10): treat it as read-only, clone() before writing.
  int64_t label = 0;   // index into class_names()
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Example i, 0 <= i < size(); throws naming i and size() otherwise. Thread-safe.
  virtual Example get(int64_t i) const = 0;
  // Class names in label order.
  virtual std::vector<std::string> class_names() const = 0;
};

}  // namespace mox::data
