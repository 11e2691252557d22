// functions_index.cpp — differentiable gather, index_select, index_add, scatter_add,
// where, topk, cat and stack.
#include "autograd/functions.h"

namespace mox {

using autograd::needs_grad;
using autograd::record;
using Grads = std::vector<Tensor>;

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor out = raw::gather(x, dim, index);
  if (!needs_grad(x)) return out;
  return record("gather", out, {&x}, [in = x.shape(), dim, index](const Tensor& g) {
    Tensor gx = zeros(in, g.dtype(), g.device());
    raw::scatter_add_(gx, dim, index, g);
    return Grads{gx};
  });
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  Tensor out = raw::index_select(x, dim, index);
  if (!needs_grad(x)) return out;
  return record("index_select", out, {&x}, [in = x.shape(), dim, index](const Tensor& g) {
    Tensor gx = zeros(in, g.dtype(), g.device());
    raw::index_add_(gx, dim, index, g);
    return Grads{gx};
  });
}

Tensor index_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor out = raw::clone(base);
  raw::index_add_(out, dim, index, src);
  if (!needs_grad({&base, &src})) return out;
  return record("index_add", out, {&base, &src}, [dim, index](const Tensor& g) {
    return Grads{g, raw::index_select(g, dim, index)};
  });
}

Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src) {
  Tensor out = raw::clone(base);
  raw::scatter_add_(out, dim, index, src);
  if (!needs_grad({&base, &src})) return out;
  return record("scatter_add", out, {&base, &src}, [dim, index](const Tensor& g) {
    return Grads{g, raw::gather(g, dim, index)};
  });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = raw::where(cond, a, b);
  if (!needs_grad({&a, &b})) return out;
  return record("where", out, {&a, &b}, [cond, sa = a.shape(), sb = b.shape()](const Tensor& g) {
    Tensor zero = zeros({}, g.dtype(), g.device());
    return Grads{raw::sum_to(raw::where(cond, g, zero), sa), raw::sum_to(raw::where(cond, zero, g), sb)};
  });
}

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  auto [values, indices] = raw::topk(x, k, dim, largest);
  if (!needs_grad(x)) return {values, indices};
  return {gather(x, dim, indices), indices};   // gather carries the gradient
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MOX_CHECK(!tensors.empty(), "cat: needs at least one tensor");
  const Tensor& first = tensors[0];
  MOX_CHECK(first.dim() > 0, "cat: tensor 0 ", describe(first), " is 0-d and cannot be concatenated; use stack");
  int d = wrap_dim(dim, first.dim());
  Shape shape = first.shape();
  int64_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    MOX_CHECK(t.dim() == first.dim() && t.dtype() == first.dtype() && t.device() == first.device(),
              "cat: tensor ", i, " ", describe(t), " does not match tensor 0 ", describe(first),
              " in rank, dtype or device");
    for (int j = 0; j < t.dim(); ++j)
      MOX_CHECK(j == d || t.size(j) == shape[j], "cat: tensor ", i, " has shape ", t.shape(),
                " but tensor 0 has ", shape, " (they may differ only in dim ", d, ")");
    total += t.size(d);
  }
  shape[d] = total;
  Tensor out = empty(shape, first.dtype(), first.device());
  std::vector<int64_t> sizes;
  int64_t at = 0;
  bool any_grad = false;
  for (const Tensor& t : tensors) {
    raw::copy_(raw::narrow(out, d, at, t.size(d)), t);
    at += t.size(d);
    sizes.push_back(t.size(d));
    any_grad = any_grad || needs_grad(t);
  }
  if (!any_grad) return out;
  std::vector<const Tensor*> inputs;
  for (const Tensor& t : tensors) inputs.push_back(&t);
  return record("cat", out, inputs, [d, sizes](const Tensor& g) {
    Grads grads;
    int64_t start = 0;
    for (int64_t n : sizes) { grads.push_back(raw::narrow(g, d, start, n)); start += n; }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  MOX_CHECK(!tensors.empty(), "stack: needs at least one tensor");
  for (size_t i = 1; i < tensors.size(); ++i)
    MOX_CHECK(tensors[i].shape() == tensors[0].shape() && tensors[i].dtype() == tensors[0].dtype(),
              "stack: tensor ", i, " ", describe(tensors[i]), " differs from tensor 0 ",
              describe(tensors[0]), " (stack needs equal shapes and dtypes)");
  const int d = wrap_dim(dim, tensors[0].dim() + 1);
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) expanded.push_back(t.unsqueeze(d));
  return cat(expanded, d);
}

}  // namespace mox
