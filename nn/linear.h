// linear.h — Linear: y = x·Wᵀ + b over the last dim; W (out, in), b (out).
#pragma once
#include "nn/module.h"

namespace mox::nn {

class Linear : public Module {
 public:
  // PyTorch's default initialisation (see init.h); `gen` null = the default generator.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;   // (..., in) → (..., out)
  std::string repr() const override;

  int64_t in_features, out_features;
  Tensor weight;   // (out, in)
  Tensor bias;     // (out), undefined when bias=false
};

}  // namespace mox::nn
