// adam.cpp — Adam/AdamW: hyper-parameter checks and the per-param call into adam_step.
#include "nn/optim/adam.h"

#include <cmath>

namespace mox::optim {

namespace {

ParamGroup default_group(const NamedTensors& params, const AdamOptions& o) {
  ParamGroup g = make_group("default", params);
  g.lr = o.lr;
  g.beta1 = o.beta1;
  g.beta2 = o.beta2;
  g.eps = o.eps;
  g.weight_decay = o.weight_decay;
  return g;
}

void check_beta(const ParamGroup& g, const char* field, double beta) {
  MOX_CHECK(beta >= 0 && beta < 1, "optimizer group '", g.name, "': ", field,
            " must be in [0, 1), got ", beta);
}

}  // namespace

Adam::Adam(const NamedTensors& params, const AdamOptions& options)
    : Adam(std::vector<ParamGroup>{default_group(params, options)}, false) {}

Adam::Adam(std::vector<ParamGroup> groups) : Adam(std::move(groups), false) {}

Adam::Adam(std::vector<ParamGroup> groups, bool decoupled)
    : Optimizer(std::move(groups)), decoupled_(decoupled) {
  for (const ParamGroup& g : this->groups()) {
    check_lr(g);
    check_beta(g, "beta1", g.beta1);
    check_beta(g, "beta2", g.beta2);
    MOX_CHECK(std::isfinite(g.eps) && g.eps > 0, "optimizer group '", g.name,
              "': eps must be a finite value > 0, got ", g.eps);
    check_non_negative(g, "weight_decay", g.weight_decay);
  }
}

std::vector<std::string> Adam::state_names(const ParamGroup&) const {
  return {"exp_avg", "exp_avg_sq"};
}

void Adam::update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                  ParamState& state) {
  AdamHyper h;
  h.lr = group.lr;
  h.beta1 = group.beta1;
  h.beta2 = group.beta2;
  h.eps = group.eps;
  h.weight_decay = group.weight_decay;
  h.decoupled = decoupled_;
  h.step = state.step;
  backend(param.device()).adam_step(param, grad, state.buffers[0], state.buffers[1], h);
}

AdamW::AdamW(const NamedTensors& params, const AdamWOptions& options)
    : Adam(std::vector<ParamGroup>{default_group(params, options)}, true) {}

AdamW::AdamW(std::vector<ParamGroup> groups) : Adam(std::move(groups), true) {}

}  // namespace mox::optim
