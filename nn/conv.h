// conv.h — Conv2d and MaxPool2d over NCHW tensors (square kernels, symmetric padding).
#pragma once
#include "nn/module.h"

namespace mox::nn {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
         int64_t padding = 0, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;   // (N, C, H, W) → (N, O, H', W')
  std::string repr() const override;

  int64_t in_channels, out_channels, kernel_size, stride, padding;
  Tensor weight;   // (O, C, K, K)
  Tensor bias;     // (O)
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = -1, int64_t padding = 0);
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_size, stride, padding); }
  std::string repr() const override;

  int64_t kernel_size, stride, padding;   // stride −1 = kernel_size
};

}  // namespace mox::nn
