// test_vector_math.cpp — the branch-free f32 math of tensor/cpu/vector_math.h against
// double-precision references, directly and through the CPU kernels that use it.
//
// The exact GELU and its derivative over a dense sweep of [−10, 10] (step 2⁻¹⁴, plus every
// f32 around the approximation's branch points and gelu's zero crossing): |error| ≤
// 2e-7·max(1, |x|) for vm::gelu / vm::gelu_grad and for UnaryOp::gelu forward and backward
// on f32 tensors, contiguous and strided; special values (NaN, ±inf, huge, ±0, subnormal);
// 16-bit tensors computed through the same f32 path; f64 still exactly libm's erf (and no
// NaN at ±inf); and
// exp_nonpositive within 2 ulp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <tuple>
#include <vector>

#include "tensor/cpu/vector_math.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace {

using namespace mox;
namespace vm = mox::cpu::vm;
using std::vector;

constexpr double kBound = 2e-7;   // on |error| / max(1, |x|)
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Double-precision references: Φ(x) = erfc(−x/√2)/2, gelu = x·Φ, gelu' = Φ + x·φ.
double ref_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double ref_gelu(double x) { return x * ref_cdf(x); }
double ref_gelu_grad(double x) { return ref_cdf(x) + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }

// The sweep: −10 … 10 in steps of 2⁻¹⁴ (exact in f32), and 4096 consecutive floats on each
// side of the branch points |x/√2| = 0.921875 and 4, of gelu's zero crossing of the
// derivative (x ≈ −0.7518) and of 0.
vector<float> sweep() {
  vector<float> xs;
  for (int k = -10 * 16384; k <= 10 * 16384; ++k) xs.push_back(float(k) / 16384.0f);
  for (float c : {0.921875f * 1.41421356f, 4.0f * 1.41421356f, 0.75179f, 0.0f})
    for (float s : {1.0f, -1.0f}) {
      float v = s * c;
      for (int i = 0; i < 4096; ++i) v = std::nextafter(v, -kInf);
      for (int i = 0; i < 8192; ++i, v = std::nextafter(v, kInf)) xs.push_back(v);
    }
  return xs;
}

struct MaxErr {
  double err = 0;
  float at = 0;
  void add(float x, double got, double want) {
    const double e = std::abs(got - want) / std::max(1.0, std::abs(double(x)));
    if (!(e <= err)) { err = e; at = x; }   // a NaN error counts as the worst
  }
};

void expect_within(const MaxErr& m, const char* what) {
  EXPECT_LE(m.err, kBound) << what << ": max |error|/max(1,|x|) " << m.err << " at x = " << m.at;
}

TEST(VectorMath, GeluAndDerivativeWithinBoundOverSweep) {
  MaxErr f, g;
  for (float x : sweep()) {
    f.add(x, vm::gelu(x), ref_gelu(x));
    g.add(x, vm::gelu_grad(x), ref_gelu_grad(x));
  }
  expect_within(f, "vm::gelu");
  expect_within(g, "vm::gelu_grad");
  // Over every f32 with 1e-6 ≤ |x| ≤ 10 (AVX-512 with FMA): 1.15e-7 and 1.41e-7.
  std::printf("[ info ] vm::gelu max err %.3g (x = %.9g), vm::gelu_grad %.3g (x = %.9g)\n", f.err, f.at, g.err, g.at);
}

TEST(VectorMath, NormalCdfAbsoluteError) {
  double worst = 0;
  for (float x : sweep()) worst = std::max(worst, std::abs(vm::normal_cdf(x) - ref_cdf(x)));
  EXPECT_LE(worst, 1e-7);
  // the left tail keeps its relative accuracy until Φ is taken as 0 (x < −4√2)
  double worst_rel = 0;
  for (float x = -5.65f; x < -1.0f; x += 1.0f / 1024) worst_rel = std::max(worst_rel, std::abs(vm::normal_cdf(x) / ref_cdf(x) - 1));
  EXPECT_LE(worst_rel, 5e-6);
}

TEST(VectorMath, SpecialValues) {
  EXPECT_TRUE(std::isnan(vm::gelu(kNaN)));
  EXPECT_TRUE(std::isnan(vm::gelu_grad(kNaN)));
  EXPECT_TRUE(std::isnan(vm::normal_cdf(kNaN)));
  EXPECT_EQ(vm::gelu(kInf), kInf);
  EXPECT_EQ(vm::gelu(-kInf), 0.0f);
  EXPECT_EQ(vm::gelu_grad(kInf), 1.0f);
  EXPECT_EQ(vm::gelu_grad(-kInf), 0.0f);
  const float big = std::numeric_limits<float>::max();
  for (float x : {10.0f, 20.0f, 1e10f, big}) {
    EXPECT_EQ(vm::gelu(x), x) << x;
    EXPECT_EQ(vm::gelu_grad(x), 1.0f) << x;
    EXPECT_EQ(vm::gelu(-x), 0.0f) << -x;   // −0, never NaN (gelu(−10) = −7.7e-23)
    EXPECT_NEAR(vm::gelu_grad(-x), 0.0f, 1e-21) << -x;   // gelu'(−10) = −7.7e-22, then 0
  }
  EXPECT_EQ(vm::gelu_grad(-20.0f), 0.0f);
  EXPECT_EQ(vm::gelu(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(vm::gelu(-0.0f)));
  EXPECT_EQ(vm::gelu_grad(0.0f), 0.5f);
  EXPECT_EQ(vm::normal_cdf(0.0f), 0.5f);
  const float sub = std::numeric_limits<float>::denorm_min() * 1000;
  EXPECT_EQ(vm::gelu(sub), 0.5f * sub);
  EXPECT_EQ(vm::gelu_grad(-sub), 0.5f);
}

TEST(VectorMath, ExpNonpositiveWithin2Ulp) {
  double worst = 0;
  for (float x = -87.0f; x <= 0.0f; x += 1.0f / 4096) {
    const double want = std::exp(double(x));
    const float wf = float(want);
    const double ulp = double(std::nextafter(wf, kInf)) - double(wf);
    worst = std::max(worst, std::abs(vm::exp_nonpositive(x) - want) / ulp);
  }
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(vm::exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(vm::exp_nonpositive(-100.0f), 0.0f);
  EXPECT_EQ(vm::exp_nonpositive(-kInf), 0.0f);
  EXPECT_TRUE(std::isnan(vm::exp_nonpositive(kNaN)));
}

// UnaryOp::gelu forward and backward on f32 tensors go through the same functions, on the
// contiguous loop and on the strided one (a transposed view), and stay within the bound.
TEST(VectorMath, GeluKernelsOnF32TensorsMatchDoubleReference) {
  vector<float> xs = sweep();
  if (xs.size() % 2) xs.pop_back();
  const int64_t n = int64_t(xs.size());
  const Tensor x = from_vector<float>(xs, {n});
  const Tensor xt = from_vector<float>(xs, {2, n / 2}).transpose(0, 1);   // (n/2, 2), strides (1, n/2)
  ASSERT_FALSE(xt.is_contiguous());
  const vector<float> xt_vals = xt.to_vector<float>();
  for (const auto& [in, vals, what] : {std::tuple{x, xs, "contiguous"}, std::tuple{xt, xt_vals, "strided"}}) {
    const Tensor y = raw::unary(UnaryOp::gelu, in);
    const Tensor gy = from_vector<float>(vector<float>(size_t(n), 1.0f), in.shape());
    const Tensor gx = raw::unary_backward(UnaryOp::gelu, in, y, gy);
    const vector<float> yv = y.to_vector<float>(), gv = gx.to_vector<float>();
    MaxErr f, g;
    for (size_t i = 0; i < vals.size(); ++i) {
      f.add(vals[i], yv[i], ref_gelu(vals[i]));
      g.add(vals[i], gv[i], ref_gelu_grad(vals[i]));
    }
    SCOPED_TRACE(what);
    expect_within(f, "UnaryOp::gelu forward");
    expect_within(g, "UnaryOp::gelu backward");
  }
  // special values through the kernels
  const Tensor s = from_vector<float>({kNaN, kInf, -kInf, 1e30f, -1e30f, 0.0f}, {6});
  const Tensor ys = raw::unary(UnaryOp::gelu, s);
  const vector<float> yv = ys.to_vector<float>();
  const vector<float> gv = raw::unary_backward(UnaryOp::gelu, s, ys, from_vector<float>(vector<float>(6, 1.0f), {6}))
                               .to_vector<float>();
  EXPECT_TRUE(std::isnan(yv[0]));
  EXPECT_TRUE(std::isnan(gv[0]));
  EXPECT_EQ(vector<float>(yv.begin() + 1, yv.end()), (vector<float>{kInf, 0.0f, 1e30f, 0.0f, 0.0f}));
  EXPECT_EQ(vector<float>(gv.begin() + 1, gv.end()), (vector<float>{1.0f, 0.0f, 1.0f, 0.0f, 0.5f}));
}

// An element's result does not depend on where it sits in the buffer: short buffers and
// every start offset put elements in the loops' scalar remainders, long ones in the
// vectorised bodies, and both give the same bits (they once differed for 16 % of gelu'
// values, through FP contraction applied to one and not the other).
TEST(VectorMath, ResultsDoNotDependOnPositionInTheLoop) {
  vector<float> xs;
  for (int k = 0; k < 4096; ++k) xs.push_back(-9.0f + 18.0f * float(k) / 4095.0f + 1e-4f * float(k % 7));
  const int64_t n = int64_t(xs.size());
  const Tensor x = from_vector<float>(xs, {n});
  const Tensor y = raw::unary(UnaryOp::gelu, x);
  const vector<float> fwd = y.to_vector<float>();
  const vector<float> bwd =
      raw::unary_backward(UnaryOp::gelu, x, y, from_vector<float>(vector<float>(size_t(n), 1.0f), {n})).to_vector<float>();
  int64_t differing = 0;
  for (int64_t len = 1; len <= 40; ++len)
    for (int64_t start = 0; start + len <= n; start += 97) {
      const Tensor part = from_vector<float>(vector<float>(xs.begin() + start, xs.begin() + start + len), {len});
      const Tensor yp = raw::unary(UnaryOp::gelu, part);
      const vector<float> f = yp.to_vector<float>();
      const vector<float> g =
          raw::unary_backward(UnaryOp::gelu, part, yp, from_vector<float>(vector<float>(size_t(len), 1.0f), {len}))
              .to_vector<float>();
      for (int64_t i = 0; i < len; ++i)
        differing += (f[size_t(i)] != fwd[size_t(start + i)]) + (g[size_t(i)] != bwd[size_t(start + i)]);
    }
  EXPECT_EQ(differing, 0);
}

// 16-bit tensors compute in f32 through the same path: the result is the f32 value rounded.
TEST(VectorMath, GeluOn16BitTensorsRoundsTheF32Path) {
  vector<float> xs;
  for (int k = -64; k <= 64; ++k) xs.push_back(float(k) / 8.0f);   // exact in f16 and bf16
  for (DType dt : {DType::f16, DType::bf16}) {
    const Tensor x = raw::to_dtype(from_vector<float>(xs, {int64_t(xs.size())}), dt);
    const vector<float> y = raw::unary(UnaryOp::gelu, x).to_vector<float>();
    const vector<float> want = raw::to_dtype(from_vector<float>([&] {
      vector<float> v;
      for (float a : xs) v.push_back(vm::gelu(a));
      return v;
    }(), {int64_t(xs.size())}), dt).to_vector<float>();
    EXPECT_EQ(y, want) << dt;
  }
}

// f64 keeps libm's erf bit for bit (the float64 gradchecks depend on it).
TEST(VectorMath, F64GeluIsStillLibm) {
  const vector<double> xs = {-7.5, -3.0, -0.7, -1e-3, 0.0, 0.3, 1.0, 2.5, 9.0};
  const Tensor x = from_vector<double>(xs, {int64_t(xs.size())});
  const vector<double> y = raw::unary(UnaryOp::gelu, x).to_vector<double>();
  const vector<double> g =
      raw::unary_backward(UnaryOp::gelu, x, raw::unary(UnaryOp::gelu, x), from_vector<double>(vector<double>(xs.size(), 1.0), {int64_t(xs.size())}))
          .to_vector<double>();
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i];
    EXPECT_EQ(y[i], 0.5 * v * (1.0 + std::erf(v * 0.70710678118654752440))) << v;
    EXPECT_NEAR(g[i], ref_gelu_grad(v), 1e-15) << v;
  }
  // infinities behave as in f32 (tensor/math.h clamps the factor x): no NaN from ±inf·0
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor s = from_vector<double>({-inf, inf}, {2});
  const Tensor ys = raw::unary(UnaryOp::gelu, s);
  EXPECT_EQ(ys.to_vector<double>(), (vector<double>{0.0, inf}));
  EXPECT_EQ(raw::unary_backward(UnaryOp::gelu, s, ys, from_vector<double>({1.0, 1.0}, {2})).to_vector<double>(),
            (vector<double>{0.0, 1.0}));
}

}  // namespace
