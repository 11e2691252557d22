// linear.cpp — see linear.h.
#include "nn/linear.h"

#include <cmath>

#include "nn/init.h"

namespace mox::nn {

Linear::Linear(int64_t in, int64_t out, bool has_bias, Generator* gen) : in_features(in), out_features(out) {
  MOX_CHECK(in > 0 && out > 0, "Linear: in_features=", in, " and out_features=", out, " must be positive");
  weight = register_parameter("weight", empty({out, in}));
  init::kaiming_uniform_(weight, std::sqrt(5.0), gen);
  if (has_bias) {
    bias = register_parameter("bias", empty({out}));
    const double bound = 1.0 / std::sqrt(double(in));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Linear::Linear(const Tensor& shared_weight, bool has_bias, Generator* gen) : weight(shared_weight) {
  MOX_CHECK(shared_weight.defined() && shared_weight.dim() == 2 && shared_weight.requires_grad(),
            "Linear: a shared weight must be a registered (out, in) parameter, got ",
            shared_weight.defined() ? describe(shared_weight) : std::string("an undefined tensor"));
  out_features = weight.size(0);
  in_features = weight.size(1);
  if (has_bias) {
    bias = register_parameter("bias", empty({out_features}, weight.dtype(), weight.device()));
    const double bound = 1.0 / std::sqrt(double(in_features));
    init::uniform_(bias, -bound, bound, gen);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

std::string Linear::repr() const {
  return str("Linear(in=", in_features, ", out=", out_features, bias.defined() ? "" : ", bias=false", ")");
}

}  // namespace mox::nn
