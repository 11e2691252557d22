// norm.cpp — see norm.h.
#include "nn/norm.h"

namespace mox::nn {

LayerNorm::LayerNorm(int64_t dim, double eps, bool has_bias) : dim(dim), eps(eps) {
  MOX_CHECK(dim > 0, "LayerNorm: dim=", dim, " must be positive");
  MOX_CHECK(eps >= 0, "LayerNorm: eps=", eps, " must be non-negative");
  weight = register_parameter("weight", ones({dim}));
  if (has_bias) bias = register_parameter("bias", zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, weight, bias, eps); }

std::string LayerNorm::repr() const {
  return str("LayerNorm(", dim, ", eps=", eps, bias.defined() ? "" : ", bias=false", ")");
}

RMSNorm::RMSNorm(int64_t dim, double eps) : dim(dim), eps(eps) {
  MOX_CHECK(dim > 0, "RMSNorm: dim=", dim, " must be positive");
  MOX_CHECK(eps >= 0, "RMSNorm: eps=", eps, " must be non-negative");
  weight = register_parameter("weight", ones({dim}));
}

Tensor RMSNorm::forward(const Tensor& x) { return rms_norm(x, weight, eps); }

std::string RMSNorm::repr() const { return str("RMSNorm(", dim, ", eps=", eps, ")"); }

}  // namespace mox::nn
