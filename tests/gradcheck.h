// gradcheck.h — float64 central-difference gradient check for the autograd tests.
//
// gradcheck(fn, inputs) evaluates out = fn(inputs), seeds backward with fixed random weights
// w (so the analytic gradients are those of the scalar L = sum(out * w)), and compares every
// element of every input that requires grad against the numerical derivative
// (L(x + eps·e_i) − L(x − eps·e_i)) / (2·eps), i.e. the numerical vector-Jacobian product
// wᵀ·J·e_i. An element passes when |analytic − numerical| ≤ atol + rtol·|numerical|
// (defaults eps 1e-6, atol 1e-5, rtol 1e-3). On failure the message names the worst element
// of each failing input with its index, both values and the error. Inputs must be float64
// leaves; they may be non-contiguous views (transposed, narrowed) but not self-overlapping
// (no stride-0 dims: put an expand inside fn instead, which also checks expand's backward).
// Perturbations are written into the inputs' storage and restored afterwards. Not here:
// second derivatives, and choosing inputs away from kinks (relu at 0, ties of max) — the
// caller does that with the input helpers below.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/functions.h"

namespace mox::testing {

using GradFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t weight_seed = 20240601;   // seed of the random weights w
};

namespace detail {
inline std::string coords_of(const Shape& shape, int64_t flat) {
  std::vector<int64_t> c(size_t(shape.size()), 0);
  for (int d = shape.size() - 1; d >= 0; --d) {
    c[size_t(d)] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < c.size(); ++i) os << (i ? ", " : "") << c[i];
  os << ']';
  return os.str();
}

// Storage offset (elements) of the flat row-major position `flat` of a strided tensor.
inline int64_t storage_offset(const Tensor& t, int64_t flat) {
  int64_t off = t.offset();
  for (int d = t.dim() - 1; d >= 0; --d) {
    const int64_t n = t.shape()[d];
    off += (flat % n) * t.strides()[d];
    flat /= n;
  }
  return off;
}

inline double weighted_sum(const Tensor& out, const std::vector<double>& w) {
  std::vector<double> v = out.to_vector<double>();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}
}  // namespace detail

inline ::testing::AssertionResult gradcheck(const GradFn& fn, const std::vector<Tensor>& inputs,
                                            const GradcheckOptions& opt = {}) {
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    any = true;
    if (x.dtype() != DType::f64 || !x.is_leaf())
      return ::testing::AssertionFailure()
             << "gradcheck: input " << i << " (" << describe(x) << ") must be an f64 leaf";
    for (int d = 0; d < x.dim(); ++d)
      if (x.shape()[d] > 1 && x.strides()[d] == 0)
        return ::testing::AssertionFailure() << "gradcheck: input " << i << " " << x.shape()
                                             << " has a stride-0 dim; expand inside fn instead";
    x.impl()->grad.reset();
  }
  if (!any) return ::testing::AssertionFailure() << "gradcheck: no input requires grad";

  // Analytic: backward(w) on out gives wᵀJ = ∂ sum(out·w) / ∂ inputs.
  Tensor out = fn(inputs);
  if (out.dtype() != DType::f64)
    return ::testing::AssertionFailure() << "gradcheck: output is " << describe(out) << ", not f64";
  if (!out.requires_grad())
    return ::testing::AssertionFailure() << "gradcheck: output " << describe(out)
                                         << " does not require grad (no graph recorded)";
  Generator wgen(opt.weight_seed);
  Tensor w = raw::normal(out.shape(), 0.0, 1.0, DType::f64, Device::cpu(), &wgen);
  const std::vector<double> wv = w.to_vector<double>();
  const Shape out_shape = out.shape();
  out.backward(w);

  auto loss = [&]() {
    autograd::NoGradGuard no_grad;
    Tensor o = fn(inputs);
    if (o.shape() != out_shape) throw Error(str("gradcheck: output shape changed from ", out_shape, " to ", o.shape()));
    return detail::weighted_sum(o, wv);
  };

  std::ostringstream failures;
  bool ok = true;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    const int64_t n = x.numel();
    std::vector<double> analytic(size_t(n), 0.0);
    Tensor g = x.grad();
    if (g.defined()) {
      if (g.shape() != x.shape() || g.dtype() != DType::f64) {
        ok = false;
        failures << "\n  input " << i << " " << describe(x) << ": gradient is " << describe(g);
        continue;
      }
      analytic = g.to_vector<double>();
    }
    double* base = static_cast<double*>(x.storage()->data);
    double worst_ratio = -1, worst_a = 0, worst_n = 0;
    int64_t worst_at = -1, bad = 0;
    for (int64_t k = 0; k < n; ++k) {
      double& v = base[detail::storage_offset(x, k)];
      const double orig = v;
      v = orig + opt.eps;
      const double lp = loss();
      v = orig - opt.eps;
      const double lm = loss();
      v = orig;
      const double num = (lp - lm) / (2 * opt.eps);
      const double a = analytic[size_t(k)];
      const double err = std::abs(a - num), tol = opt.atol + opt.rtol * std::abs(num);
      const double ratio = std::isfinite(err) ? err / tol : INFINITY;
      if (!(err <= tol)) ++bad;
      if (ratio > worst_ratio || std::isnan(ratio)) {
        worst_ratio = ratio; worst_a = a; worst_n = num; worst_at = k;
      }
    }
    if (bad > 0) {
      ok = false;
      failures << "\n  input " << i << " " << describe(x) << (g.defined() ? "" : " (no gradient reached it)")
               << ": " << bad << " of " << n << " elements out of tolerance; worst at "
               << detail::coords_of(x.shape(), worst_at) << ": analytic " << worst_a
               << ", numerical " << worst_n << ", |diff| " << std::abs(worst_a - worst_n)
               << " > " << opt.atol << " + " << opt.rtol << "·|numerical|";
    }
  }
  if (!ok) return ::testing::AssertionFailure() << "gradcheck failed:" << failures.str();
  return ::testing::AssertionSuccess();
}

// ---- input helpers: float64 leaves that require grad (deterministic per seed) ----

// Uniform in [lo, hi).
inline Tensor uniform_leaf(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  Generator gen(seed);
  Tensor t = raw::uniform(shape, lo, hi, DType::f64, Device::cpu(), &gen);
  t.set_requires_grad();
  return t;
}

// |x| in [lo, hi) with a random sign: away from the kinks of abs/relu and the pole of 1/x.
inline Tensor signed_leaf(const Shape& shape, uint64_t seed, double lo = 0.2, double hi = 1.5) {
  Generator gen(seed);
  Tensor mag = raw::uniform(shape, lo, hi, DType::f64, Device::cpu(), &gen);
  Tensor sign = raw::uniform(shape, -1.0, 1.0, DType::f64, Device::cpu(), &gen);
  std::vector<double> m = mag.to_vector<double>(), s = sign.to_vector<double>();
  for (size_t i = 0; i < m.size(); ++i) if (s[i] < 0) m[i] = -m[i];
  Tensor t = from_vector<double>(m, shape);
  t.set_requires_grad();
  return t;
}

// A random permutation of {0, step, 2·step, ...} shifted by `shift`: distinct values at
// least `step` apart, so max/min/topk/max_pool have no ties within eps.
inline Tensor distinct_leaf(const Shape& shape, uint64_t seed, double step = 0.1, double shift = -1.0) {
  Generator gen(seed);
  std::vector<int64_t> p = gen.permutation(shape.numel());
  std::vector<double> v(p.size());
  for (size_t i = 0; i < p.size(); ++i) v[i] = shift + step * double(p[i]);
  Tensor t = from_vector<double>(v, shape);
  t.set_requires_grad();
  return t;
}

// The same values as `t` (rank ≥ 2) in storage whose last two dims are swapped: a
// non-contiguous leaf (the "transposed input" case of every gradcheck).
inline Tensor transposed_leaf(const Tensor& t) {
  Tensor v = raw::transpose(raw::contiguous(raw::transpose(t.detach(), -1, -2)), -1, -2);
  EXPECT_FALSE(v.is_contiguous());
  v.set_requires_grad();
  return v;
}

}  // namespace mox::testing
