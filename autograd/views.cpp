// views.cpp — the differentiable Tensor member functions: views, copies, detach, backward.
//
// A view's backward maps the gradient back to the input's shape (reshape it, transpose it
// back, scatter it into a zero tensor for narrow, sum it over expanded dims).
#include "autograd/node.h"
#include "tensor/ops.h"

namespace mox {

using autograd::needs_grad;
using autograd::record;

Tensor Tensor::reshape(const Shape& shape) const {
  Tensor out = raw::reshape(*this, shape);
  if (!needs_grad(*this)) return out;
  Shape in = this->shape();
  return record("reshape", out, {this}, [in](const Tensor& g) {
    return std::vector<Tensor>{raw::reshape(g, in)};
  });
}

Tensor Tensor::view(const Shape& shape) const {
  Tensor out = raw::view(*this, shape);
  if (!needs_grad(*this)) return out;
  Shape in = this->shape();
  return record("view", out, {this}, [in](const Tensor& g) {
    return std::vector<Tensor>{raw::reshape(g, in)};
  });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Tensor out = raw::transpose(*this, d0, d1);
  if (!needs_grad(*this)) return out;
  return record("transpose", out, {this}, [d0, d1](const Tensor& g) {
    return std::vector<Tensor>{raw::transpose(g, d0, d1)};
  });
}

Tensor Tensor::permute(const Shape& dims) const {
  Tensor out = raw::permute(*this, dims);
  if (!needs_grad(*this)) return out;
  Shape inverse;
  inverse.resize(dims.size());
  for (int i = 0; i < dims.size(); ++i) inverse[wrap_dim(dims[i], dims.size())] = i;
  return record("permute", out, {this}, [inverse](const Tensor& g) {
    return std::vector<Tensor>{raw::permute(g, inverse)};
  });
}

Tensor Tensor::narrow(int64_t dim, int64_t start, int64_t length) const {
  Tensor out = raw::narrow(*this, dim, start, length);
  if (!needs_grad(*this)) return out;
  Shape in = this->shape();
  DType dt = dtype();
  Device dev = device();
  return record("narrow", out, {this}, [=](const Tensor& g) {
    Tensor gx = zeros(in, dt, dev);
    raw::copy_(raw::narrow(gx, dim, start, length), g);
    return std::vector<Tensor>{gx};
  });
}

Tensor Tensor::expand(const Shape& shape) const {
  Tensor out = raw::expand(*this, shape);
  if (!needs_grad(*this)) return out;
  Shape in = this->shape();
  return record("expand", out, {this}, [in](const Tensor& g) {
    return std::vector<Tensor>{raw::sum_to(g, in)};
  });
}

Tensor Tensor::squeeze(int64_t dim) const {
  Tensor out = raw::squeeze(*this, dim);
  if (!needs_grad(*this)) return out;
  Shape in = this->shape();
  return record("squeeze", out, {this}, [in](const Tensor& g) {
    return std::vector<Tensor>{raw::reshape(g, in)};
  });
}

Tensor Tensor::unsqueeze(int64_t dim) const {
  Tensor out = raw::unsqueeze(*this, dim);
  if (!needs_grad(*this)) return out;
  Shape in = this->shape();
  return record("unsqueeze", out, {this}, [in](const Tensor& g) {
    return std::vector<Tensor>{raw::reshape(g, in)};
  });
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  int s = wrap_dim(start_dim, dim()), e = wrap_dim(end_dim, dim());
  MOX_CHECK(s <= e, "flatten: start_dim ", start_dim, " comes after end_dim ", end_dim,
            " for shape ", shape());
  Shape target;
  int64_t merged = 1;
  for (int i = 0; i < dim(); ++i) {
    if (i < s || i > e) target.push_back(shape()[i]);
    else merged *= shape()[i];
    if (i == e) target.push_back(merged);
  }
  return reshape(target);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = raw::clone(*this);
  if (!needs_grad(*this)) return out;
  return record("clone", out, {this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = raw::to_dtype(*this, dt);
  if (!needs_grad(*this) || !is_floating(dt)) return out;
  DType in = dtype();
  return record("to_dtype", out, {this}, [in](const Tensor& g) {
    return std::vector<Tensor>{raw::to_dtype(g, in)};
  });
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor out = raw::to_device(*this, dev);
  if (!needs_grad(*this)) return out;
  Device in = device();
  return record("to_device", out, {this}, [in](const Tensor& g) {
    return std::vector<Tensor>{raw::to_device(g, in)};
  });
}

Tensor Tensor::detach() const {
  return raw::as_strided(*this, shape(), strides(), offset());
}

Tensor& Tensor::set_requires_grad(bool on) {
  MOX_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can be marked; this ", describe(*this),
            " was produced by op '", grad_fn()->op, "' — use detach() first");
  MOX_CHECK(!on || is_floating(dtype()), "set_requires_grad: only floating-point tensors can "
            "require grad, got ", describe(*this));
  impl()->requires_grad = on;
  return *this;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::run_backward(*this, gradient, retain_graph);
}

}  // namespace mox
