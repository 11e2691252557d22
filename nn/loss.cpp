// loss.cpp — see loss.h.
#include "nn/loss.h"

namespace mox::nn {

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double eps) {
  MOX_CHECK(logits.dim() == 2, "cross_entropy: logits must be (N, C), got ", describe(logits),
            "; flatten leading dims first");
  MOX_CHECK(target.dim() == 1 && target.size(0) == logits.size(0), "cross_entropy: target ",
            describe(target), " must be (N) for logits ", describe(logits));
  MOX_CHECK(target.dtype() == DType::i64, "cross_entropy: target must be i64 class indices, got ",
            describe(target));
  MOX_CHECK(is_floating(logits.dtype()), "cross_entropy: logits must be floating point, got ",
            describe(logits));
  MOX_CHECK(eps >= 0 && eps <= 1, "cross_entropy: label_smoothing=", eps, " must be in [0, 1]");
  const int64_t N = logits.size(0), C = logits.size(1);
  std::vector<int64_t> t = target.to_vector<int64_t>();
  std::vector<double> weight(static_cast<size_t>(N));
  std::vector<int64_t> safe(static_cast<size_t>(N));
  double total_weight = 0;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t ti = t[size_t(i)];
    const bool ignored = ti == ignore_index;
    MOX_CHECK(ignored || (ti >= 0 && ti < C), "cross_entropy: target ", ti, " at position ", i,
              " is out of range for ", C, " classes (expected 0 ≤ target < ", C, " or ignore_index ",
              ignore_index, ")");
    weight[size_t(i)] = ignored ? 0.0 : 1.0;
    safe[size_t(i)] = ignored ? 0 : ti;
    total_weight += weight[size_t(i)];
  }
  const Device dev = logits.device();
  const DType dt = logits.dtype();
  Tensor idx = from_vector<int64_t>(safe, {N, 1}, dev);                 // (N, 1)
  Tensor w = from_doubles(weight, {N, 1}, dt, dev);                     // (N, 1)
  Tensor logp = raw::softmax(logits, -1, /*log=*/true);                 // (N, C)
  Tensor picked = raw::gather(logp, 1, idx);                            // (N, 1)
  Tensor per_row = raw::binary_scalar(BinaryOp::mul, picked, -(1.0 - eps));
  if (eps > 0) {
    Tensor row_mean = raw::reduce(ReduceOp::mean, logp, {1}, true);     // (N, 1)
    per_row = raw::sub(per_row, raw::binary_scalar(BinaryOp::mul, row_mean, eps));
  }
  Tensor loss = raw::binary_scalar(BinaryOp::mul, raw::sum(raw::mul(per_row, w)), 1.0 / total_weight);
  if (!autograd::needs_grad(logits)) return loss;
  return autograd::record("cross_entropy", loss, {&logits},
                          [logp, idx, w, eps, C, total_weight](const Tensor& g) {
    // (p − ε/C − (1−ε)·onehot(t)) · w_i / Σw · g
    Tensor grad = raw::binary_scalar(BinaryOp::sub, raw::unary(UnaryOp::exp, logp), eps / double(C));
    raw::scatter_add_(grad, 1, idx, full(idx.shape(), -(1.0 - eps), grad.dtype(), grad.device()));
    Tensor scale = raw::mul(w, raw::binary_scalar(BinaryOp::mul, g, 1.0 / total_weight));
    return std::vector<Tensor>{raw::mul(grad, scale)};
  });
}

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  MOX_CHECK(input.shape() == target.shape(), "mse_loss: input ", describe(input), " and target ",
            describe(target), " must have the same shape");
  return mean(square(input - target));
}

}  // namespace mox::nn
