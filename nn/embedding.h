// embedding.h — Embedding: a lookup table of num_embeddings vectors of size dim.
//
// forward(ids): i64 ids of any shape → (..., dim); an id outside [0, num_embeddings) is an
// error naming the id, its position and the vocabulary size. The weight starts N(0, 0.02)
// (GPT-2's initialisation, not PyTorch's N(0, 1)). For weight tying, give the same tensor
// to an output Linear (nn/linear.h, Linear(shared_weight)): the parameter stays registered
// here only. Not here: padding_idx, max_norm, sparse gradients.
#pragma once
#include "nn/module.h"

namespace mox::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator* gen = nullptr);
  Tensor forward(const Tensor& ids) override;   // (...) i64 → (..., dim)
  std::string repr() const override;

  int64_t num_embeddings, dim;
  Tensor weight;   // (num_embeddings, dim)
};

}  // namespace mox::nn
