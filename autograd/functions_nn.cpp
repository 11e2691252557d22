// functions_nn.cpp — differentiable conv2d, max_pool2d and dropout. On the CPU a 16-bit
// conv2d runs in f32 (widen_on_cpu, autograd/node.h).
#include "autograd/functions.h"

namespace mox {

using autograd::needs_grad;
using autograd::record;
using Grads = std::vector<Tensor>;

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, int64_t stride, int64_t padding) {
  if (autograd::widen_on_cpu({&x, &w, &bias}))
    return conv2d(x.to(DType::f32), w.to(DType::f32), autograd::widened(bias), stride, padding).to(x.dtype());
  Conv2dParams p{stride, stride, padding, padding};
  Tensor out = raw::conv2d(x, w, bias.defined() ? &bias : nullptr, p);
  if (!needs_grad({&x, &w, &bias})) return out;
  const bool need_x = x.requires_grad(), need_w = w.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  Tensor xc = raw::contiguous(x), wc = raw::contiguous(w);
  return record("conv2d", out, {&x, &w, &bias}, [xc, wc, p, need_x, need_w, need_b](const Tensor& g) {
    Tensor gx = need_x ? empty_like(xc) : Tensor();
    Tensor gw = need_w ? empty_like(wc) : Tensor();
    Tensor gb = need_b ? empty({wc.size(0)}, wc.dtype(), wc.device()) : Tensor();
    backend(xc.device()).conv2d_backward(xc, wc, raw::contiguous(g), p, need_x ? &gx : nullptr,
                                         need_w ? &gw : nullptr, need_b ? &gb : nullptr);
    return Grads{gx, gw, gb};
  });
}

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  if (stride < 0) stride = kernel;
  Pool2dParams p{kernel, kernel, stride, stride, padding, padding};
  auto [out, indices] = raw::max_pool2d(x, p);
  if (!needs_grad(x)) return out;
  return record("max_pool2d", out, {&x}, [indices = indices, in = x.shape(), dt = x.dtype(), dev = x.device()](const Tensor& g) {
    Tensor gx = empty(in, dt, dev);
    backend(dev).max_pool2d_backward(raw::contiguous(g), indices, gx);
    return Grads{gx};
  });
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MOX_CHECK(p >= 0 && p < 1, "dropout: probability p=", p, " must be in [0, 1)");
  if (!training || p == 0) return x;
  // mask_scaled = (U ≥ p) / (1 − p): kept elements are scaled so the expectation is unchanged.
  Tensor u = raw::uniform(x.shape(), 0.0, 1.0, x.dtype(), x.device(), gen);
  Tensor mask = raw::to_dtype(raw::binary_scalar(BinaryOp::ge, u, p), x.dtype());
  Tensor scaled = raw::binary_scalar(BinaryOp::mul, mask, 1.0 / (1.0 - p));
  Tensor out = raw::mul(x, scaled);
  if (!needs_grad(x)) return out;
  return record("dropout", out, {&x}, [scaled](const Tensor& g) { return Grads{raw::mul(g, scaled)}; });
}

}  // namespace mox
