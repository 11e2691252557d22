// clip_grad.h — global gradient-norm clipping (torch.nn.utils.clip_grad_norm_, L2 only).
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace mox::optim {

// The L2 norm of all the params' gradients taken together (each tensor's squares summed in
// double, rounded to its dtype, the tensors' sums added in double; params
// whose grad is undefined are skipped). When max_norm / (norm + 1e-6) < 1 — as in PyTorch,
// which multiplies by that factor clamped to 1 — every grad is scaled in place by it.
// Returns the norm before clipping. A non-finite norm is returned as is and the grads are
// left untouched: the caller decides (skip the step, lower the loss scale). Throws when
// max_norm is not a finite value > 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace mox::optim
