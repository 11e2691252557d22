// linear.h — Linear: y = x·Wᵀ + b over the last dim; W (out, in), b (out).
#pragma once
#include "nn/module.h"

namespace mox::nn {

class Linear : public Module {
 public:
  // PyTorch's default initialisation (see init.h); `gen` null = the default generator.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  // Weight tying: use `shared_weight` (out, in), a parameter registered by another module
  // (e.g. an Embedding's weight as a language model's output head). It is not registered
  // here, so state_dict() and named_parameters() list it once, under its owner's name, and
  // its gradient sums both uses. The bias, if any, is this module's own "bias".
  explicit Linear(const Tensor& shared_weight, bool bias = false, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;   // (..., in) → (..., out)
  std::string repr() const override;

  int64_t in_features, out_features;
  Tensor weight;   // (out, in)
  Tensor bias;     // (out), undefined when bias=false
};

}  // namespace mox::nn
