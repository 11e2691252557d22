// clip_grad.cpp — clip_grad_norm: one double-precision global norm, then an in-place scale.
#include "nn/optim/clip_grad.h"

#include <cmath>

#include "tensor/ops.h"

namespace mox::optim {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  MOX_CHECK(std::isfinite(max_norm) && max_norm > 0,
            "clip_grad_norm: max_norm must be a finite value > 0, got ", max_norm);
  double sum_sq = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    // Squares in f32 (16-bit grads widened first: their squares overflow) or f64, summed in
    // double by the backend's reduction and rounded to the grad's dtype per tensor (an f32
    // grad beyond ~1e19 gives an infinite norm: no clipping, the caller's non-finite case).
    if (g.dtype() == DType::f16 || g.dtype() == DType::bf16) g = raw::to_dtype(g, DType::f32);
    sum_sq += raw::sum(raw::unary(UnaryOp::square, g)).to(DType::f64).item<double>();
  }
  const double norm = std::sqrt(sum_sq);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1)
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) raw::mul_(g, coef);
    }
  return norm;
}

}  // namespace mox::optim
