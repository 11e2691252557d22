// optim_math.h — per-element SGD and Adam/AdamW updates, shared by the CPU and CUDA backends.
//
// Each update follows PyTorch's single-tensor implementation (torch.optim.SGD, torch.optim.Adam,
// torch.optim.AdamW), operation for operation, so trajectories match PyTorch to rounding:
//
//   SGD:   d = g + wd·p;  buf = d (first step) | momentum·buf + (1-dampening)·d;
//          d = d + momentum·buf (nesterov) | buf;  p = p - lr·d
//   Adam:  g = g + wd·p (Adam)  |  p = p·(1 - lr·wd) (AdamW, decoupled);
//          m = lerp(m, g, 1-β1);  v = β2·v + (1-β2)·g²;
//          p = p - (lr/bc1) · m / (sqrt(v)/sqrt(bc2) + eps),  bc_i = 1 - β_i^t
//
// The scalar coefficients are computed once per step on the host, in double as PyTorch's
// Python code does, and rounded to the param's float type; the per-element functions then
// compute in that type (float for f32 params, double for f64). Not here: looping over
// tensors, dtype dispatch, state handling (tensor/cpu/optim.cpp, nn/optim/).
#pragma once
#include <cmath>

#include "tensor/backend.h"
#include "tensor/dtype.h"

namespace mox::optim {

MOX_HD inline float optim_sqrt(float x) { return sqrtf(x); }
MOX_HD inline double optim_sqrt(double x) { return sqrt(x); }

template <typename T>
struct SgdCoeffs {
  T lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, first_step;
};

template <typename T>
inline SgdCoeffs<T> sgd_coeffs(const SgdHyper& h) {
  return {T(h.lr), T(h.momentum), T(1.0 - h.dampening), T(h.weight_decay), h.nesterov,
          h.first_step};
}

// One element, with the loop-invariant choices as template flags so a CPU loop over
// elements has no branches and vectorises: kWd (weight decay ≠ 0), kMomentum (a momentum
// buffer exists), kNesterov, kFirst (first step: the buffer starts as the gradient).
template <typename T, bool kWd, bool kMomentum, bool kNesterov, bool kFirst>
MOX_HD inline void sgd_update_fixed(T& p, T g, T* buf, const SgdCoeffs<T>& c) {
  T d = g;
  if (kWd) d = d + c.weight_decay * p;
  if (kMomentum) {
    T b = kFirst ? d : *buf * c.momentum + c.one_minus_dampening * d;
    *buf = b;
    d = kNesterov ? d + c.momentum * b : b;
  }
  p = p - c.lr * d;
}

// One element with run-time choices. `buf` is the momentum buffer, null when momentum is 0.
template <typename T>
MOX_HD inline void sgd_update(T& p, T g, T* buf, const SgdCoeffs<T>& c) {
  T d = g;
  if (c.weight_decay != T(0)) d = d + c.weight_decay * p;
  if (buf) {
    T b = c.first_step ? d : *buf * c.momentum + c.one_minus_dampening * d;
    *buf = b;
    d = c.nesterov ? d + c.momentum * b : b;
  }
  p = p - c.lr * d;
}

template <typename T>
struct AdamCoeffs {
  T one_minus_beta1, beta2, one_minus_beta2;
  T weight_decay;   // added to the gradient (Adam); 0 for AdamW
  T decay;          // multiplies the param first (AdamW: 1 - lr·wd); 1 for Adam
  T step_size;      // lr / (1 - β1^t)
  T bc2_sqrt;       // sqrt(1 - β2^t)
  T eps;
};

template <typename T>
inline AdamCoeffs<T> adam_coeffs(const AdamHyper& h) {
  double t = double(h.step);
  double bc1 = 1.0 - std::pow(h.beta1, t);
  double bc2 = 1.0 - std::pow(h.beta2, t);
  AdamCoeffs<T> c;
  c.one_minus_beta1 = T(1.0 - h.beta1);
  c.beta2 = T(h.beta2);
  c.one_minus_beta2 = T(1.0 - h.beta2);
  c.weight_decay = h.decoupled ? T(0) : T(h.weight_decay);
  c.decay = h.decoupled ? T(1.0 - h.lr * h.weight_decay) : T(1);
  c.step_size = T(h.lr / bc1);
  c.bc2_sqrt = T(std::sqrt(bc2));
  c.eps = T(h.eps);
  return c;
}

// One element: p the param, g its gradient, m and v the first and second moments.
// kDecay: AdamW's decoupled decay (c.decay ≠ 1); kWd: Adam's L2 term (c.weight_decay ≠ 0).
template <typename T, bool kDecay, bool kWd>
MOX_HD inline void adam_update_fixed(T& p, T g, T& m, T& v, const AdamCoeffs<T>& c) {
  if (kDecay) p = p * c.decay;
  if (kWd) g = g + c.weight_decay * p;
  // m = lerp(m, g, w) with w = 1-β1, in torch.lerp's two-sided form.
  T w = c.one_minus_beta1;
  m = w < T(0.5) ? m + w * (g - m) : g - (g - m) * (T(1) - w);
  v = v * c.beta2 + c.one_minus_beta2 * g * g;
  T denom = optim_sqrt(v) / c.bc2_sqrt + c.eps;
  p = p - c.step_size * m / denom;
}

template <typename T>
MOX_HD inline void adam_update(T& p, T g, T& m, T& v, const AdamCoeffs<T>& c) {
  const bool decay = c.decay != T(1), wd = c.weight_decay != T(0);
  if (decay && wd) adam_update_fixed<T, true, true>(p, g, m, v, c);
  else if (decay) adam_update_fixed<T, true, false>(p, g, m, v, c);
  else if (wd) adam_update_fixed<T, false, true>(p, g, m, v, c);
  else adam_update_fixed<T, false, false>(p, g, m, v, c);
}

}  // namespace mox::optim
