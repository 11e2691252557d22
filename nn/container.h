// container.h — Sequential (chains forward) and ModuleList (holds, no forward).
// Children are registered under their position: "0", "1", ... as in PyTorch.
#pragma once
#include "nn/module.h"

namespace mox::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
    for (auto& m : modules) push_back(m);
  }
  void push_back(std::shared_ptr<Module> m) {
    add_module(std::to_string(layers_.size()), m);
    layers_.push_back(std::move(m));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = x;
    for (auto& m : layers_) h = m->forward(h);
    return h;
  }
  size_t size() const { return layers_.size(); }
  Module& operator[](size_t i) const {
    MOX_CHECK(i < layers_.size(), "Sequential: index ", i, " out of range for ", layers_.size(), " layers");
    return *layers_[i];
  }
  std::string repr() const override { return "Sequential"; }
  std::shared_ptr<Module> replace_module(const std::string& name, std::shared_ptr<Module> m) override {
    std::shared_ptr<Module> old = Module::replace_module(name, m);
    layers_[std::stoul(name)] = std::move(m);   // children are named by position
    return old;
  }

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<Module> m) {
    add_module(std::to_string(items_.size()), m);
    items_.push_back(std::move(m));
  }
  size_t size() const { return items_.size(); }
  Module& operator[](size_t i) const {
    MOX_CHECK(i < items_.size(), "ModuleList: index ", i, " out of range for ", items_.size(), " modules");
    return *items_[i];
  }
  const std::vector<std::shared_ptr<Module>>& items() const { return items_; }
  std::string repr() const override { return "ModuleList"; }
  std::shared_ptr<Module> replace_module(const std::string& name, std::shared_ptr<Module> m) override {
    std::shared_ptr<Module> old = Module::replace_module(name, m);
    items_[std::stoul(name)] = std::move(m);   // children are named by position
    return old;
  }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace mox::nn
