// net.h — the Net of the DeepSpeed CIFAR-10 tutorial (and of PyTorch's "Training a
// classifier"): conv 3→6 5×5, max-pool 2, conv 6→16 5×5, max-pool 2, fc 400→120→84→10,
// ReLU between. With MoE (as DeepSpeed's cifar10_deepspeed.py): fc3 becomes a list of MoE
// layers (hidden 84, expert Linear(84, 84)), one per entry of num_experts (a pyramid when
// they differ), followed by a new fc4 84→10; no activation between them, as there.
#pragma once
#include <vector>

#include "moe/moe_layer.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "nn/linear.h"

namespace mox::cifar10 {

struct MoeOptions {
  std::vector<int64_t> num_experts;   // one MoE layer per entry
  moe::GateConfig gate;               // k, capacities, noise, ... (num_experts set per layer)
  int64_t ep_size = 1;
  bool use_residual = false;          // PR-MoE ("--mlp-type residual")
};

class Net : public nn::Module {
 public:
  // moe null: the dense tutorial Net.
  explicit Net(const MoeOptions* moe = nullptr) {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(3, 6, 5));
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2, 2));
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(6, 16, 5));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(16 * 5 * 5, 120));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(120, 84));
    if (!moe) {
      fc3 = register_module("fc3", std::make_shared<nn::Linear>(84, 10));
      return;
    }
    moe_layers = register_module("moe_layers", std::make_shared<nn::ModuleList>());
    for (size_t i = 0; i < moe->num_experts.size(); ++i) {
      moe::MoEConfig cfg;
      cfg.gate = moe->gate;
      cfg.gate.num_experts = moe->num_experts[i];
      cfg.gate.seed = moe->gate.seed + i;   // each layer's gate draws its own stream
      cfg.ep_size = moe->ep_size;
      cfg.use_residual = moe->use_residual;
      moe_layers->push_back(std::make_shared<moe::MoE>(
          84, [] { return std::make_shared<nn::Linear>(84, 84); }, cfg));
    }
    fc4 = register_module("fc4", std::make_shared<nn::Linear>(84, 10));
  }

  Tensor forward(const Tensor& x) override {              // x: (B, 3, 32, 32)
    Tensor h = pool->forward(relu(conv1->forward(x)));    // (B, 6, 14, 14)
    h = pool->forward(relu(conv2->forward(h)));           // (B, 16, 5, 5)
    h = h.flatten(1);                                      // (B, 400)
    h = relu(fc1->forward(h));                             // (B, 120)
    h = relu(fc2->forward(h));                             // (B, 84)
    if (!moe_layers) return fc3->forward(h);               // (B, 10) logits
    for (size_t i = 0; i < moe_layers->size(); ++i) h = layer(i).forward(h);   // (B, 84)
    return fc4->forward(h);                                // (B, 10) logits
  }
  std::string repr() const override { return moe_layers ? "Net(MoE)" : "Net"; }

  size_t num_moe_layers() const { return moe_layers ? moe_layers->size() : 0; }
  moe::MoE& layer(size_t i) const { return static_cast<moe::MoE&>((*moe_layers)[i]); }
  std::vector<const moe::MoE*> moe_layer_list() const {
    std::vector<const moe::MoE*> out;
    for (size_t i = 0; i < num_moe_layers(); ++i) out.push_back(&layer(i));
    return out;
  }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::Linear> fc1, fc2, fc3, fc4;
  std::shared_ptr<nn::ModuleList> moe_layers;
};

}  // namespace mox::cifar10
