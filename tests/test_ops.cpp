// test_ops.cpp — values of the raw ops (tensor/ops.h) and the forward values of the
// differentiable ones, against hand-computed numbers or independent reference loops.
//
// Broadcasting arithmetic and comparisons (incl. integer, 16-bit float and NaN cases);
// unary math at known points (gelu/silu/sigmoid included); reductions over chosen dims,
// also of non-contiguous inputs, with integer promotion and NaN propagation; logsumexp and
// softmax stability; matmul against a naive triple loop over transposed, narrowed,
// expanded and batch-broadcast operands; conv2d forward and backward against direct
// convolution loops written here (padding, stride, rectangular kernels, the multi-threaded
// path); max_pool2d with padding; gather/scatter_add/index_select/index_add, topk (ties →
// lower index first), stable argsort, cumsum, where; in-place helpers; and the error of
// every raw-only op on bad input, naming the offending shapes, dtypes or values.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"

namespace {

using namespace mox;
using std::vector;

using mox::testing::expect_error;

Tensor T(const vector<double>& v, const Shape& s, DType dt = DType::f32) { return from_doubles(v, s, dt); }
Tensor I(const vector<int64_t>& v, const Shape& s) { return from_vector<int64_t>(v, s); }
Tensor B(const vector<int>& v, const Shape& s) {
  vector<uint8_t> u(v.begin(), v.end());
  return from_vector<uint8_t>(u, s).to(DType::boolean);
}
vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }
Tensor rnd(const Shape& s, uint64_t seed, DType dt = DType::f64, double lo = -1, double hi = 1) {
  Generator g(seed);
  return raw::uniform(s, lo, hi, dt, Device::cpu(), &g);
}
void expect_near(const vector<double>& got, const vector<double>& want, double tol, const char* what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) { EXPECT_TRUE(std::isnan(got[i])) << what << " at " << i; continue; }
    if (std::isinf(want[i])) { EXPECT_EQ(got[i], want[i]) << what << " at " << i; continue; }
    EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << what << " at " << i;
  }
}
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// ========================================================================= elementwise

TEST(Elementwise, BroadcastingArithmetic) {
  Tensor a = T({1, 2, 3}, {3, 1}), b = T({10, 20, 30, 40}, {1, 4});
  const vector<double> av = {1, 2, 3}, bv = {10, 20, 30, 40};
  struct Case { BinaryOp op; std::function<double(double, double)> f; };
  const vector<Case> cases = {
      {BinaryOp::add, [](double x, double y) { return x + y; }},
      {BinaryOp::sub, [](double x, double y) { return x - y; }},
      {BinaryOp::mul, [](double x, double y) { return x * y; }},
      {BinaryOp::div, [](double x, double y) { return x / y; }},
      {BinaryOp::maximum, [](double x, double y) { return std::max(x * 10, y) ; }},
      {BinaryOp::pow, [](double x, double y) { return std::pow(x, y / 10); }},
  };
  for (const Case& c : cases) {
    Tensor lhs = c.op == BinaryOp::maximum ? raw::binary_scalar(BinaryOp::mul, a, 10) : a;
    Tensor rhs = c.op == BinaryOp::pow ? raw::binary_scalar(BinaryOp::div, b, 10) : b;
    Tensor out = raw::binary(c.op, lhs, rhs);
    ASSERT_EQ(out.shape(), Shape({3, 4})) << binary_name(c.op);
    vector<double> want;
    for (double x : av) for (double y : bv) want.push_back(c.f(x, y));
    expect_near(vals(out), want, 1e-6, binary_name(c.op));
  }
  // minimum with a shared value: both equal → that value
  EXPECT_EQ(vals(raw::binary(BinaryOp::minimum, T({1, 5, 3}, {3}), T({2, 5, 0}, {3}))), (vector<double>{1, 5, 0}));
  // rank broadcast (4) + (2,3,4), and 0-d + (2,2)
  Tensor r = raw::add(T({1, 2, 3, 4}, {4}), raw::reshape(arange(0, 24, 1, DType::f32), {2, 3, 4}));
  vector<double> rv = vals(r);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(rv[size_t(i)], i + 1 + i % 4);
  EXPECT_EQ(vals(raw::mul(T({3}, {}), T({1, 2, 3, 4}, {2, 2}))), (vector<double>{3, 6, 9, 12}));
  EXPECT_EQ(raw::add(T({1}, {}), T({2}, {})).dim(), 0);
  // operator forms of the differentiable functions
  EXPECT_EQ(vals((a + b) * 2.0 - 1.0), vals(raw::binary_scalar(BinaryOp::sub, raw::binary_scalar(BinaryOp::mul, raw::add(a, b), 2), 1)));
  EXPECT_EQ(vals(2.0 / T({4, 8}, {2})), (vector<double>{0.5, 0.25}));
  EXPECT_EQ(vals(10.0 - T({4, 8}, {2})), (vector<double>{6, 2}));
  EXPECT_EQ(vals(T({4, 8}, {2}) / 4.0), (vector<double>{1, 2}));
  EXPECT_EQ(vals(-T({4, -8}, {2})), (vector<double>{-4, 8}));
  EXPECT_EQ(vals(pow(T({2, 3}, {2}), 3)), (vector<double>{8, 27}));
}

TEST(Elementwise, NonContiguousOperands) {
  Tensor m = raw::reshape(arange(0, 12, 1, DType::f64), {3, 4});
  Tensor mt = raw::transpose(m, 0, 1);          // (4, 3)
  Tensor n = raw::narrow(m, 1, 1, 3);           // (3, 3) with row stride 4
  Tensor sum = raw::add(raw::transpose(n, 0, 1), raw::narrow(mt, 0, 0, 3));
  // sum(i, j) = m(j, i+1) + m(j, i)
  vector<double> v = vals(sum);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(v[size_t(i * 3 + j)], (j * 4 + i + 1) + (j * 4 + i));
  // stride-0 (expanded) operands
  Tensor e = raw::expand(T({1, 2}, {2, 1}, DType::f64), {2, 3});
  EXPECT_EQ(vals(raw::mul(e, raw::transpose(raw::expand(T({5, 6, 7}, {3, 1}, DType::f64), {3, 2}), 0, 1))),
            (vector<double>{5, 6, 7, 10, 12, 14}));
  // big enough for the parallel loop, strided
  Tensor big = rnd({300, 200}, 3);
  Tensor bt = raw::transpose(big, 0, 1);
  vector<double> bv = vals(big), sv = vals(raw::add(bt, bt));
  for (int i = 0; i < 200; ++i)
    for (int j = 0; j < 300; ++j) ASSERT_EQ(sv[size_t(i * 300 + j)], 2 * bv[size_t(j * 200 + i)]);
}

Tensor u8() { return from_vector<uint8_t>({1, 2}, {2}); }

TEST(Elementwise, IntegerAndSixteenBitArithmetic) {
  Tensor a = from_vector<int64_t>({7, -7, 3}, {3}), b = from_vector<int64_t>({2, 2, 5}, {3});
  EXPECT_EQ(raw::add(a, b).to_vector<int64_t>(), (vector<int64_t>{9, -5, 8}));
  EXPECT_EQ(raw::mul(a, b).to_vector<int64_t>(), (vector<int64_t>{14, -14, 15}));
  EXPECT_EQ(raw::binary(BinaryOp::maximum, a, b).to_vector<int64_t>(), (vector<int64_t>{7, 2, 5}));
  EXPECT_EQ(raw::add(a, b).dtype(), DType::i64);
  EXPECT_EQ(raw::binary_scalar(BinaryOp::mul, a, 3).to_vector<int64_t>(), (vector<int64_t>{21, -21, 9}));
  Tensor u = from_vector<uint8_t>({250, 3}, {2});
  EXPECT_EQ(raw::add(u, u).to_vector<uint8_t>(), (vector<uint8_t>{244, 6}));   // wraps like uint8 arithmetic
  EXPECT_EQ(vals(raw::unary(UnaryOp::neg, a)), (vector<double>{-7, 7, -3}));
  EXPECT_EQ(vals(raw::unary(UnaryOp::abs, a)), (vector<double>{7, 7, 3}));
  EXPECT_EQ(vals(raw::unary(UnaryOp::relu, a)), (vector<double>{7, 0, 3}));
  EXPECT_EQ(vals(raw::unary(UnaryOp::square, a)), (vector<double>{49, 49, 9}));
  // integer division by zero is an error, not SIGFPE
  expect_error([&] { raw::div(a, from_vector<int64_t>({1, 0, 1}, {3})); }, {"division by zero"});
  expect_error([&] { raw::binary_scalar(BinaryOp::div, a, 0.0); }, {"division by zero"});
  expect_error([&] { raw::binary_scalar(BinaryOp::div, I({1, 0}, {2}), 6.0, /*reversed=*/true); }, {"division by zero", "[2] i64"});
  EXPECT_EQ(raw::binary_scalar(BinaryOp::div, a, 21.0, true).to_vector<int64_t>(), (vector<int64_t>{3, -3, 7}));
  EXPECT_EQ(raw::div(a, b).to_vector<int64_t>(), (vector<int64_t>{3, -3, 0}));   // truncates toward zero
  // MIN / -1 overflows: it wraps (to MIN) instead of raising SIGFPE
  const int64_t mn = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(raw::div(I({mn, 6}, {2}), I({-1, -1}, {2})).to_vector<int64_t>(), (vector<int64_t>{mn, -6}));
  const int32_t mn32 = std::numeric_limits<int32_t>::min();
  EXPECT_EQ(raw::div(from_vector<int32_t>({mn32}, {1}), from_vector<int32_t>({-1}, {1})).to_vector<int32_t>(),
            (vector<int32_t>{mn32}));
  // a fractional scalar does not silently truncate for integer tensors...
  expect_error([&] { raw::binary_scalar(BinaryOp::mul, a, 0.5); }, {"0.5", "[3] i64"});
  expect_error([&] { raw::binary_scalar(BinaryOp::maximum, u8(), -1.0); }, {"-1", "u8"});
  EXPECT_EQ(raw::binary_scalar(BinaryOp::add, from_vector<uint8_t>({5}, {1}), -1.0).to_vector<uint8_t>(),
            (vector<uint8_t>{4}));   // add/sub/mul wrap like uint8 arithmetic
  // ...and comparisons against it are exact
  EXPECT_EQ(raw::binary_scalar(BinaryOp::lt, from_vector<int64_t>({2, 3}, {2}), 2.5).to_vector<bool>(),
            (vector<bool>{true, false}));
  EXPECT_EQ(raw::binary_scalar(BinaryOp::eq, from_vector<int64_t>({2, 3}, {2}), 2.5).to_vector<bool>(),
            (vector<bool>{false, false}));
  // 16-bit floats compute in float and round once
  Tensor h = T({1.5, 2.25, 1000}, {3}, DType::f16);
  EXPECT_EQ(vals(raw::add(h, h)), (vector<double>{3, 4.5, 2000}));
  EXPECT_EQ(raw::add(h, h).dtype(), DType::f16);
  EXPECT_EQ(vals(raw::mul(T({1.0 / 3}, {1}, DType::bf16), T({3}, {1}, DType::bf16))), (vector<double>{1}));
  Tensor bf = T({1, 256}, {2}, DType::bf16);
  EXPECT_EQ(vals(raw::add(bf, T({1, 1}, {2}, DType::bf16))), (vector<double>{2, 256}));   // 257 → 256 (8 bits)
  // bool: comparisons only
  Tensor bl = B({1, 0}, {2});
  expect_error([&] { raw::add(bl, bl); }, {"add", "[2] bool"});
  expect_error([&] { raw::binary_scalar(BinaryOp::mul, bl, 2.0); }, {"mul", "[2] bool"});
  EXPECT_EQ(raw::binary(BinaryOp::eq, bl, B({1, 1}, {2})).to_vector<bool>(), (vector<bool>{true, false}));
}

TEST(Elementwise, IntegerPowIsExactAndWraps) {
  auto pow64 = [](vector<int64_t> a, vector<int64_t> b) {
    const Shape s{int64_t(a.size())};
    return raw::binary(BinaryOp::pow, I(a, s), I(b, s)).to_vector<int64_t>();
  };
  // exact where a double would round: 3^39 = 4052555153018976267 > 2^53
  EXPECT_EQ(pow64({3, 2, -3, 5, 0, 3}, {4, 10, 3, 0, 0, 39}), (vector<int64_t>{81, 1024, -27, 1, 1, 4052555153018976267}));
  // a negative exponent: 1 for 1, ±1 for -1 by parity, 0 for everything else, 0 included
  EXPECT_EQ(pow64({1, -1, -1, 2, -2, 0, 7}, {-5, -3, -2, -1, -1, -1, -2}), (vector<int64_t>{1, -1, 1, 0, 0, 0, 0}));
  // overflow wraps around like the other integer ops: 2^63 and 3^40 (mod 2^64), (-2)^63
  const int64_t mn = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(pow64({2, 3, -2, 2}, {63, 40, 63, 64}), (vector<int64_t>{mn, int64_t(12157665459056928801ull), mn, 0}));
  const Tensor i32 = from_vector<int32_t>({2, 3, -2}, {3}), e32 = from_vector<int32_t>({31, 21, 31}, {3});
  EXPECT_EQ(raw::binary(BinaryOp::pow, i32, e32).to_vector<int32_t>(),
            (vector<int32_t>{std::numeric_limits<int32_t>::min(), 1870418611, std::numeric_limits<int32_t>::min()}));
  EXPECT_EQ(raw::binary(BinaryOp::pow, from_vector<uint8_t>({2, 3, 3}, {3}), from_vector<uint8_t>({8, 5, 6}, {3}))
                .to_vector<uint8_t>(),
            (vector<uint8_t>{0, 243, 217}));   // 256 and 729 mod 256
  EXPECT_EQ(raw::binary_scalar(BinaryOp::pow, I({0, 1, 4}, {3}), -1.0).to_vector<int64_t>(), (vector<int64_t>{0, 1, 0}));
}

TEST(Elementwise, Comparisons) {
  Tensor a = T({1, 2, 3}, {3, 1}), b = T({2, 3}, {1, 2});
  struct Case { BinaryOp op; vector<bool> want; };
  // pairs (a_i, b_j): (1,2) (1,3) (2,2) (2,3) (3,2) (3,3)
  const vector<Case> cases = {{BinaryOp::eq, {0, 0, 1, 0, 0, 1}}, {BinaryOp::ne, {1, 1, 0, 1, 1, 0}},
                              {BinaryOp::lt, {1, 1, 0, 1, 0, 0}}, {BinaryOp::le, {1, 1, 1, 1, 0, 1}},
                              {BinaryOp::gt, {0, 0, 0, 0, 1, 0}}, {BinaryOp::ge, {0, 0, 1, 0, 1, 1}}};
  for (const Case& c : cases) {
    Tensor r = raw::binary(c.op, a, b);
    EXPECT_EQ(r.dtype(), DType::boolean);
    EXPECT_EQ(r.shape(), Shape({3, 2}));
    EXPECT_EQ(r.to_vector<bool>(), c.want) << binary_name(c.op);
  }
  EXPECT_EQ(eq(a, a).to_vector<bool>(), (vector<bool>{1, 1, 1}));
  EXPECT_EQ(gt(a, T({2}, {})).to_vector<bool>(), (vector<bool>{0, 0, 1}));
  EXPECT_EQ(ge(a, T({2}, {})).to_vector<bool>(), (vector<bool>{0, 1, 1}));
  EXPECT_EQ(lt(a, T({2}, {})).to_vector<bool>(), (vector<bool>{1, 0, 0}));
  EXPECT_EQ(le(a, T({2}, {})).to_vector<bool>(), (vector<bool>{1, 1, 0}));
  EXPECT_EQ(ne(a, T({2}, {})).to_vector<bool>(), (vector<bool>{1, 0, 1}));
  // NaN compares unequal to everything, itself included
  Tensor n = T({kNaN, 1}, {2});
  EXPECT_EQ(eq(n, n).to_vector<bool>(), (vector<bool>{0, 1}));
  EXPECT_EQ(ne(n, n).to_vector<bool>(), (vector<bool>{1, 0}));
  EXPECT_EQ(lt(n, T({5, 5}, {2})).to_vector<bool>(), (vector<bool>{0, 1}));
  EXPECT_EQ(raw::binary_scalar(BinaryOp::gt, T({0.2, 0.7}, {2}), 0.5).to_vector<bool>(), (vector<bool>{0, 1}));
  EXPECT_EQ(raw::binary_scalar(BinaryOp::gt, T({0.2, 0.7}, {2}), 0.5, /*reversed=*/true).to_vector<bool>(),
            (vector<bool>{1, 0}));
}

TEST(Elementwise, Where) {
  Tensor c = B({1, 0, 0, 1}, {2, 2});
  EXPECT_EQ(vals(raw::where(c, T({1, 2, 3, 4}, {2, 2}), T({-1, -2, -3, -4}, {2, 2}))), (vector<double>{1, -2, -3, 4}));
  // condition (3,1), a (1,4), b 0-d → (3,4)
  Tensor out = where(B({1, 0, 1}, {3, 1}), T({1, 2, 3, 4}, {1, 4}), T({0}, {}));
  EXPECT_EQ(out.shape(), Shape({3, 4}));
  EXPECT_EQ(vals(out), (vector<double>{1, 2, 3, 4, 0, 0, 0, 0, 1, 2, 3, 4}));
  EXPECT_EQ(raw::where(B({0, 1}, {2}), I({1, 2}, {2}), I({3, 4}, {2})).to_vector<int64_t>(), (vector<int64_t>{3, 2}));
}

TEST(Elementwise, UnaryAtKnownPoints) {
  auto u = [](UnaryOp op, const vector<double>& x) { return vals(raw::unary(op, T(x, {int64_t(x.size())}, DType::f64))); };
  const double ln3 = std::log(3.0);
  expect_near(u(UnaryOp::exp, {0, 1, -1}), {1, 2.718281828459045, 0.36787944117144233}, 1e-15);
  expect_near(u(UnaryOp::log, {1, 2.718281828459045, 0, -1}), {0, 1, -kInf, kNaN}, 1e-15);
  expect_near(u(UnaryOp::sqrt, {4, 2, 0}), {2, 1.4142135623730951, 0}, 1e-15);
  expect_near(u(UnaryOp::rsqrt, {4, 0.25}), {0.5, 2}, 1e-15);
  expect_near(u(UnaryOp::sin, {0, M_PI / 2, M_PI / 6}), {0, 1, 0.5}, 1e-15);
  expect_near(u(UnaryOp::cos, {0, M_PI, M_PI / 3}), {1, -1, 0.5}, 1e-15);
  expect_near(u(UnaryOp::tanh, {0, std::log(2.0)}), {0, 0.6}, 1e-15);   // tanh(ln 2) = 3/5
  expect_near(u(UnaryOp::sigmoid, {0, ln3, -ln3, 40, -800}), {0.5, 0.75, 0.25, 1, 0}, 1e-15);
  expect_near(u(UnaryOp::relu, {-2, 0, 3}), {0, 0, 3}, 0);
  expect_near(u(UnaryOp::abs, {-2, 0, 3}), {2, 0, 3}, 0);
  expect_near(u(UnaryOp::neg, {-2, 3}), {2, -3}, 0);
  expect_near(u(UnaryOp::square, {-3, 0.5}), {9, 0.25}, 0);
  expect_near(u(UnaryOp::reciprocal, {-4, 0.5}), {-0.25, 2}, 0);
  // GELU: x·Φ(x); Φ(1) = 0.8413447460685429; tanh form (GPT-2) reference values
  expect_near(u(UnaryOp::gelu, {0, 1, -2, 0.5}), {0, 0.8413447460685429, -0.04550026389635842, 0.34573123063700656},
              1e-14);
  expect_near(u(UnaryOp::gelu_tanh, {0, 1, -2, 0.5}), {0, 0.8411919906082768, -0.04540230591222494, 0.34571400982514394},
              1e-14);
  // SiLU: x·σ(x)
  expect_near(u(UnaryOp::silu, {0, 1, -2}), {0, 0.7310585786300049, -0.2384058440442351}, 1e-14);
  // the differentiable wrappers compute the same values, in f32 too
  Tensor x = T({-1, 0.5, 2}, {3});
  expect_near(vals(gelu(x)), {-0.15865525393145707, 0.34573123063700656, 1.9544997361036416}, 1e-6);
  expect_near(vals(silu(x)), {-0.2689414213699951, 0.31122966560092724, 1.7615941559557649}, 1e-6);
  expect_near(vals(sigmoid(x)), {0.2689414213699951, 0.6224593312018546, 0.8807970779778823}, 1e-6);
  expect_near(vals(tanh(x)), {std::tanh(-1.0), std::tanh(0.5), std::tanh(2.0)}, 1e-6);
  expect_near(vals(exp(T({1}, {1}, DType::bf16))), {2.71875}, 0);   // computed in float, rounded to bf16
}

// ========================================================================== reductions

// Reference reduction of a row-major (2,3,4) array over a dim mask.
vector<double> ref_reduce(const vector<double>& x, const vector<int64_t>& shape, const vector<bool>& mask,
                          const std::function<double(const vector<double>&)>& f) {
  vector<int64_t> out_shape;
  for (size_t d = 0; d < shape.size(); ++d) out_shape.push_back(mask[d] ? 1 : shape[d]);
  int64_t out_n = 1;
  for (int64_t s : out_shape) out_n *= s;
  vector<vector<double>> groups(static_cast<size_t>(out_n));
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  for (int64_t k = 0; k < n; ++k) {
    int64_t rem = k, o = 0, mult = 1;
    vector<int64_t> c(shape.size());
    for (int d = int(shape.size()) - 1; d >= 0; --d) { c[size_t(d)] = rem % shape[size_t(d)]; rem /= shape[size_t(d)]; }
    for (int d = int(shape.size()) - 1; d >= 0; --d) {
      o += (mask[size_t(d)] ? 0 : c[size_t(d)]) * mult;
      mult *= out_shape[size_t(d)];
    }
    groups[size_t(o)].push_back(x[size_t(k)]);
  }
  vector<double> out;
  for (auto& g : groups) out.push_back(f(g));
  return out;
}

TEST(Reductions, SumMeanMaxMinProdOverChosenDims) {
  Tensor x = rnd({2, 3, 4}, 5, DType::f64, 0.5, 1.5);
  Tensor xp = raw::contiguous(raw::permute(rnd({4, 2, 3}, 6, DType::f64, 0.5, 1.5), {1, 2, 0}));
  Tensor xnc = raw::permute(raw::contiguous(raw::permute(x, {2, 0, 1})), {1, 2, 0});   // x's values, strided
  ASSERT_FALSE(xnc.is_contiguous());
  const vector<double> xv = vals(x);
  auto fsum = [](const vector<double>& g) { double s = 0; for (double v : g) s += v; return s; };
  auto fmean = [&](const vector<double>& g) { return fsum(g) / double(g.size()); };
  auto fmax = [](const vector<double>& g) { return *std::max_element(g.begin(), g.end()); };
  auto fmin = [](const vector<double>& g) { return *std::min_element(g.begin(), g.end()); };
  auto fprod = [](const vector<double>& g) { double s = 1; for (double v : g) s *= v; return s; };
  const vector<std::pair<ReduceOp, std::function<double(const vector<double>&)>>> ops = {
      {ReduceOp::sum, fsum}, {ReduceOp::mean, fmean}, {ReduceOp::max, fmax}, {ReduceOp::min, fmin}, {ReduceOp::prod, fprod}};
  const vector<Shape> dim_sets = {{}, {0}, {1}, {2}, {-1}, {0, 2}, {2, 0}, {0, 1}, {1, 2}, {0, 1, 2}};
  for (const auto& [op, f] : ops)
    for (const Shape& dims : dim_sets) {
      vector<bool> mask(3, dims.empty());
      for (int64_t d : dims) mask[size_t(d < 0 ? d + 3 : d)] = true;
      const vector<double> want = ref_reduce(xv, {2, 3, 4}, mask, f);
      for (const Tensor& in : {x, xnc}) {
        SCOPED_TRACE(::testing::Message() << "op " << int(op) << " dims " << dims << (in.is_contiguous() ? "" : " strided"));
        Tensor kept = raw::reduce(op, in, dims, true);
        Tensor dropped = raw::reduce(op, in, dims, false);
        Shape ks = {2, 3, 4}, ds;
        for (int d = 0; d < 3; ++d) { if (mask[size_t(d)]) ks[d] = 1; else ds.push_back(ks[d]); }
        EXPECT_EQ(kept.shape(), ks);
        EXPECT_EQ(dropped.shape(), ds);
        expect_near(vals(kept), want, 1e-14);
        expect_near(vals(dropped), want, 1e-14);
      }
    }
  (void)xp;
  // the differentiable wrappers
  expect_near(vals(sum(x, {1})), ref_reduce(xv, {2, 3, 4}, {false, true, false}, fsum), 1e-14);
  expect_near(vals(mean(x, {0, 2}, true)), ref_reduce(xv, {2, 3, 4}, {true, false, true}, fmean), 1e-14);
  expect_near(vals(max(x, 2)), ref_reduce(xv, {2, 3, 4}, {false, false, true}, fmax), 0);
  expect_near(vals(min(xnc, 0, true)), ref_reduce(xv, {2, 3, 4}, {true, false, false}, fmin), 0);
  EXPECT_EQ(max(x).item<double>(), fmax(xv));
  EXPECT_EQ(max(x).dim(), 0);
}

TEST(Reductions, LargeAndLeadingDimReductions) {
  // the leading-dims path (bias gradients) and the parallel row path
  Tensor x = rnd({512, 130}, 8);
  const vector<double> xv = vals(x);
  vector<double> col(130, 0.0), row(512, 0.0);
  for (int r = 0; r < 512; ++r)
    for (int c = 0; c < 130; ++c) { col[size_t(c)] += xv[size_t(r * 130 + c)]; row[size_t(r)] += xv[size_t(r * 130 + c)]; }
  expect_near(vals(raw::sum(x, {0})), col, 1e-12, "leading");
  expect_near(vals(raw::sum(x, {1})), row, 1e-12, "rows");
  expect_near(vals(raw::reduce(ReduceOp::mean, raw::reshape(x, {4, 128, 130}), {0, 1}, false)),
              [&] { vector<double> m = col; for (double& v : m) v /= 512; return m; }(), 1e-12, "mean leading");
  // f32 over many column blocks: each column is summed in row order in double, then rounded,
  // whatever the blocking and the threads — so exactly the sequential double sum.
  Tensor y = raw::to_dtype(rnd({300, 1000}, 9), DType::f32);
  const vector<float> yv = y.to_vector<float>();
  const vector<float> got = raw::sum(y, {0}).to_vector<float>();
  for (int c = 0; c < 1000; ++c) {
    double s = 0;
    for (int r = 0; r < 300; ++r) s += double(yv[size_t(r * 1000 + c)]);
    ASSERT_EQ(got[size_t(c)], float(s)) << "column " << c;
  }
}

TEST(Reductions, DtypesEmptyAndNaN) {
  Tensor i = from_vector<int32_t>({1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(raw::sum(i).dtype(), DType::i64);
  EXPECT_EQ(raw::sum(i).item<int64_t>(), 10);
  EXPECT_EQ(raw::reduce(ReduceOp::prod, i, {1}, false).to_vector<int64_t>(), (vector<int64_t>{2, 12}));
  EXPECT_EQ(raw::reduce(ReduceOp::max, i, {0}, false).dtype(), DType::i32);
  EXPECT_EQ(raw::reduce(ReduceOp::max, i, {0}, false).to_vector<int32_t>(), (vector<int32_t>{3, 4}));
  Tensor u = from_vector<uint8_t>({200, 200, 200}, {3});
  EXPECT_EQ(raw::sum(u).item<int64_t>(), 600);   // no uint8 overflow
  EXPECT_EQ(raw::sum(B({1, 0, 1, 1}, {4})).item<int64_t>(), 3);   // bool sums count
  // 16-bit floats accumulate wide: an f16 accumulator would stall at 2048
  EXPECT_EQ(raw::sum(ones({3000}, DType::f16)).item<double>(), 3000);
  EXPECT_EQ(raw::sum(ones({3000}, DType::f16)).dtype(), DType::f16);
  EXPECT_NEAR(raw::reduce(ReduceOp::mean, full({1000}, 0.1, DType::bf16), {}, false).item<double>(), 0.1, 1e-3);
  // empty: sum 0, prod 1, mean NaN; max/min throw
  EXPECT_EQ(raw::sum(zeros({0, 3})).item<double>(), 0.0);
  EXPECT_EQ(vals(raw::sum(zeros({0, 3}), {0})), (vector<double>{0, 0, 0}));
  EXPECT_EQ(raw::reduce(ReduceOp::prod, zeros({0}), {}, false).item<double>(), 1.0);
  EXPECT_TRUE(std::isnan(raw::reduce(ReduceOp::mean, zeros({0}), {}, false).item<double>()));
  expect_error([] { raw::reduce(ReduceOp::max, zeros({0, 3}), {}, false); }, {"max", "[0, 3]"});
  // NaN propagates through max/min and sum
  Tensor n = T({1, kNaN, 3, 4, 5, 6}, {2, 3});
  vector<double> mx = vals(raw::reduce(ReduceOp::max, n, {1}, false));
  EXPECT_TRUE(std::isnan(mx[0]));
  EXPECT_EQ(mx[1], 6);
  EXPECT_TRUE(std::isnan(vals(raw::reduce(ReduceOp::min, n, {0}, false))[1]));
  EXPECT_TRUE(std::isnan(raw::sum(n).item<double>()));
  // 0-d input
  EXPECT_EQ(raw::sum(T({5}, {})).item<double>(), 5);
  EXPECT_EQ(raw::sum(T({5}, {}), {0}).item<double>(), 5);
  EXPECT_EQ(max(T({-2}, {})).item<double>(), -2);
}

TEST(Reductions, ArgmaxArgminFirstOfTies) {
  Tensor x = T({3, 1, 3, 2, 0, 0, 5, 5}, {2, 4});
  EXPECT_EQ(raw::argmax(x, 1).to_vector<int64_t>(), (vector<int64_t>{0, 2}));
  EXPECT_EQ(raw::argmin(x, 1).to_vector<int64_t>(), (vector<int64_t>{1, 0}));
  EXPECT_EQ(raw::argmax(x, 0).to_vector<int64_t>(), (vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(raw::argmax(x, -1, true).shape(), Shape({2, 1}));
  EXPECT_EQ(argmax(raw::transpose(x, 0, 1), 0).to_vector<int64_t>(), (vector<int64_t>{0, 2}));
  EXPECT_EQ(raw::argmax(T({1, kNaN, 5}, {3}), 0).item<int64_t>(), 1);   // NaN is the max
  EXPECT_EQ(raw::argmax(I({4, 9, 9}, {3}), 0).item<int64_t>(), 1);
  EXPECT_EQ(raw::argmax(T({7}, {}), 0).item<int64_t>(), 0);
  expect_error([] { raw::argmax(zeros({2, 0}), 1); }, {"[2, 0]", "empty"});
}

TEST(Reductions, LogsumexpIsStable) {
  Tensor x = T({0, std::log(2.0), std::log(3.0), 1000, 1000, -kInf}, {2, 3}, DType::f64);
  vector<double> l = vals(logsumexp(x, 1));
  EXPECT_NEAR(l[0], std::log(6.0), 1e-15);
  EXPECT_NEAR(l[1], 1000 + std::log(2.0), 1e-12);
  EXPECT_EQ(logsumexp(x, 1, true).shape(), Shape({2, 1}));
  EXPECT_EQ(vals(logsumexp(T({-kInf, -kInf}, {2}), 0)), (vector<double>{-kInf}));
  expect_near(vals(logsumexp(T({1, 2, 3, 4}, {2, 2}), 0)), {std::log(std::exp(1) + std::exp(3)), std::log(std::exp(2) + std::exp(4))}, 1e-6);
  EXPECT_EQ(vals(logsumexp(T({kInf, 1}, {2}), 0)), (vector<double>{kInf}));
}

TEST(Reductions, SoftmaxAndLogSoftmax) {
  Tensor x = T({1, 2, 3, 1000, 1000, 1000}, {2, 3}, DType::f64);
  const double z = std::exp(1) + std::exp(2) + std::exp(3);
  expect_near(vals(raw::softmax(x, -1)), {std::exp(1) / z, std::exp(2) / z, std::exp(3) / z, 1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-15);
  expect_near(vals(raw::softmax(x, -1, true)),
              {1 - std::log(z), 2 - std::log(z), 3 - std::log(z), -std::log(3.0), -std::log(3.0), -std::log(3.0)}, 1e-14);
  // along dim 0: columns (1, 1000) etc.
  vector<double> s0 = vals(softmax(T({0, 1, 2, 0, 0, 0}, {2, 3}, DType::f64), 0));
  expect_near(s0, {0.5, std::exp(1) / (1 + std::exp(1)), std::exp(2) / (1 + std::exp(2)), 0.5, 1 / (1 + std::exp(1)),
                   1 / (1 + std::exp(2))},
              1e-15);
  // -inf logits get probability 0; log_softmax of them is -inf
  expect_near(vals(softmax(T({0, -kInf, 0}, {3}))), {0.5, 0, 0.5}, 1e-7);
  EXPECT_EQ(vals(log_softmax(T({0, -kInf}, {2})))[1], -kInf);
  // rows sum to 1 on a strided 3-D input, any dim
  Tensor r = raw::transpose(rnd({4, 5, 6}, 9, DType::f64, -5, 5), 0, 2);
  for (int d = 0; d < 3; ++d) {
    vector<double> s = vals(raw::sum(softmax(r, d), {d}));
    for (double v : s) EXPECT_NEAR(v, 1.0, 1e-14);
    expect_near(vals(log_softmax(r, d)), vals(raw::unary(UnaryOp::log, softmax(r, d))), 1e-13);
  }
  EXPECT_EQ(softmax(T({3}, {}), 0).item<double>(), 1.0);
  expect_near(vals(softmax(T({1, 2}, {2}, DType::f16))), {0.2689, 0.7310}, 1e-3);
}

TEST(Reductions, Cumsum) {
  Tensor x = T({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(vals(raw::cumsum(x, 1)), (vector<double>{1, 3, 6, 4, 9, 15}));
  EXPECT_EQ(vals(raw::cumsum(x, 0)), (vector<double>{1, 2, 3, 5, 7, 9}));
  EXPECT_EQ(vals(cumsum(raw::transpose(x, 0, 1), 1)), (vector<double>{1, 5, 2, 7, 3, 9}));
  Tensor c = raw::cumsum(from_vector<int32_t>({1, 2, 3}, {3}), 0);
  EXPECT_EQ(c.dtype(), DType::i64);
  EXPECT_EQ(c.to_vector<int64_t>(), (vector<int64_t>{1, 3, 6}));
  EXPECT_EQ(raw::cumsum(B({1, 1, 0, 1}, {4}), 0).to_vector<int64_t>(), (vector<int64_t>{1, 2, 2, 3}));
  EXPECT_EQ(vals(raw::cumsum(ones({3000}, DType::f16), 0))[2999], 3000);   // wide accumulator
  EXPECT_EQ(raw::cumsum(T({4}, {}), 0).item<double>(), 4);
}

// ====================================================================== linear algebra

vector<double> ref_matmul(const Tensor& a, const Tensor& b) {   // both (B, M, K)/(B, K, N) already broadcast
  const int64_t Bn = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  vector<double> av = vals(a), bv = vals(b), out(size_t(Bn * M * N), 0.0);
  for (int64_t z = 0; z < Bn; ++z)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += av[size_t((z * M + i) * K + k)] * bv[size_t((z * K + k) * N + j)];
        out[size_t((z * M + i) * N + j)] = s;
      }
  return out;
}

TEST(Matmul, HandComputed) {
  Tensor a = T({1, 2, 3, 4, 5, 6}, {2, 3}), b = T({7, 8, 9, 10, 11, 12}, {3, 2});
  EXPECT_EQ(vals(raw::matmul(a, b)), (vector<double>{58, 64, 139, 154}));
  EXPECT_EQ(vals(matmul(b, a)), (vector<double>{39, 54, 69, 49, 68, 87, 59, 82, 105}));
  EXPECT_EQ(vals(matmul(T({1, 2, 3}, {3}), b)), (vector<double>{58, 64}));
  EXPECT_EQ(matmul(T({1, 2, 3}, {3}), b).shape(), Shape({2}));
  EXPECT_EQ(vals(matmul(a, T({1, 0, -1}, {3}))), (vector<double>{-2, -2}));
  Tensor dot = matmul(T({1, 2, 3}, {3}), T({4, 5, 6}, {3}));
  EXPECT_EQ(dot.dim(), 0);
  EXPECT_EQ(dot.item<double>(), 32);
  EXPECT_EQ(raw::matmul(T({1, 2, 3}, {3}), T({4, 5, 6}, {3})).item<double>(), 32);
  EXPECT_EQ(vals(raw::matmul(zeros({2, 0}), zeros({0, 3}))), vector<double>(6, 0.0));
  EXPECT_EQ(raw::matmul(zeros({0, 4}), zeros({4, 3})).shape(), Shape({0, 3}));
}

TEST(Matmul, StridedAndBroadcastOperandsMatchANaiveLoop) {
  struct Case { const char* name; Tensor a, b; Shape out; };
  Tensor base = rnd({6, 7}, 1), base3 = rnd({2, 7, 6}, 2);
  vector<Case> cases = {
      {"contiguous", rnd({5, 4}, 3), rnd({4, 3}, 4), {5, 3}},
      {"a transposed", raw::transpose(rnd({4, 5}, 5), 0, 1), rnd({4, 3}, 6), {5, 3}},
      {"b transposed", rnd({5, 4}, 7), raw::transpose(rnd({3, 4}, 8), 0, 1), {5, 3}},
      {"both transposed", raw::transpose(rnd({4, 5}, 9), 0, 1), raw::transpose(rnd({3, 4}, 10), 0, 1), {5, 3}},
      {"narrowed rows", raw::narrow(base, 1, 2, 4), rnd({4, 3}, 11), {6, 3}},
      {"narrowed cols of transposed", raw::narrow(raw::transpose(base, 0, 1), 0, 1, 5), rnd({6, 2}, 12), {5, 2}},
      {"expanded rows (stride 0)", raw::expand(rnd({1, 4}, 13), {5, 4}), rnd({4, 3}, 14), {5, 3}},
      {"expanded cols (stride 0)", rnd({5, 4}, 15), raw::expand(rnd({4, 1}, 16), {4, 3}), {5, 3}},
      {"single row", rnd({1, 4}, 17), rnd({4, 3}, 18), {1, 3}},
      {"single column", rnd({5, 1}, 19), rnd({1, 3}, 20), {5, 3}},
      {"batched", rnd({3, 5, 4}, 21), rnd({3, 4, 2}, 22), {3, 5, 2}},
      {"batched transposed", raw::transpose(base3, 1, 2), rnd({2, 7, 3}, 23), {2, 6, 3}},
      {"batch broadcast 2-D a", rnd({5, 4}, 24), rnd({3, 4, 2}, 25), {3, 5, 2}},
      {"batch broadcast (2,1) x (3)", rnd({2, 1, 5, 4}, 26), rnd({3, 4, 2}, 27), {2, 3, 5, 2}},
      {"permuted batch", raw::permute(rnd({5, 3, 4}, 28), {1, 0, 2}), rnd({3, 4, 2}, 29), {3, 5, 2}},
      {"parallel batch", rnd({8, 33, 32}, 30), rnd({8, 32, 31}, 31), {8, 33, 31}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor a = c.a.to(dt), b = c.b.to(dt);
      Tensor out = raw::matmul(a, b);
      ASSERT_EQ(out.shape(), c.out);
      Shape batch(c.out.begin(), c.out.end() - 2);
      Shape sa = batch, sb = batch;
      sa.push_back(a.size(-2)); sa.push_back(a.size(-1));
      sb.push_back(b.size(-2)); sb.push_back(b.size(-1));
      const int64_t Bn = batch.numel();
      vector<double> want = ref_matmul(raw::reshape(raw::expand(c.a, sa), {Bn, a.size(-2), a.size(-1)}),
                                       raw::reshape(raw::expand(c.b, sb), {Bn, b.size(-2), b.size(-1)}));
      expect_near(vals(out), want, dt == DType::f64 ? 1e-13 : 1e-5, dtype_name(dt));
      expect_near(vals(matmul(a, b)), want, dt == DType::f64 ? 1e-13 : 1e-5, "autograd matmul");
    }
  }
  // 16-bit floats: widened to f32, rounded once
  Tensor a = rnd({4, 5}, 40), b = rnd({5, 3}, 41);
  vector<double> want = ref_matmul(raw::reshape(a.to(DType::f16).to(DType::f64), {1, 4, 5}),
                                   raw::reshape(b.to(DType::f16).to(DType::f64), {1, 5, 3}));
  expect_near(vals(raw::matmul(a.to(DType::f16), b.to(DType::f16))), want, 2e-3, "f16");
  EXPECT_EQ(raw::matmul(a.to(DType::bf16), b.to(DType::bf16)).dtype(), DType::bf16);
}

TEST(Matmul, Linear) {
  Tensor x = rnd({2, 3, 4}, 50), w = rnd({5, 4}, 51), b = rnd({5}, 52);
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.shape(), Shape({2, 3, 5}));
  vector<double> want = vals(raw::add(raw::matmul(x, raw::transpose(w, 0, 1)), b));
  expect_near(vals(y), want, 1e-14);
  expect_near(vals(linear(x, w)), vals(raw::matmul(x, raw::transpose(w, 0, 1))), 1e-14);
  expect_near(vals(linear(raw::transpose(rnd({4, 3}, 53), 0, 1), raw::transpose(rnd({4, 5}, 54), 0, 1), b)),
              vals(raw::add(raw::matmul(raw::transpose(rnd({4, 3}, 53), 0, 1), rnd({4, 5}, 54)), b)), 1e-14);
  expect_near(vals(linear(T({1, 2}, {2}, DType::f64), T({1, 1, 0, 1}, {2, 2}, DType::f64), T({10, 20}, {2}, DType::f64))),
              {13, 22}, 0);
  // 16-bit floats: the bias is accumulated into in f32, the result rounded once
  for (DType dt : {DType::bf16, DType::f16}) {
    Tensor x16 = x.to(dt), w16 = w.to(dt), b16 = b.to(dt);
    Tensor y16 = linear(x16, w16, b16);
    EXPECT_EQ(y16.dtype(), dt);
    vector<double> ref = vals(raw::add(raw::matmul(x16.to(DType::f64), raw::transpose(w16.to(DType::f64), 0, 1)),
                                       b16.to(DType::f64)));
    expect_near(vals(y16), ref, dt == DType::bf16 ? 1e-2 : 2e-3, dtype_name(dt));
  }
}

// ====================================================================== conv and pool

// Direct convolution: out[n][o][i][j] = b[o] + Σ_c,kh,kw x[n][c][i·s−p+kh][j·s−p+kw]·w[o][c][kh][kw].
vector<double> ref_conv(const vector<double>& x, const vector<double>& w, const vector<double>* b, int64_t N,
                        int64_t C, int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t s, int64_t p,
                        int64_t& OH, int64_t& OW) {
  OH = (H + 2 * p - KH) / s + 1;
  OW = (W + 2 * p - KW) / s + 1;
  vector<double> out(size_t(N * O * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double acc = b ? (*b)[size_t(o)] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = i * s - p + kh, iw = j * s - p + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += x[size_t(((n * C + c) * H + ih) * W + iw)] * w[size_t(((o * C + c) * KH + kh) * KW + kw)];
              }
          out[size_t(((n * O + o) * OH + i) * OW + j)] = acc;
        }
  return out;
}

TEST(Conv2d, TinyCaseByHand) {
  // 1 image, 1 channel 3x3, kernel 2x2 of ones, padding 1, stride 2:
  // padded input (5x5) windows at (0,0) (0,2) (2,0) (2,2).
  Tensor x = T({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}, DType::f64);
  Tensor w = ones({1, 1, 2, 2}, DType::f64);
  Tensor y = conv2d(x, w, Tensor(), 2, 1);
  EXPECT_EQ(y.shape(), Shape({1, 1, 2, 2}));
  EXPECT_EQ(vals(y), (vector<double>{1, 2 + 3, 4 + 7, 5 + 6 + 8 + 9}));
  Tensor y2 = conv2d(x, w, T({100}, {1}, DType::f64));
  EXPECT_EQ(vals(y2), (vector<double>{112, 116, 124, 128}));
}

TEST(Conv2d, MatchesADirectLoop) {
  struct Case { int64_t N, C, H, W, O, KH, KW, s, p; bool bias; };
  const vector<Case> cases = {
      {1, 1, 4, 4, 1, 3, 3, 1, 0, false}, {2, 3, 5, 5, 4, 3, 3, 2, 1, true}, {2, 3, 6, 5, 2, 2, 3, 2, 0, true},
      {1, 2, 5, 7, 3, 3, 3, 1, 2, true},  {3, 4, 4, 4, 5, 1, 1, 1, 0, true}, {2, 2, 7, 7, 3, 5, 5, 3, 2, false},
      {4, 8, 16, 16, 8, 3, 3, 1, 1, true},   // large enough for the one-thread-per-image path
  };
  uint64_t seed = 60;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "N" << c.N << " C" << c.C << " " << c.H << "x" << c.W << " O" << c.O << " k"
                                      << c.KH << "x" << c.KW << " s" << c.s << " p" << c.p);
    Tensor x = rnd({c.N, c.C, c.H, c.W}, seed++), w = rnd({c.O, c.C, c.KH, c.KW}, seed++), b = rnd({c.O}, seed++);
    vector<double> bv = vals(b);
    int64_t OH, OW;
    vector<double> want = ref_conv(vals(x), vals(w), c.bias ? &bv : nullptr, c.N, c.C, c.H, c.W, c.O, c.KH, c.KW, c.s,
                                   c.p, OH, OW);
    Conv2dParams p{c.s, c.s, c.p, c.p};
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor bd = b.to(dt);
      Tensor y = raw::conv2d(x.to(dt), w.to(dt), c.bias ? &bd : nullptr, p);
      ASSERT_EQ(y.shape(), Shape({c.N, c.O, OH, OW}));
      expect_near(vals(y), want, dt == DType::f64 ? 1e-13 : 1e-5, dtype_name(dt));
    }
    // non-contiguous input (channels-last storage) gives the same result
    Tensor xnc = raw::permute(raw::contiguous(raw::permute(x, {0, 2, 3, 1})), {0, 3, 1, 2});
    ASSERT_TRUE(c.C == 1 || !xnc.is_contiguous());
    expect_near(vals(conv2d(xnc, w, c.bias ? b : Tensor(), c.s, c.p)), want, 1e-13, "strided input");
  }
}

TEST(Conv2d, BackwardMatchesDirectLoops) {
  // gx and gw of L = Σ gy·conv(x, w) by direct loops; covers the multi-threaded path with
  // per-thread weight-gradient partials.
  for (auto [N, C, H, O, K, s, p] : vector<std::array<int64_t, 7>>{{2, 3, 5, 4, 3, 2, 1}, {4, 8, 16, 8, 3, 1, 1}}) {
    SCOPED_TRACE(::testing::Message() << "N" << N << " C" << C << " H" << H);
    Tensor x = rnd({N, C, H, H}, 70), w = rnd({O, C, K, K}, 71);
    const int64_t OH = (H + 2 * p - K) / s + 1;
    Tensor gy = rnd({N, O, OH, OH}, 72);
    vector<double> xv = vals(x), wv = vals(w), gv = vals(gy);
    vector<double> gx(xv.size(), 0.0), gw(wv.size(), 0.0), gb(size_t(O), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t i = 0; i < OH; ++i)
          for (int64_t j = 0; j < OH; ++j) {
            const double g = gv[size_t(((n * O + o) * OH + i) * OH + j)];
            gb[size_t(o)] += g;
            for (int64_t c = 0; c < C; ++c)
              for (int64_t kh = 0; kh < K; ++kh)
                for (int64_t kw = 0; kw < K; ++kw) {
                  const int64_t ih = i * s - p + kh, iw = j * s - p + kw;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= H) continue;
                  const size_t xi = size_t(((n * C + c) * H + ih) * H + iw), wi = size_t(((o * C + c) * K + kh) * K + kw);
                  gx[xi] += g * wv[wi];
                  gw[wi] += g * xv[xi];
                }
          }
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor xd = x.to(dt), wd = w.to(dt);
      Tensor gxd = empty_like(xd), gwd = empty_like(wd), gbd = empty({O}, dt);
      backend(Device::cpu()).conv2d_backward(xd, wd, gy.to(dt), {s, s, p, p}, &gxd, &gwd, &gbd);
      const double tol = dt == DType::f64 ? 1e-12 : 1e-4;
      expect_near(vals(gxd), gx, tol, "gx");
      expect_near(vals(gwd), gw, tol, "gw");
      expect_near(vals(gbd), gb, tol, "gb");
      // the differentiable function routes the same gradients
      Tensor xl = xd.clone(), wl = wd.clone(), bl = zeros({O}, dt);
      xl.set_requires_grad(); wl.set_requires_grad(); bl.set_requires_grad();
      conv2d(xl, wl, bl, s, p).backward(gy.to(dt));
      expect_near(vals(xl.grad()), gx, tol, "autograd gx");
      expect_near(vals(wl.grad()), gw, tol, "autograd gw");
      expect_near(vals(bl.grad()), gb, tol, "autograd gb");
    }
  }
}

TEST(MaxPool2d, ValuesIndicesAndPadding) {
  Tensor x = T({1, 5, 2, 0,
                3, 4, 8, 1,
                9, 0, 6, 7,
                2, 2, 3, 5}, {1, 1, 4, 4});
  auto [y, idx] = raw::max_pool2d(x, {2, 2, 2, 2, 0, 0});
  EXPECT_EQ(vals(y), (vector<double>{5, 8, 9, 7}));
  EXPECT_EQ(idx.to_vector<int64_t>(), (vector<int64_t>{1, 6, 8, 11}));
  EXPECT_EQ(vals(max_pool2d(x, 2)), (vector<double>{5, 8, 9, 7}));
  EXPECT_EQ(vals(max_pool2d(x, 3, 1)), (vector<double>{9, 8, 9, 8}));
  // padding never wins, even over negative values
  Tensor neg = raw::binary_scalar(BinaryOp::sub, x, 100);
  EXPECT_EQ(vals(max_pool2d(neg, 3, 2, 1)), (vector<double>{-95, -92, -91, -92}));
  // against a direct loop: 2 images, 3 channels, 7x6, kernel 3, stride 2, padding 1
  Tensor r = rnd({2, 3, 7, 6}, 80);
  vector<double> rv = vals(r), want;
  for (int64_t pl = 0; pl < 6; ++pl)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 3; ++j) {
        double m = -kInf;
        for (int64_t a = i * 2 - 1; a < i * 2 + 2; ++a)
          for (int64_t b = j * 2 - 1; b < j * 2 + 2; ++b)
            if (a >= 0 && a < 7 && b >= 0 && b < 6) m = std::max(m, rv[size_t(pl * 42 + a * 6 + b)]);
        want.push_back(m);
      }
  Tensor out = max_pool2d(r, 3, 2, 1);
  EXPECT_EQ(out.shape(), Shape({2, 3, 4, 3}));
  EXPECT_EQ(vals(out), want);
  EXPECT_EQ(vals(max_pool2d(r.to(DType::f32), 3, 2, 1)), vals(out.to(DType::f32)));
  EXPECT_EQ(vals(max_pool2d(raw::transpose(raw::contiguous(raw::transpose(r, 2, 3)), 2, 3), 3, 2, 1)), want);
  // NaN propagates
  EXPECT_TRUE(std::isnan(vals(max_pool2d(T({1, kNaN, 3, 4}, {1, 1, 2, 2}), 2))[0]));
}

// ============================================================================ indexing

TEST(Indexing, GatherAndScatterAdd) {
  Tensor x = T({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(vals(raw::gather(x, 1, I({2, 0, 1, 1}, {2, 2}))), (vector<double>{3, 1, 5, 5}));
  EXPECT_EQ(vals(raw::gather(x, 0, I({1, 0, 1}, {1, 3}))), (vector<double>{4, 2, 6}));
  EXPECT_EQ(vals(gather(raw::transpose(x, 0, 1), 1, I({1, 0, 0}, {3, 1}))), (vector<double>{4, 2, 3}));
  EXPECT_EQ(vals(raw::gather(x, -1, I({0}, {1, 1}))), (vector<double>{1}));   // index smaller than input
  Tensor out = zeros({2, 3});
  raw::scatter_add_(out, 1, I({2, 2, 0, 1, 1, 1}, {2, 3}), T({1, 2, 3, 4, 5, 6}, {2, 3}));
  EXPECT_EQ(vals(out), (vector<double>{3, 0, 3, 0, 15, 0}));   // duplicates accumulate
  EXPECT_EQ(vals(scatter_add(ones({2, 3}), 0, I({1, 1}, {1, 2}), T({5, 7}, {1, 2}))), (vector<double>{1, 1, 1, 6, 8, 1}));
  Tensor base = ones({2, 2});
  scatter_add(base, 0, I({0, 0}, {1, 2}), T({1, 1}, {1, 2}));
  EXPECT_EQ(vals(base), (vector<double>{1, 1, 1, 1})) << "scatter_add is out of place";
}

TEST(Indexing, IndexSelectAndIndexAdd) {
  Tensor x = T({1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_EQ(vals(raw::index_select(x, 0, I({2, 0, 2}, {3}))), (vector<double>{5, 6, 1, 2, 5, 6}));
  EXPECT_EQ(vals(index_select(x, 1, I({1, 1, 0}, {3}))), (vector<double>{2, 2, 1, 4, 4, 3, 6, 6, 5}));
  EXPECT_EQ(vals(index_select(raw::transpose(x, 0, 1), 1, I({2}, {1}))), (vector<double>{5, 6}));
  EXPECT_EQ(index_select(x, 0, I({}, {0})).shape(), Shape({0, 2}));
  Tensor out = zeros({3, 2});
  raw::index_add_(out, 0, I({1, 1, 2}, {3}), T({1, 2, 3, 4, 5, 6}, {3, 2}));
  EXPECT_EQ(vals(out), (vector<double>{0, 0, 4, 6, 5, 6}));
  EXPECT_EQ(vals(index_add(ones({2, 3}), 1, I({0, 0}, {2}), T({1, 2, 3, 4}, {2, 2}))), (vector<double>{4, 1, 1, 8, 1, 1}));
  // big enough for the parallel kernels
  Tensor big = rnd({64, 600}, 90);
  Tensor sel = raw::index_select(big, 1, I({599, 0, 17}, {3}));
  vector<double> bv = vals(big), sv = vals(sel);
  for (int r = 0; r < 64; ++r) {
    EXPECT_EQ(sv[size_t(r * 3)], bv[size_t(r * 600 + 599)]);
    EXPECT_EQ(sv[size_t(r * 3 + 2)], bv[size_t(r * 600 + 17)]);
  }
}

TEST(Indexing, TopkTiesTakeTheLowerIndexFirst) {
  Tensor x = T({1, 3, 3, 2, 3, 0}, {6});
  auto [v, i] = raw::topk(x, 4);
  EXPECT_EQ(vals(v), (vector<double>{3, 3, 3, 2}));
  EXPECT_EQ(i.to_vector<int64_t>(), (vector<int64_t>{1, 2, 4, 3}));
  auto [vs, is] = raw::topk(T({2, 0, 1, 0, 2}, {5}), 3, -1, /*largest=*/false);
  EXPECT_EQ(vals(vs), (vector<double>{0, 0, 1}));
  EXPECT_EQ(is.to_vector<int64_t>(), (vector<int64_t>{1, 3, 2}));
  // along dim 0 of a 2-D tensor
  auto [v0, i0] = topk(T({1, 9, 5, 5, 3, 7}, {3, 2}), 2, 0);
  EXPECT_EQ(vals(v0), (vector<double>{5, 9, 3, 7}));
  EXPECT_EQ(i0.to_vector<int64_t>(), (vector<int64_t>{1, 0, 2, 2}));
  EXPECT_EQ(raw::topk(x, 0).first.numel(), 0);
  // NaN counts as the largest: first for largest, last for smallest
  EXPECT_EQ(raw::topk(T({1, kNaN, 3}, {3}), 1).second.item<int64_t>(), 1);
  EXPECT_EQ(raw::topk(T({1, kNaN, 0}, {3}), 2, -1, false).second.to_vector<int64_t>(), (vector<int64_t>{2, 0}));
  // integers, including unsigned and the extremes of the range
  EXPECT_EQ(raw::topk(from_vector<uint8_t>({0, 255, 1, 0}, {4}), 2, -1, false).second.to_vector<int64_t>(),
            (vector<int64_t>{0, 3}));
  const int64_t lo = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(raw::topk(I({5, lo, 0}, {3}), 1, -1, false).first.item<int64_t>(), lo);
  EXPECT_EQ(raw::topk(from_vector<int32_t>({3, -4, 3}, {3}), 2).second.to_vector<int64_t>(), (vector<int64_t>{0, 2}));
}

TEST(Indexing, ArgsortIsStable) {
  Tensor x = T({2, 1, 2, 0, 1, 2}, {6});
  EXPECT_EQ(raw::argsort(x).to_vector<int64_t>(), (vector<int64_t>{3, 1, 4, 0, 2, 5}));
  EXPECT_EQ(raw::argsort(x, -1, true).to_vector<int64_t>(), (vector<int64_t>{0, 2, 5, 1, 4, 3}));
  EXPECT_EQ(raw::argsort(T({3, 1, 2, 2, 1, 3}, {3, 2}), 0).to_vector<int64_t>(), (vector<int64_t>{2, 0, 1, 1, 0, 2}));
  EXPECT_EQ(raw::argsort(I({5, -1, 5, -1}, {4})).to_vector<int64_t>(), (vector<int64_t>{1, 3, 0, 2}));
  EXPECT_EQ(raw::argsort(T({kNaN, 1, kNaN, 0}, {4})).to_vector<int64_t>(), (vector<int64_t>{3, 1, 0, 2}));
  EXPECT_EQ(raw::argsort(T({kNaN, 1, kNaN, 0}, {4}), -1, true).to_vector<int64_t>(), (vector<int64_t>{0, 2, 1, 3}));
  // a long row with many ties stays stable
  vector<int64_t> keys(1000);
  for (int i = 0; i < 1000; ++i) keys[size_t(i)] = (i * 7) % 5;
  vector<int64_t> order = raw::argsort(I(keys, {1000})).to_vector<int64_t>();
  for (size_t k = 1; k < order.size(); ++k) {
    ASSERT_LE(keys[size_t(order[k - 1])], keys[size_t(order[k])]);
    if (keys[size_t(order[k - 1])] == keys[size_t(order[k])]) {
      ASSERT_LT(order[k - 1], order[k]);
    }
  }
}

TEST(Indexing, CatAndStack) {
  Tensor a = T({1, 2, 3, 4}, {2, 2}), b = T({5, 6}, {1, 2});
  EXPECT_EQ(vals(cat({a, b}, 0)), (vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(vals(cat({a, raw::transpose(a, 0, 1)}, 1)), (vector<double>{1, 2, 1, 3, 3, 4, 2, 4}));
  EXPECT_EQ(stack({a, a}, 0).shape(), Shape({2, 2, 2}));
  EXPECT_EQ(vals(stack({T({1, 2}, {2}), T({3, 4}, {2})}, 1)), (vector<double>{1, 3, 2, 4}));
  EXPECT_EQ(vals(stack({T({1}, {}), T({2}, {})}, 0)), (vector<double>{1, 2}));
}

// ======================================================================== in-place ops

TEST(InPlace, AddMulCopyFill) {
  Tensor y = T({1, 2, 3, 4}, {2, 2});
  raw::add_(y, T({1, 1, 1, 1}, {2, 2}), 2.0);
  EXPECT_EQ(vals(y), (vector<double>{3, 4, 5, 6}));
  raw::add_(y, T({10, 20}, {2}));   // broadcast source
  EXPECT_EQ(vals(y), (vector<double>{13, 24, 15, 26}));
  Tensor yt = raw::transpose(y, 0, 1);   // strided destination
  raw::add_(yt, T({1, 2, 3, 4}, {2, 2}), -1.0);
  EXPECT_EQ(vals(y), (vector<double>{12, 21, 13, 22}));
  raw::mul_(yt, 0.5);
  EXPECT_EQ(vals(y), (vector<double>{6, 10.5, 6.5, 11}));
  raw::mul_(y, 2);
  EXPECT_EQ(vals(y), (vector<double>{12, 21, 13, 22}));
  Tensor d = zeros({2, 3}, DType::f64);
  raw::copy_(d, T({1, 2, 3}, {3}, DType::f32));   // broadcast and cast
  EXPECT_EQ(vals(d), (vector<double>{1, 2, 3, 1, 2, 3}));
  raw::fill_(raw::narrow(d, 1, 1, 1), 9);
  EXPECT_EQ(vals(d), (vector<double>{1, 9, 3, 1, 9, 3}));
  EXPECT_TRUE(raw::all_finite(d));
  EXPECT_FALSE(raw::all_finite(T({1, kInf}, {2})));
  EXPECT_FALSE(raw::all_finite(T({kNaN}, {1}, DType::f16)));
  EXPECT_TRUE(raw::all_finite(I({1}, {1})));
  EXPECT_EQ(vals(raw::sum_to(T({1, 2, 3, 4, 5, 6}, {2, 3}), {1, 3})), (vector<double>{5, 7, 9}));
  EXPECT_EQ(vals(raw::sum_to(T({1, 2, 3, 4, 5, 6}, {2, 3}), {2, 1})), (vector<double>{6, 15}));
  EXPECT_EQ(vals(raw::sum_to(T({1, 2, 3, 4, 5, 6}, {2, 3}), {})), (vector<double>{21}));
  expect_error([&] { raw::add_(T({1, 2}, {2}), T({1, 2, 3}, {3})); }, {"[3]", "[2]"});
  expect_error([&] { raw::add_(T({1, 2}, {2}), T({1, 2}, {2}, DType::f64)); }, {"f32", "f64"});
  expect_error([&] { raw::copy_(zeros({2, 2}), zeros({3})); }, {"[3]", "[2, 2]"});
}

// ======================================================================= raw-only errors

TEST(RawErrors, NameTheOffendingShapesDtypesAndValues) {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  expect_error([&] { raw::binary(BinaryOp::mul, a, b); }, {"[2, 3]", "[4, 5]"});
  expect_error([&] { raw::binary(BinaryOp::lt, a, zeros({2, 3}, DType::f64)); }, {"[2, 3] f32", "[2, 3] f64"});
  expect_error([&] { raw::where(zeros({2, 3}), a, a); }, {"bool", "[2, 3] f32"});
  expect_error([&] { raw::where(B({1, 0}, {2}), a, a); }, {"[2]", "[2, 3]"});
  expect_error([&] { raw::unary(UnaryOp::exp, I({1}, {1})); }, {"exp", "[1] i64"});
  expect_error([&] { raw::unary(UnaryOp::neg, B({1}, {1})); }, {"neg", "bool"});
  expect_error([&] { raw::unary_backward(UnaryOp::exp, a, a, b); }, {"[4, 5]", "[2, 3]"});
  expect_error([&] { raw::reduce(ReduceOp::sum, a, {0, 0}, false); }, {"dim 0", "repeated"});
  expect_error([&] { raw::reduce(ReduceOp::sum, a, {2}, false); }, {"dim 2", "[2, 3]"});
  expect_error([&] { raw::reduce(ReduceOp::mean, I({1}, {1}), {}, false); }, {"mean", "[1] i64"});
  expect_error([&] { raw::reduce(ReduceOp::max, B({1}, {1}), {}, false); }, {"max", "bool"});
  expect_error([&] { raw::argmax(a, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { raw::softmax(I({1}, {1}), 0); }, {"softmax", "[1] i64"});
  expect_error([&] { raw::softmax(a, -3); }, {"dim -3", "[2, 3]"});
  expect_error([&] { raw::cumsum(a, 5); }, {"dim 5", "[2, 3]"});
  expect_error([&] { raw::sum_to(zeros({3}), {2, 3}); }, {"[3]", "[2, 3]"});
  expect_error([&] { raw::matmul(a, b); }, {"[2, 3]", "[4, 5]"});
  expect_error([&] { raw::matmul(zeros({3}), zeros({4, 2})); }, {"[3]", "[4, 2]"});
  expect_error([&] { raw::matmul(zeros({2, 3, 4}), zeros({3, 4, 5})); }, {"[2]", "[3]"});
  expect_error([&] { raw::matmul(I({1}, {1}), I({1}, {1})); }, {"matmul", "i64"});
  expect_error([&] { raw::matmul(zeros({}), zeros({3})); }, {"[] f32", "[3] f32"});
  expect_error([&] { raw::topk(zeros({2, 3}), 4); }, {"k=4", "[2, 3]"});
  expect_error([&] { raw::topk(zeros({}), 1); }, {"topk", "dim"});
  expect_error([&] { raw::argsort(zeros({}), 0); }, {"argsort", "dim"});
  expect_error([&] { raw::argsort(a, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { raw::gather(a, 1, I({0, 3}, {1, 2})); }, {"index 3", "size 3"});
  expect_error([&] { raw::gather(a, 1, I({-1}, {1, 1})); }, {"index -1"});
  expect_error([&] { raw::gather(a, 1, I({0}, {1})); }, {"[1] i64", "[2, 3] f32"});
  expect_error([&] { raw::gather(a, 1, zeros({2, 1})); }, {"i64", "[2, 1] f32"});
  expect_error([&] { raw::gather(a, 1, I({0, 0, 0}, {3, 1})); }, {"[3, 1]", "[2, 3]"});
  expect_error([&] { raw::scatter_add_(zeros({2, 3}), 1, I({0, 1}, {1, 2}), zeros({1, 3})); }, {"[1, 2] i64", "[1, 3] f32"});
  expect_error([&] { raw::scatter_add_(zeros({2, 3}), 1, I({7}, {1, 1}), zeros({1, 1})); }, {"index 7", "size 3"});
  expect_error([&] { raw::scatter_add_(zeros({2, 3}), 1, I({0}, {1, 1}), zeros({1, 1}, DType::f64)); }, {"f32", "f64"});
  expect_error([&] { raw::index_select(a, 0, I({2}, {1})); }, {"index 2", "size 2"});
  expect_error([&] { raw::index_select(a, 0, I({0}, {1, 1})); }, {"1-D", "[1, 1] i64"});
  expect_error([&] { raw::index_add_(zeros({2, 3}), 0, I({0}, {1}), zeros({1, 4})); }, {"[1, 4]", "[1, 3]", "[2, 3]"});
  expect_error([&] { raw::index_add_(zeros({2, 3}), 0, I({5}, {1}), zeros({1, 3})); }, {"index 5", "size 2"});
  expect_error([&] { raw::conv2d(zeros({1, 3, 5, 5}), zeros({2, 4, 3, 3}), nullptr, {}); }, {"[1, 3, 5, 5]", "[2, 4, 3, 3]"});
  expect_error([&] { raw::conv2d(zeros({1, 3, 2, 2}), zeros({2, 3, 3, 3}), nullptr, {}); }, {"[2, 3, 3, 3]", "[1, 3, 2, 2]"});
  expect_error([&] { raw::conv2d(zeros({3, 5, 5}), zeros({2, 3, 3, 3}), nullptr, {}); }, {"[3, 5, 5]", "[2, 3, 3, 3]"});
  expect_error([&] { raw::max_pool2d(zeros({1, 1, 2, 2}), {3, 3, 1, 1, 0, 0}); }, {"3x3", "[1, 1, 2, 2]"});
  expect_error([&] { raw::max_pool2d(zeros({1, 1, 2, 2}), {3, 3, 3, 3, 0, 0}); }, {"3x3", "[1, 1, 2, 2]"});
  expect_error([&] { raw::max_pool2d(zeros({2, 2}), {}); }, {"[2, 2]"});
  expect_error([&] { raw::max_pool2d(I({1, 1, 1, 1}, {1, 1, 2, 2}), {}); }, {"max_pool2d", "[1, 1, 2, 2] i64"});
  expect_error([&] { raw::as_strided(a, {2, 3}, {1}, 0); }, {"[2, 3]", "[1]"});
  if (!backend_available(DeviceType::CUDA)) expect_error([&] { raw::to_device(a, Device::cuda(7)); }, {"cuda:7"});
}

}  // namespace
