// adam.h — Adam (L2 penalty added to the gradient) and AdamW (decoupled weight decay).
//
// PyTorch's torch.optim.Adam and torch.optim.AdamW without amsgrad (math in
// tensor/optim_math.h): Adam adds wd·p to the gradient; AdamW first multiplies p by
// (1 - lr·wd). Then m = lerp(m, g, 1-β1), v = β2·v + (1-β2)·g², and with t the param's own
// step count, p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps). State-dict buffers:
// "exp_avg", "exp_avg_sq" (plus the step count in the meta). Not here: amsgrad, maximize,
// capturable/fused variants.
#pragma once
#include "nn/optim/optimizer.h"

namespace mox::optim {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};

// PyTorch's AdamW default weight decay is 1e-2.
struct AdamWOptions : AdamOptions {
  AdamWOptions() { weight_decay = 1e-2; }
};

class Adam : public Optimizer {
 public:
  // One group named "default" holding `params` (e.g. module.named_parameters()).
  explicit Adam(const NamedTensors& params, const AdamOptions& options = {});
  // Explicit groups, each with its own lr, weight_decay, beta1, beta2, eps.
  explicit Adam(std::vector<ParamGroup> groups);

  const char* name() const override { return decoupled_ ? "adamw" : "adam"; }

 protected:
  Adam(std::vector<ParamGroup> groups, bool decoupled);
  std::vector<std::string> state_names(const ParamGroup& group) const override;
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
              ParamState& state) override;

 private:
  bool decoupled_;
};

class AdamW final : public Adam {
 public:
  explicit AdamW(const NamedTensors& params, const AdamWOptions& options = {});
  explicit AdamW(std::vector<ParamGroup> groups);
};

}  // namespace mox::optim
