// sgd.cpp — Sgd: hyper-parameter checks and the per-param call into the backend's sgd_step.
#include "nn/optim/sgd.h"

namespace mox::optim {

namespace {

ParamGroup default_group(const NamedTensors& params, const SgdOptions& o) {
  ParamGroup g = make_group("default", params);
  g.lr = o.lr;
  g.momentum = o.momentum;
  g.dampening = o.dampening;
  g.weight_decay = o.weight_decay;
  g.nesterov = o.nesterov;
  return g;
}

}  // namespace

Sgd::Sgd(const NamedTensors& params, const SgdOptions& options)
    : Sgd(std::vector<ParamGroup>{default_group(params, options)}) {}

Sgd::Sgd(std::vector<ParamGroup> groups) : Optimizer(std::move(groups)) {
  for (const ParamGroup& g : this->groups()) {
    check_lr(g);
    check_non_negative(g, "momentum", g.momentum);
    check_non_negative(g, "dampening", g.dampening);
    check_non_negative(g, "weight_decay", g.weight_decay);
    MOX_CHECK(!g.nesterov || (g.momentum > 0 && g.dampening == 0), "optimizer group '", g.name,
              "': nesterov needs momentum > 0 and dampening 0, got momentum ", g.momentum,
              " and dampening ", g.dampening);
  }
}

std::vector<std::string> Sgd::state_names(const ParamGroup& group) const {
  if (group.momentum == 0) return {};
  return {"momentum_buffer"};
}

void Sgd::update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                 ParamState& state) {
  SgdHyper h;
  h.lr = group.lr;
  h.momentum = group.momentum;
  h.dampening = group.dampening;
  h.weight_decay = group.weight_decay;
  h.nesterov = group.nesterov;
  h.first_step = state.step == 1;
  const Tensor* buf = group.momentum != 0 ? &state.buffers[0] : nullptr;
  backend(param.device()).sgd_step(param, grad, buf, h);
}

}  // namespace mox::optim
