// loss.h — cross-entropy (with ignore_index and label smoothing) and mean squared error.
//
// cross_entropy takes logits (N, C) and integer targets (N) and returns the mean over the
// targets that are not ignore_index, as PyTorch's CrossEntropyLoss(reduction="mean"):
//   loss_i = (1−ε)·(−log p_i[t_i]) + ε·mean_c(−log p_i[c]),   p_i = softmax(logits_i).
// It is one fused graph node (log-softmax, pick, smoothing) with the closed-form gradient
// (p − (1−ε)·onehot(t) − ε/C)·w_i/Σw. Targets outside [0, C) that are not ignore_index
// are an error naming the target, its position and C.
#pragma once
#include "autograd/functions.h"

namespace mox::nn {

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);
// mean((input − target)²); shapes must match exactly.
Tensor mse_loss(const Tensor& input, const Tensor& target);

struct CrossEntropyLoss {
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  Tensor operator()(const Tensor& logits, const Tensor& target) const {
    return cross_entropy(logits, target, ignore_index, label_smoothing);
  }
};

struct MSELoss {
  Tensor operator()(const Tensor& input, const Tensor& target) const { return mse_loss(input, target); }
};

}  // namespace mox::nn
