// sgd.h — stochastic gradient descent with momentum, dampening, Nesterov and weight decay.
//
// PyTorch's torch.optim.SGD, step for step (math in tensor/optim_math.h):
//   d = g + wd·p;  buf = d on a param's first update, else momentum·buf + (1-dampening)·d;
//   d = d + momentum·buf (nesterov) or buf;  p -= lr·d.
// The momentum buffer ("momentum_buffer" in the state dict) exists only when momentum ≠ 0.
// Not here: the maximize and foreach variants of PyTorch.
#pragma once
#include "nn/optim/optimizer.h"

namespace mox::optim {

struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

class Sgd final : public Optimizer {
 public:
  // One group named "default" holding `params` (e.g. module.named_parameters()).
  explicit Sgd(const NamedTensors& params, const SgdOptions& options = {});
  // Explicit groups, each with its own lr, weight_decay, momentum, dampening, nesterov.
  explicit Sgd(std::vector<ParamGroup> groups);

  const char* name() const override { return "sgd"; }

 protected:
  std::vector<std::string> state_names(const ParamGroup& group) const override;
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
              ParamState& state) override;
};

}  // namespace mox::optim
