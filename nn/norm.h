// norm.h — LayerNorm and RMSNorm over the last dim, with learnable per-feature scale.
//
// LayerNorm(dim, eps, bias): (x − mean)/√(var + eps)·weight + bias (biased variance), as
// torch.nn.LayerNorm; bias=false drops the "bias" parameter (nanoGPT's option). RMSNorm(dim,
// eps): x/√(mean(x²) + eps)·weight, as Llama. weight starts at 1, bias at 0. Both are one
// fused node (autograd/functions.h: layer_norm, rms_norm). Not here: normalising over
// several trailing dims, running statistics (that is BatchNorm).
#pragma once
#include "nn/module.h"

namespace mox::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true);
  Tensor forward(const Tensor& x) override;   // (..., dim) → (..., dim)
  std::string repr() const override;

  int64_t dim;
  double eps;
  Tensor weight;   // (dim)
  Tensor bias;     // (dim), undefined when bias=false
};

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;   // (..., dim) → (..., dim)
  std::string repr() const override;

  int64_t dim;
  double eps;
  Tensor weight;   // (dim)
};

}  // namespace mox::nn
