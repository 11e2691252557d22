// conv.cpp — see conv.h.
#include "nn/conv.h"

#include <cmath>

#include "nn/init.h"

namespace mox::nn {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool has_bias, Generator* gen)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p) {
  MOX_CHECK(in > 0 && out > 0 && k > 0, "Conv2d: in_channels=", in, ", out_channels=", out,
            " and kernel_size=", k, " must be positive");
  MOX_CHECK(s > 0 && p >= 0, "Conv2d: stride=", s, " must be positive and padding=", p, " non-negative");
  weight = register_parameter("weight", empty({out, in, k, k}));
  init::kaiming_uniform_(weight, std::sqrt(5.0), gen);
  if (has_bias) {
    bias = register_parameter("bias", empty({out}));
    const double bound = 1.0 / std::sqrt(double(init::fan_in(weight)));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, stride, padding); }

std::string Conv2d::repr() const {
  return str("Conv2d(", in_channels, ", ", out_channels, ", kernel=", kernel_size, ", stride=", stride,
             ", padding=", padding, bias.defined() ? "" : ", bias=false", ")");
}

MaxPool2d::MaxPool2d(int64_t k, int64_t s, int64_t p) : kernel_size(k), stride(s < 0 ? k : s), padding(p) {
  MOX_CHECK(k > 0 && stride > 0 && p >= 0, "MaxPool2d: kernel_size=", k, ", stride=", s,
            ", padding=", p, " out of range");
}

std::string MaxPool2d::repr() const {
  return str("MaxPool2d(kernel=", kernel_size, ", stride=", stride, ", padding=", padding, ")");
}

}  // namespace mox::nn
