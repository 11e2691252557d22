// functions.cpp — differentiable arithmetic, unary math, reductions, softmax, matmul,
// linear. Each forward is followed by its backward rule. Inputs are captured by handle
// (keeping their history alive is what edges do anyway); outputs only via detach().
#include "autograd/functions.h"

#include <cmath>

namespace mox {

using autograd::needs_grad;
using autograd::record;
using Grads = std::vector<Tensor>;

// ------------------------------------------------------------------------ arithmetic

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = raw::add(a, b);
  if (!needs_grad({&a, &b})) return out;
  return record("add", out, {&a, &b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return Grads{raw::sum_to(g, sa), raw::sum_to(g, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = raw::sub(a, b);
  if (!needs_grad({&a, &b})) return out;
  return record("sub", out, {&a, &b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return Grads{raw::sum_to(g, sa), raw::sum_to(raw::unary(UnaryOp::neg, g), sb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = raw::mul(a, b);
  if (!needs_grad({&a, &b})) return out;
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("mul", out, {&a, &b}, [a, b, need_a, need_b](const Tensor& g) {
    return Grads{need_a ? raw::sum_to(raw::mul(g, b), a.shape()) : Tensor(),
                 need_b ? raw::sum_to(raw::mul(g, a), b.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = raw::div(a, b);
  if (!needs_grad({&a, &b})) return out;
  const bool need_b = b.requires_grad();
  return record("div", out, {&a, &b}, [a, b, y = out.detach(), need_b](const Tensor& g) {
    Tensor ga = raw::div(g, b);
    // d(a/b)/db = -a/b² = -y/b
    Tensor gb = need_b ? raw::sum_to(raw::unary(UnaryOp::neg, raw::mul(ga, y)), b.shape()) : Tensor();
    return Grads{raw::sum_to(ga, a.shape()), gb};
  });
}

static Tensor extremum(const char* op, bool is_max, const Tensor& a, const Tensor& b) {
  Tensor out = raw::binary(is_max ? BinaryOp::maximum : BinaryOp::minimum, a, b);
  if (!needs_grad({&a, &b})) return out;
  return record(op, out, {&a, &b}, [a, b, is_max](const Tensor& g) {
    Tensor pick_a = raw::binary(is_max ? BinaryOp::ge : BinaryOp::le, a, b);
    Tensor zero = zeros({}, g.dtype(), g.device());
    return Grads{raw::sum_to(raw::where(pick_a, g, zero), a.shape()),
                 raw::sum_to(raw::where(pick_a, zero, g), b.shape())};
  });
}
Tensor maximum(const Tensor& a, const Tensor& b) { return extremum("maximum", true, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum("minimum", false, a, b); }

Tensor add(const Tensor& a, double s) {
  Tensor out = raw::binary_scalar(BinaryOp::add, a, s);
  if (!needs_grad(a)) return out;
  return record("add_scalar", out, {&a}, [](const Tensor& g) { return Grads{g}; });
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = raw::binary_scalar(BinaryOp::mul, a, s);
  if (!needs_grad(a)) return out;
  return record("mul_scalar", out, {&a}, [s](const Tensor& g) {
    return Grads{raw::binary_scalar(BinaryOp::mul, g, s)};
  });
}

Tensor pow(const Tensor& a, double e) {
  Tensor out = raw::binary_scalar(BinaryOp::pow, a, e);
  if (!needs_grad(a)) return out;
  return record("pow", out, {&a}, [a, e](const Tensor& g) {   // e·a^(e-1)
    if (e == 0) return Grads{zeros(a.shape(), g.dtype(), g.device())};   // not 0·0^-1 = NaN at a = 0
    Tensor d = raw::binary_scalar(BinaryOp::mul, raw::binary_scalar(BinaryOp::pow, a, e - 1), e);
    return Grads{raw::mul(g, d)};
  });
}

Tensor rsub(double s, const Tensor& a) {
  Tensor out = raw::binary_scalar(BinaryOp::sub, a, s, /*reversed=*/true);
  if (!needs_grad(a)) return out;
  return record("rsub", out, {&a}, [](const Tensor& g) { return Grads{raw::unary(UnaryOp::neg, g)}; });
}

Tensor rdiv(double s, const Tensor& a) {
  Tensor out = raw::binary_scalar(BinaryOp::div, a, s, /*reversed=*/true);
  if (!needs_grad(a)) return out;
  return record("rdiv", out, {&a}, [a, y = out.detach()](const Tensor& g) {   // -s/a² = -y/a
    return Grads{raw::unary(UnaryOp::neg, raw::div(raw::mul(g, y), a))};
  });
}

Tensor neg(const Tensor& a) {
  Tensor out = raw::unary(UnaryOp::neg, a);
  if (!needs_grad(a)) return out;
  return record("neg", out, {&a}, [](const Tensor& g) { return Grads{raw::unary(UnaryOp::neg, g)}; });
}

// ----------------------------------------------------------------------- comparisons

Tensor eq(const Tensor& a, const Tensor& b) { return raw::binary(BinaryOp::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return raw::binary(BinaryOp::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return raw::binary(BinaryOp::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return raw::binary(BinaryOp::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return raw::binary(BinaryOp::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return raw::binary(BinaryOp::ge, a, b); }

// ------------------------------------------------------------------------ unary math

static Tensor unary_fn(UnaryOp op, const Tensor& x) {
  Tensor out = raw::unary(op, x);
  if (!needs_grad(x)) return out;
  return record(unary_name(op), out, {&x}, [op, x, y = out.detach()](const Tensor& g) {
    return Grads{raw::unary_backward(op, x, y, g)};
  });
}

Tensor exp(const Tensor& x) { return unary_fn(UnaryOp::exp, x); }
Tensor log(const Tensor& x) { return unary_fn(UnaryOp::log, x); }
Tensor sqrt(const Tensor& x) { return unary_fn(UnaryOp::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary_fn(UnaryOp::rsqrt, x); }
Tensor abs(const Tensor& x) { return unary_fn(UnaryOp::abs, x); }
Tensor square(const Tensor& x) { return unary_fn(UnaryOp::square, x); }
Tensor sin(const Tensor& x) { return unary_fn(UnaryOp::sin, x); }
Tensor cos(const Tensor& x) { return unary_fn(UnaryOp::cos, x); }
Tensor tanh(const Tensor& x) { return unary_fn(UnaryOp::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary_fn(UnaryOp::sigmoid, x); }
Tensor relu(const Tensor& x) { return unary_fn(UnaryOp::relu, x); }
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return unary_fn(tanh_approximation ? UnaryOp::gelu_tanh : UnaryOp::gelu, x);
}
Tensor silu(const Tensor& x) { return unary_fn(UnaryOp::silu, x); }

// ------------------------------------------------------------------------ reductions

namespace {
// The reduced shape with extent 1 kept on reduced dims (for broadcasting g back).
Shape keepdim_shape(const Shape& in, const Shape& dims) {
  Shape s = in;
  if (dims.empty()) { for (int i = 0; i < s.size(); ++i) s[i] = 1; return s; }
  for (int64_t d : dims) s[wrap_dim(d, in.size())] = 1;
  return s;
}
}  // namespace

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  Tensor out = raw::reduce(ReduceOp::sum, x, dims, keepdim);
  if (!needs_grad(x)) return out;
  return record("sum", out, {&x}, [in = x.shape(), kd = keepdim_shape(x.shape(), dims)](const Tensor& g) {
    return Grads{raw::expand(raw::reshape(g, kd), in)};
  });
}

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  Tensor out = raw::reduce(ReduceOp::mean, x, dims, keepdim);
  if (!needs_grad(x)) return out;
  const double count = double(x.numel()) / double(std::max<int64_t>(out.numel(), 1));
  return record("mean", out, {&x}, [in = x.shape(), kd = keepdim_shape(x.shape(), dims), count](const Tensor& g) {
    return Grads{raw::expand(raw::binary_scalar(BinaryOp::mul, raw::reshape(g, kd), 1.0 / count), in)};
  });
}

static Tensor extremum_dim(bool is_max, const Tensor& x, int64_t dim, bool keepdim) {
  Tensor idx = is_max ? raw::argmax(x, dim, true) : raw::argmin(x, dim, true);
  Tensor out = raw::gather(x, dim, idx);   // keepdim shape
  if (!keepdim) out = raw::squeeze(out, dim);
  if (!needs_grad(x)) return out;
  return record(is_max ? "max" : "min", out, {&x}, [x, idx, dim](const Tensor& g) {
    Tensor gx = zeros(x.shape(), g.dtype(), g.device());
    raw::scatter_add_(gx, dim, idx, raw::reshape(g, idx.shape()));
    return Grads{gx};
  });
}
Tensor max(const Tensor& x, int64_t dim, bool keepdim) { return extremum_dim(true, x, dim, keepdim); }
Tensor min(const Tensor& x, int64_t dim, bool keepdim) { return extremum_dim(false, x, dim, keepdim); }
Tensor max(const Tensor& x) { return max(x.reshape({-1}), 0); }

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  MOX_CHECK(is_floating(x.dtype()), "logsumexp needs a floating-point tensor, got ", describe(x));
  Tensor m = raw::reduce(ReduceOp::max, x, {dim}, true);
  // Rows that are all -inf: use 0 as the shift so the result is -inf, not NaN.
  m = raw::where(raw::binary_scalar(BinaryOp::eq, raw::unary(UnaryOp::abs, m), INFINITY),
                 zeros({}, m.dtype(), m.device()), m);
  Tensor s = raw::reduce(ReduceOp::sum, raw::unary(UnaryOp::exp, raw::sub(x, m)), {dim}, true);
  Tensor out_keep = raw::add(raw::unary(UnaryOp::log, s), m);
  Tensor out = keepdim ? out_keep : raw::squeeze(out_keep, dim);
  if (!needs_grad(x)) return out;
  // out_keep.detach(): with keepdim, out_keep *is* out, and a node must not own its output.
  return record("logsumexp", out, {&x}, [x, y = out_keep.detach()](const Tensor& g) {
    Tensor gk = raw::reshape(g, y.shape());
    return Grads{raw::mul(gk, raw::unary(UnaryOp::exp, raw::sub(x, y)))};   // g·softmax(x)
  });
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return raw::argmax(x, dim, keepdim); }

Tensor cumsum(const Tensor& x, int64_t dim) {
  Tensor out = raw::cumsum(x, dim);
  if (!needs_grad(x)) return out;
  return record("cumsum", out, {&x}, [dim](const Tensor& g) {
    // gx_i = Σ_{j≥i} g_j = total − cumsum(g)_i + g_i
    Tensor total = raw::reduce(ReduceOp::sum, g, {dim}, true);
    return Grads{raw::add(raw::sub(total, raw::cumsum(g, dim)), g)};
  });
}

// ------------------------------------------------------------------------ softmax

static Tensor softmax_fn(const Tensor& x, int64_t dim, bool log) {
  Tensor out = raw::softmax(x, dim, log);
  if (!needs_grad(x)) return out;
  return record(log ? "log_softmax" : "softmax", out, {&x}, [y = out.detach(), dim, log](const Tensor& g) {
    return Grads{raw::softmax_backward(y, g, dim, log)};
  });
}
Tensor softmax(const Tensor& x, int64_t dim) { return softmax_fn(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_fn(x, dim, true); }

// -------------------------------------------------------------------- linear algebra

Tensor matmul(const Tensor& a, const Tensor& b) {
  MOX_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must have at least 1 dim, got ",
            describe(a), " and ", describe(b));
  const int64_t Ka = a.size(-1), Kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  MOX_CHECK(Ka == Kb, "matmul: shapes ", a.shape(), " and ", b.shape(), " are not aligned (", Ka,
            " vs ", Kb, ")");
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(b.dim() == 1 ? -1 : -2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  Tensor out = raw::matmul(a, b);
  if (!needs_grad({&a, &b})) return out;
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("matmul", out, {&a, &b}, [a, b, need_a, need_b](const Tensor& g) {
    Tensor ga = need_a ? raw::sum_to(raw::matmul(g, raw::transpose(b, -1, -2)), a.shape()) : Tensor();
    Tensor gb = need_b ? raw::sum_to(raw::matmul(raw::transpose(a, -1, -2), g), b.shape()) : Tensor();
    return Grads{ga, gb};
  });
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  MOX_CHECK(w.dim() == 2, "linear: weight must be (out, in), got ", describe(w));
  MOX_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input ", describe(x),
            " does not end in in_features=", w.size(1), " of weight ", describe(w));
  MOX_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "linear: bias ", describe(b),
            " must have shape [", w.size(0), "]");
  const int64_t in = w.size(1), outf = w.size(0);
  int64_t rows = 1;   // x's leading dims (x.numel() / in fails for in = 0)
  for (int64_t d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = outf;
  MOX_CHECK(x.dtype() == w.dtype() && x.device() == w.device(), "linear: input ", describe(x), " on ",
            x.device(), " and weight ", describe(w), " on ", w.device(), " must match in dtype and device");
  MOX_CHECK(!b.defined() || (b.dtype() == w.dtype() && b.device() == w.device()), "linear: bias ",
            describe(b), " on ", b.device(), " and weight ", describe(w), " on ", w.device(),
            " must match in dtype and device");
  Tensor x2 = raw::reshape(x, {1, rows, in});
  // bmm reads w through its strides: it needs a unit stride in one dim and a leading
  // dimension covering the other. Expanded (stride-0) or overlapping weights are copied.
  const bool w_blas = (w.stride(1) == 1 && w.stride(0) >= w.size(1)) ||
                      (w.stride(0) == 1 && w.stride(1) >= w.size(0));
  Tensor wt = raw::unsqueeze(raw::transpose(w_blas ? w : raw::clone(w), 0, 1), 0);   // (1, in, out)
  Tensor out = empty({1, rows, outf}, x.dtype(), x.device());
  if (b.defined()) raw::copy_(out, b);                       // out = b, then out += x·wᵀ
  backend(x.device()).bmm(raw::contiguous(x2), wt, out, /*accumulate=*/b.defined());
  out = raw::view(out, out_shape);
  if (!needs_grad({&x, &w, &b})) return out;
  const bool need_x = x.requires_grad(), need_w = w.requires_grad(), need_b = b.defined() && b.requires_grad();
  return record("linear", out, {&x, &w, &b}, [x2, w, need_x, need_w, need_b, xs = x.shape(), rows, outf](const Tensor& g) {
    Tensor g2 = raw::reshape(g, {rows, outf});   // (rows, out)
    Tensor gx = need_x ? raw::reshape(raw::matmul(g2, w), xs) : Tensor();
    Tensor gw = need_w ? raw::matmul(raw::transpose(g2, 0, 1), raw::reshape(x2, {rows, x2.size(2)})) : Tensor();
    Tensor gb = need_b ? raw::reduce(ReduceOp::sum, g2, {0}, false) : Tensor();
    return Grads{gx, gw, gb};
  });
}

}  // namespace mox
