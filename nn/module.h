// module.h — Module: the base of every layer, with named registration.
//
// A module owns ordered name→tensor maps for parameters and buffers and an ordered
// name→module map for children. Everything that walks a model — named_parameters(),
// state_dict(), load_state_dict(), to(device), train()/eval() — is driven by those names,
// so checkpoints are keyed "fc1.weight", "layers.0.bias", ... and survive refactors that
// keep the names. Parameters are leaves with requires_grad set.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/functions.h"

namespace mox::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Copies `state` into the live tensors `into` (name → tensor), strictly: every name of `into`
// exactly once and nothing else, each with its tensor's shape and dtype; everything is
// validated before anything is copied (a failed load changes nothing); values are copied onto
// each tensor's device. Errors name the key. Module::load_state_dict is this over state_dict().
void load_named_tensors(const NamedTensors& into, const NamedTensors& state);

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Most layers map one tensor to one; containers and multi-input modules may not.
  virtual Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  // A short name for printing ("Linear(in=400, out=120)").
  virtual std::string repr() const { return "Module"; }

  // Recursive, in registration order, with dotted names.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  NamedTensors named_buffers() const;
  std::vector<std::pair<std::string, Module*>> named_modules() const;   // includes "" → this
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return modules_;
  }
  int64_t num_parameters() const;
  // Swap the registered child `name` for `module` — same name, same place in the registry,
  // so state_dict() keeps its key order — and return the old child; throws naming `name`
  // when there is no such child. Virtual: a module that also holds the child elsewhere (a
  // list, a member) overrides it to update that pointer too, after calling this version.
  // Used by nn::quantize_linears to swap Linear layers for QuantizedLinear.
  virtual std::shared_ptr<Module> replace_module(const std::string& name, std::shared_ptr<Module> module);

  // Parameters and buffers by name (contiguous copies are not made: the live tensors).
  NamedTensors state_dict() const;
  // Strict: every key must exist with the same shape and dtype, and no key may be left
  // over; errors name the key. Everything is validated first, so a failed load changes
  // nothing; then values are copied into the existing tensors.
  void load_state_dict(const NamedTensors& state);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Move every parameter and buffer (keeps names and requires_grad).
  void to(Device device);
  // Convert every floating-point parameter and buffer (and gradient) to `dtype` in place,
  // e.g. to(DType::f64) for a gradcheck; integer buffers are left alone, and so are the tensors
  // `keep` selects (optim::MixedPrecision keeps the fp32 routers' as they are).
  void to(DType dtype, const std::function<bool(const Tensor&)>& keep = {});
  void zero_grad();

  // Printed tree of the module and its children.
  std::string to_string() const;

 protected:
  // Returns a handle sharing the registered tensor, to keep as a member (`weight_ = ...`).
  // to(device) swaps storage inside the shared TensorImpl, so such handles stay valid.
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_module(name, module);
    return module;
  }
  void add_module(const std::string& name, std::shared_ptr<Module> module);
  bool training_ = true;

 private:
  void collect(const std::string& prefix, NamedTensors& out, bool params) const;
  bool has_member(const std::string& name) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> modules_;
};

}  // namespace mox::nn
