// optimizer.h — Optimizer: the base of SGD and Adam/AdamW, over named parameter groups.
//
// An optimizer owns a list of ParamGroups (each with its own hyper-parameters) and, per
// parameter, a step count and the state buffers its update needs (momentum_buffer;
// exp_avg, exp_avg_sq). Buffers are allocated once, on a parameter's first update, so
// step() allocates nothing afterwards; a parameter whose grad is undefined is skipped, as
// in PyTorch. state_dict()/load_state_dict() save and restore that state exactly, keyed by
// group and parameter name, so a checkpointed run continues bitwise-identically.
//
// Not here: the update math (tensor/optim_math.h), the concrete optimizers (sgd.h, adam.h),
// gradient clipping (clip_grad.h), learning-rate schedules (lr_scheduler.h).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"

namespace mox::optim {

using nn::NamedTensors;

// A set of parameters sharing hyper-parameters. Each optimizer reads the fields it uses
// (SGD: lr, weight_decay, momentum, dampening, nesterov; Adam/AdamW: lr, weight_decay,
// beta1, beta2, eps) and validates them when it is built. Defaults follow PyTorch.
struct ParamGroup {
  std::string name;                       // unique, non-empty, no '.': the state-dict key prefix
  std::vector<Tensor> params;
  std::vector<std::string> param_names;   // one per param; empty → "0", "1", ...
  double lr = 1e-3;
  double weight_decay = 0;
  bool moe = false;                       // expert parameters (reduced over the expert-data-parallel group)
  // SGD
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  // Adam / AdamW
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

// A group named `name` holding `params` under their names; hyper-parameters at their defaults.
ParamGroup make_group(const std::string& name, const NamedTensors& params);

// What state_dict() returns and load_state_dict() takes.
//   tensors: "<group>.<param>.<buffer>" → the live state buffer (e.g. "default.fc1.weight.exp_avg")
//   meta:    "optimizer" → "sgd" | "adam" | "adamw"
//            "<group>.lr" → the group's current lr (17 significant digits: exact)
//            "<group>.<param>.step" → how many updates the param has had (absent: none yet)
struct OptimizerState {
  NamedTensors tensors;
  std::map<std::string, std::string> meta;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // "sgd", "adam", "adamw": recorded in the state and checked when it is loaded.
  virtual const char* name() const = 0;

  // Update every parameter that has a gradient. Grads must match their param's shape,
  // dtype and device (errors name the group and param).
  void step();
  // Set every defined gradient to zero in place (keeps the grad buffers).
  void zero_grad();

  const std::vector<ParamGroup>& groups() const { return groups_; }
  size_t num_groups() const { return groups_.size(); }
  // The group's current lr, and the lr it was built with (LR schedules keep the ratios
  // between groups' initial lrs).
  double lr(size_t group) const;
  double initial_lr(size_t group) const;
  // Throws naming the group when lr is negative or not finite.
  void set_lr(size_t group, double lr);

  OptimizerState state_dict() const;
  // Strict: the optimizer kind must match; every key must name a group/param of this
  // optimizer with buffers of the param's shape and dtype; nothing may be left over. The
  // whole state is validated before anything changes. Values are copied onto the params'
  // devices. Params without a "step" entry restart from no state.
  void load_state_dict(const OptimizerState& state);

 protected:
  // Checks the groups' structure (names, params) — not the hyper-parameters, which the
  // concrete optimizer validates in its constructor.
  explicit Optimizer(std::vector<ParamGroup> groups);

  struct ParamState {
    int64_t step = 0;              // updates applied so far (1 during the first update)
    std::vector<Tensor> buffers;   // named by state_names(group); allocated on first update
  };
  // Names of the per-param buffers a group needs ({"momentum_buffer"}, {"exp_avg", ...}).
  virtual std::vector<std::string> state_names(const ParamGroup& group) const = 0;
  // Apply one update; state.step is already incremented and the buffers allocated.
  virtual void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                      ParamState& state) = 0;
  // "group 'default' param 'fc1.weight'" for error messages.
  std::string where(size_t group, size_t param) const;

 private:
  std::vector<ParamGroup> groups_;
  std::vector<double> initial_lrs_;
  std::vector<std::vector<ParamState>> state_;   // [group][param]
};

// Shared hyper-parameter checks; each throws naming the group, the field and the value.
void check_lr(const ParamGroup& group);
void check_non_negative(const ParamGroup& group, const char* field, double value);

}  // namespace mox::optim
