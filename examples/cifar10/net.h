// net.h — the Net of the DeepSpeed CIFAR-10 tutorial (and of PyTorch's "Training a
// classifier"): conv 3→6 5×5, max-pool 2, conv 6→16 5×5, max-pool 2, fc 400→120→84→10,
// ReLU between. This is its dense path; the MoE variant replaces fc3.
#pragma once
#include "nn/conv.h"
#include "nn/linear.h"

namespace mox::cifar10 {

class Net : public nn::Module {
 public:
  Net() {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(3, 6, 5));
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2, 2));
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(6, 16, 5));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(16 * 5 * 5, 120));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(120, 84));
    fc3 = register_module("fc3", std::make_shared<nn::Linear>(84, 10));
  }

  Tensor forward(const Tensor& x) override {              // x: (B, 3, 32, 32)
    Tensor h = pool->forward(relu(conv1->forward(x)));    // (B, 6, 14, 14)
    h = pool->forward(relu(conv2->forward(h)));           // (B, 16, 5, 5)
    h = h.flatten(1);                                      // (B, 400)
    h = relu(fc1->forward(h));                             // (B, 120)
    h = relu(fc2->forward(h));                             // (B, 84)
    return fc3->forward(h);                                // (B, 10) logits
  }
  std::string repr() const override { return "Net"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::Linear> fc1, fc2, fc3;
};

}  // namespace mox::cifar10
