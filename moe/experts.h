// experts.h — Experts: num_local_experts copies of one expert Module, marked as expert parameters.
//
// The experts are built by calling a factory once per expert, then every expert is given the
// first one's parameter values: the copies start identical, as DeepSpeed's deepcopy of the
// expert module does, without any deep-copy machinery. Children are registered "0", "1", ...
// so parameters are named "experts.<i>.<param>" inside an MoE layer. The Experts module
// carries the expert-parallel group name (DeepSpeed's "ep_size_<n>"); expert_parameters()
// walks any model and returns each expert parameter with that group name, which is what an
// optimizer-group splitter and the expert-data-parallel gradient reduction need.
//
// What it is not: it routes nothing (moe_layer.h does) and holds no process group.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace mox::moe {

using ExpertFactory = std::function<std::shared_ptr<nn::Module>()>;

class Experts : public nn::Module {
 public:
  // Throws when num_local_experts < 1, the factory returns null, or two calls build modules
  // with different parameter names/shapes (the error names the expert and the key).
  Experts(const ExpertFactory& make_expert, int64_t num_local_experts, std::string group_name);

  nn::Module& operator[](int64_t i) const;
  int64_t size() const { return int64_t(experts_.size()); }
  const std::string& group_name() const { return group_name_; }
  std::string repr() const override;
  // Also swaps expert int(name) (used to quantize experts that are a bare Linear).
  std::shared_ptr<nn::Module> replace_module(const std::string& name, std::shared_ptr<nn::Module> m) override;

 private:
  std::vector<std::shared_ptr<nn::Module>> experts_;
  std::string group_name_;
};

struct ExpertParameter {
  std::string name;    // full dotted name in the model ("moe.experts.0.weight")
  Tensor param;
  std::string group;   // the owning Experts' group name ("ep_size_1")
};

// Every parameter that lives under an Experts module of `model`, in registration order.
std::vector<ExpertParameter> expert_parameters(const nn::Module& model);

}  // namespace mox::moe
