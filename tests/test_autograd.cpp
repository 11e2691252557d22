// test_autograd.cpp — the autograd engine and a float64 gradcheck of every differentiable op.
//
// Engine: gradients accumulate into leaves across backward calls, no_grad records nothing,
// detach cuts the graph, retain_graph allows a second backward (and its absence makes the
// second one throw), a non-scalar root needs an explicit gradient, a root that requires no
// grad is an error, shared subexpressions sum their gradients, views never turn their input
// into a non-leaf. Gradchecks (tests/gradcheck.h: central differences, eps 1e-6, atol 1e-5,
// rtol 1e-3) cover every function of autograd/functions.h and every differentiable Tensor
// member (views, to(dtype), clone, contiguous) on contiguous, transposed (non-contiguous
// leaves) and broadcast inputs. Bad-input tests check that every op throws mox::Error whose
// message names the offending shapes, dtypes or index values.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "tests/gradcheck.h"
#include "tests/expect_error.h"

namespace {

using namespace mox;
using mox::testing::distinct_leaf;
using mox::testing::gradcheck;
using mox::testing::signed_leaf;
using mox::testing::transposed_leaf;
using mox::testing::uniform_leaf;
using V = std::vector<Tensor>;

Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector<double>(v, s); }
Tensor leaf(const std::vector<double>& v, const Shape& s) {
  Tensor t = f64(v, s);
  t.set_requires_grad();
  return t;
}
Tensor i64(const std::vector<int64_t>& v, const Shape& s) { return from_vector<int64_t>(v, s); }
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

using mox::testing::expect_error;

// ================================================================================ engine

TEST(AutogradEngine, GradientsAccumulateIntoLeavesAcrossBackwardCalls) {
  Tensor x = leaf({1, 2, 3}, {3});
  sum(mul(x, x)).backward();   // d/dx Σx² = 2x
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{2, 4, 6}));
  Tensor g_before = x.grad();
  sum(mul(x, 3.0)).backward();   // += 3
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(vals(g_before), (std::vector<double>{5, 7, 9})) << "accumulation is in place";
  x.set_grad(Tensor());
  sum(x).backward();
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{1, 1, 1}));
}

TEST(AutogradEngine, SharedSubexpressionsSumTheirGradients) {
  Tensor x = leaf({2.0}, {});
  Tensor y = mul(x, x);         // x²
  Tensor z = add(mul(y, y), y);  // x⁴ + x²
  z.backward();
  EXPECT_DOUBLE_EQ(x.grad().item<double>(), 4 * 8 + 2 * 2);   // 4x³ + 2x
}

TEST(AutogradEngine, NoGradGuardRecordsNothingAndRestores) {
  Tensor x = leaf({1, 2}, {2});
  {
    autograd::NoGradGuard guard;
    EXPECT_FALSE(autograd::grad_enabled());
    Tensor y = mul(exp(x), 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      autograd::NoGradGuard nested;
    }
    EXPECT_FALSE(autograd::grad_enabled()) << "a nested guard restores the outer state";
  }
  EXPECT_TRUE(autograd::grad_enabled());
  Tensor y = mul(x, 2.0);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
}

TEST(AutogradEngine, DetachCutsTheGraphAndSharesStorage) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = mul(x, x);
  Tensor d = y.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_EQ(d.storage(), y.storage());
  // Only the non-detached path contributes: d/dx (x·x + detach(x·x)·x) = 2x + x²
  sum(add(y, mul(d, x))).backward();
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{2 + 1, 4 + 4}));
}

TEST(AutogradEngine, RetainGraphAllowsASecondBackward) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(mul(exp(x), x));
  y.backward(Tensor(), /*retain_graph=*/true);
  std::vector<double> first = vals(x.grad());
  y.backward();
  std::vector<double> second = vals(x.grad());
  for (size_t i = 0; i < 2; ++i) EXPECT_DOUBLE_EQ(second[i], 2 * first[i]);
}

TEST(AutogradEngine, SecondBackwardWithoutRetainGraphThrows) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = sum(mul(exp(x), x));
  y.backward();
  expect_error([&] { y.backward(); }, {"second time", "retain_graph"});
}

TEST(AutogradEngine, NonScalarBackwardNeedsAGradient) {
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  Tensor y = mul(x, 2.0);
  expect_error([&] { y.backward(); }, {"[2, 2]", "gradient"});
  expect_error([&] { y.backward(ones({3}, DType::f64)); }, {"[3] f64", "[2, 2] f64"});
  expect_error([&] { y.backward(ones({2, 2}, DType::f32)); }, {"f32", "f64"});
  y.backward(f64({1, 0, 0, 1}, {2, 2}));
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{2, 0, 0, 2}));
}

TEST(AutogradEngine, BackwardOnATensorThatRequiresNoGradThrows) {
  Tensor x = f64({1, 2}, {2});
  Tensor y = sum(mul(x, x));
  expect_error([&] { y.backward(); }, {"[] f64", "does not require grad"});
  Tensor z;
  {
    Tensor w = leaf({1, 2}, {2});
    autograd::NoGradGuard guard;
    z = sum(w);
  }
  expect_error([&] { z.backward(); }, {"does not require grad"});
}

TEST(AutogradEngine, BackwardOfALeafAccumulatesTheSeed) {
  Tensor x = leaf({3.0}, {});
  x.backward();
  EXPECT_EQ(x.grad().item<double>(), 1.0);
}

TEST(AutogradEngine, OnlyInputsThatRequireGradGetGradients) {
  Tensor a = leaf({1, 2}, {2});
  Tensor b = f64({3, 4}, {2});
  sum(mul(a, b)).backward();
  EXPECT_EQ(vals(a.grad()), (std::vector<double>{3, 4}));
  EXPECT_FALSE(b.grad().defined());
}

TEST(AutogradEngine, SetRequiresGradRules) {
  Tensor x = leaf({1}, {1});
  Tensor y = mul(x, 2.0);
  expect_error([&] { y.set_requires_grad(false); }, {"leaf", "mul_scalar"});
  Tensor i = i64({1}, {1});
  expect_error([&] { i.set_requires_grad(); }, {"[1] i64", "floating"});
}

TEST(AutogradEngine, ViewsNeverTurnTheirInputIntoANonLeaf) {
  // squeeze of a dim whose extent is not 1 and transpose of a 0-d tensor are no-op views;
  // they must still return a new handle, or recording the node would overwrite the input's
  // own grad_fn (and make a leaf a non-leaf pointing at itself).
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x.squeeze(0);
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE(y.is_leaf());
  sum(mul(y, y)).backward();
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{2, 4, 6, 8, 10, 12}));

  Tensor s = leaf({3.0}, {});
  Tensor t = s.transpose(0, 0);
  EXPECT_TRUE(s.is_leaf());
  mul(t, t).backward();
  EXPECT_DOUBLE_EQ(s.grad().item<double>(), 6.0);

  Tensor u = mul(x, 1.0);
  auto fn = u.grad_fn();
  Tensor v = u.squeeze(1);
  EXPECT_EQ(u.grad_fn(), fn) << "squeeze replaced the grad_fn of its non-leaf input";
  EXPECT_NE(v.grad_fn(), fn);
}

TEST(AutogradEngine, NodesDoNotKeepTheirOwnOutputAlive) {
  // A node that saved its own output (with that output's grad_fn) would form a cycle
  // and leak the graph. After the result goes out of scope, the input's storage must be
  // the only one left alive.
  Tensor x = leaf({1, 2, 3, 4}, {2, 2});
  std::weak_ptr<TensorImpl> out_impl;
  {
    Tensor y = logsumexp(x, 1, /*keepdim=*/true);
    out_impl = y.impl_ptr();
  }
  EXPECT_TRUE(out_impl.expired()) << "logsumexp(keepdim) output kept alive by its own node";
  {
    Tensor y = div(x, add(x, 1.0));
    Tensor z = exp(y);
    Tensor s = softmax(z, 0);
    out_impl = s.impl_ptr();
  }
  EXPECT_TRUE(out_impl.expired());
}

TEST(AutogradEngine, DerivativesAtSpecialPoints) {
  // pow(x, 0) is constant: its derivative is 0 everywhere, 0 included (not 0·0⁻¹ = NaN).
  Tensor x = leaf({0, 2, -1}, {3});
  sum(pow(x, 0.0)).backward();
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{0, 0, 0}));
  x.set_grad(Tensor());
  sum(pow(x, 2.0)).backward();
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{0, 4, -2}));
  x.set_grad(Tensor());
  sum(pow(x, 1.0)).backward();
  EXPECT_EQ(vals(x.grad()), (std::vector<double>{1, 1, 1}));
  // the documented subgradients: abs and relu give 0 at 0; maximum/minimum send ties to a
  Tensor z = leaf({0}, {1});
  sum(add(abs(z), relu(z))).backward();
  EXPECT_EQ(vals(z.grad()), (std::vector<double>{0}));
  Tensor a = leaf({1, 2}, {2}), b = leaf({1, 3}, {2});
  sum(maximum(a, b)).backward();
  EXPECT_EQ(vals(a.grad()), (std::vector<double>{1, 0}));
  EXPECT_EQ(vals(b.grad()), (std::vector<double>{0, 1}));
  // max along a dim with ties: the first maximal element gets the gradient
  Tensor m = leaf({5, 5, 1}, {3});
  max(m, 0).backward();
  EXPECT_EQ(vals(m.grad()), (std::vector<double>{1, 0, 0}));
}

TEST(AutogradEngine, IntegerOutputsNeverRequireGrad) {
  Tensor x = leaf({1, 3, 2}, {3});
  EXPECT_FALSE(argmax(x, 0).requires_grad());
  EXPECT_FALSE(gt(x, x).requires_grad());
  auto [v, i] = topk(x, 2);
  EXPECT_TRUE(v.requires_grad());
  EXPECT_FALSE(i.requires_grad());
  EXPECT_FALSE(x.to(DType::i64).requires_grad());
}

TEST(AutogradEngine, DeepChainsDoNotOverflowAndRunInOrder) {
  Tensor x = leaf({0.5}, {});
  Tensor y = x;
  for (int i = 0; i < 2000; ++i) y = add(mul(y, 1.0), 0.001);
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item<double>(), 1.0);
  EXPECT_NEAR(y.item<double>(), 2.5, 1e-9);
}

// ============================================================================= gradchecks

TEST(GradcheckItself, CatchesAWrongGradientAndNamesTheElement) {
  // y = x² with a backward that is wrong at one element.
  auto wrong = [](const V& v) {
    Tensor out = raw::mul(v[0], v[0]);
    if (!autograd::needs_grad(v[0])) return out;
    return autograd::record("wrong_square", out, {&v[0]}, [x = v[0]](const Tensor& g) {
      Tensor gx = raw::mul(raw::binary_scalar(BinaryOp::mul, x, 2.0), g);
      gx.data<double>()[4] += 0.5;   // element [1, 1] of a (3, 3) input
      return std::vector<Tensor>{gx};
    });
  };
  ::testing::AssertionResult r = gradcheck(wrong, {uniform_leaf({3, 3}, 1)});
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("1 of 9 elements"), std::string::npos) << r.message();
  EXPECT_NE(std::string(r.message()).find("[1, 1]"), std::string::npos) << r.message();
  // A missing gradient (no graph) and non-f64 inputs are reported, not passed.
  EXPECT_FALSE(gradcheck([](const V& v) { return v[0].detach(); }, {uniform_leaf({2}, 2)}));
  Tensor f = from_vector<float>({1, 2}, {2});
  f.set_requires_grad();
  EXPECT_FALSE(gradcheck([](const V& v) { return v[0]; }, {f}));
  // The correct rule passes.
  EXPECT_TRUE(gradcheck([](const V& v) { return mul(v[0], v[0]); }, {uniform_leaf({3, 3}, 1)}));
}

// Unary ops on a contiguous (3,4) input, a transposed (3,4) leaf, and a (3,1) input
// broadcast (expanded) to (3,4) inside the function.
void check_unary(const char* name, const std::function<Tensor(const Tensor&)>& op,
                 const std::function<Tensor(const Shape&, uint64_t)>& make) {
  SCOPED_TRACE(name);
  EXPECT_TRUE(gradcheck([&](const V& v) { return op(v[0]); }, {make({3, 4}, 1)})) << "contiguous";
  EXPECT_TRUE(gradcheck([&](const V& v) { return op(v[0]); }, {transposed_leaf(make({3, 4}, 2))}))
      << "transposed";
  EXPECT_TRUE(gradcheck([&](const V& v) { return op(v[0].expand({3, 4})); }, {make({3, 1}, 3)}))
      << "broadcast";
  EXPECT_TRUE(gradcheck([&](const V& v) { return op(v[0]); }, {make({}, 4)})) << "0-d";
}

Tensor any_leaf(const Shape& s, uint64_t seed) { return uniform_leaf(s, seed, -2.0, 2.0); }
Tensor pos_leaf(const Shape& s, uint64_t seed) { return uniform_leaf(s, seed, 0.3, 2.0); }
Tensor kinkfree_leaf(const Shape& s, uint64_t seed) { return signed_leaf(s, seed, 0.2, 1.5); }

TEST(Gradcheck, UnaryMath) {
  check_unary("neg", [](const Tensor& x) { return neg(x); }, any_leaf);
  check_unary("operator-", [](const Tensor& x) { return -x; }, any_leaf);
  check_unary("exp", [](const Tensor& x) { return exp(x); }, any_leaf);
  check_unary("log", [](const Tensor& x) { return log(x); }, pos_leaf);
  check_unary("sqrt", [](const Tensor& x) { return sqrt(x); }, pos_leaf);
  check_unary("rsqrt", [](const Tensor& x) { return rsqrt(x); }, pos_leaf);
  check_unary("abs", [](const Tensor& x) { return abs(x); }, kinkfree_leaf);
  check_unary("square", [](const Tensor& x) { return square(x); }, any_leaf);
  check_unary("sin", [](const Tensor& x) { return sin(x); }, any_leaf);
  check_unary("cos", [](const Tensor& x) { return cos(x); }, any_leaf);
  check_unary("tanh", [](const Tensor& x) { return tanh(x); }, any_leaf);
  check_unary("sigmoid", [](const Tensor& x) { return sigmoid(x); }, any_leaf);
  check_unary("relu", [](const Tensor& x) { return relu(x); }, kinkfree_leaf);
  check_unary("gelu", [](const Tensor& x) { return gelu(x); }, any_leaf);
  check_unary("gelu_tanh", [](const Tensor& x) { return gelu(x, true); }, any_leaf);
  check_unary("silu", [](const Tensor& x) { return silu(x); }, any_leaf);
}

TEST(Gradcheck, ScalarArithmetic) {
  check_unary("add scalar", [](const Tensor& x) { return add(x, 1.5); }, any_leaf);
  check_unary("x - s", [](const Tensor& x) { return x - 0.5; }, any_leaf);
  check_unary("mul scalar", [](const Tensor& x) { return mul(x, -2.5); }, any_leaf);
  check_unary("x / s", [](const Tensor& x) { return x / 4.0; }, any_leaf);
  check_unary("pow 3 (any sign)", [](const Tensor& x) { return pow(x, 3.0); }, any_leaf);
  check_unary("pow 2.5", [](const Tensor& x) { return pow(x, 2.5); }, pos_leaf);
  check_unary("pow -1.5", [](const Tensor& x) { return pow(x, -1.5); }, pos_leaf);
  check_unary("pow 0", [](const Tensor& x) { return mul(pow(x, 0.0), x); }, pos_leaf);
  check_unary("rsub", [](const Tensor& x) { return rsub(2.0, x); }, any_leaf);
  check_unary("s - x", [](const Tensor& x) { return 2.0 - x; }, any_leaf);
  check_unary("rdiv", [](const Tensor& x) { return rdiv(3.0, x); }, kinkfree_leaf);
  check_unary("s / x", [](const Tensor& x) { return 3.0 / x; }, kinkfree_leaf);
}

// Binary ops: same shape contiguous, both transposed, (3,1)×(1,4), (4)×(3,4) rank
// broadcast, 0-d × (3,4), and the same tensor as both operands.
void check_binary(const char* name, const std::function<Tensor(const Tensor&, const Tensor&)>& op,
                  const std::function<Tensor(const Shape&, uint64_t)>& make_a,
                  const std::function<Tensor(const Shape&, uint64_t)>& make_b) {
  SCOPED_TRACE(name);
  auto fn = [&](const V& v) { return op(v[0], v[1]); };
  EXPECT_TRUE(gradcheck(fn, {make_a({3, 4}, 11), make_b({3, 4}, 12)})) << "contiguous";
  EXPECT_TRUE(gradcheck(fn, {transposed_leaf(make_a({3, 4}, 13)), transposed_leaf(make_b({3, 4}, 14))}))
      << "transposed";
  EXPECT_TRUE(gradcheck(fn, {make_a({3, 1}, 15), make_b({1, 4}, 16)})) << "(3,1) x (1,4)";
  EXPECT_TRUE(gradcheck(fn, {make_a({4}, 17), make_b({2, 3, 4}, 18)})) << "(4) x (2,3,4)";
  EXPECT_TRUE(gradcheck(fn, {make_a({3, 4}, 19), make_b({}, 20)})) << "(3,4) x 0-d";
  Tensor b_only = make_b({1, 4}, 21);
  Tensor a_const = make_a({3, 1}, 22).detach();
  EXPECT_TRUE(gradcheck(fn, {a_const, b_only})) << "only b requires grad";
  Tensor a_only = make_a({3, 4}, 23);
  Tensor b_const = make_b({3, 1}, 24).detach();
  EXPECT_TRUE(gradcheck(fn, {a_only, b_const})) << "only a requires grad";
}

TEST(Gradcheck, BinaryArithmetic) {
  check_binary("add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, any_leaf, any_leaf);
  check_binary("sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, any_leaf, any_leaf);
  check_binary("mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, any_leaf, any_leaf);
  check_binary("div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, any_leaf, kinkfree_leaf);
  check_binary("operators", [](const Tensor& a, const Tensor& b) { return (a + b) * a - b / (a * a + 1.0); },
               any_leaf, any_leaf);
  // maximum/minimum: a in [-1, 1), b a multiple-of-0.1 grid shifted by 0.05 → never within eps.
  auto grid = [](const Shape& s, uint64_t seed) { return distinct_leaf(s, seed, 0.1, -1.05); };
  auto spread = [](const Shape& s, uint64_t seed) { return distinct_leaf(s, seed + 100, 0.1, -1.0); };
  check_binary("maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, spread, grid);
  check_binary("minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, spread, grid);
}

TEST(Gradcheck, SameTensorAsBothOperands) {
  EXPECT_TRUE(gradcheck([](const V& v) { return mul(v[0], v[0]); }, {any_leaf({3, 4}, 1)}));
  EXPECT_TRUE(gradcheck([](const V& v) { return div(v[0], v[0].transpose(0, 1).transpose(0, 1)); },
                        {kinkfree_leaf({3, 4}, 2)}));
  EXPECT_TRUE(gradcheck([](const V& v) { return add(v[0], v[0].transpose(0, 1)); }, {any_leaf({3, 3}, 3)}));
}

TEST(Gradcheck, Reductions) {
  Tensor x = uniform_leaf({2, 3, 4}, 31);
  Tensor xt = transposed_leaf(uniform_leaf({2, 3, 4}, 32));
  for (const Tensor& in : {x, xt}) {
    for (bool keep : {false, true}) {
      for (Shape dims : {Shape{}, Shape{1}, Shape{-1}, Shape{0, 2}, Shape{0, 1, 2}}) {
        SCOPED_TRACE(::testing::Message() << "dims " << dims << " keepdim " << keep
                                          << (in.is_contiguous() ? "" : " transposed"));
        EXPECT_TRUE(gradcheck([&](const V& v) { return sum(v[0], dims, keep); }, {in}));
        EXPECT_TRUE(gradcheck([&](const V& v) { return mean(v[0], dims, keep); }, {in}));
      }
    }
  }
  // broadcast input: a (3,1) expanded to (2,3,4) then reduced
  Tensor b = uniform_leaf({3, 1}, 33);
  EXPECT_TRUE(gradcheck([](const V& v) { return sum(v[0].expand({2, 3, 4}), {0, 2}); }, {b}));
  EXPECT_TRUE(gradcheck([](const V& v) { return mean(v[0].expand({2, 3, 4}), {1}, true); }, {b}));
  EXPECT_TRUE(gradcheck([](const V& v) { return sum(v[0]); }, {uniform_leaf({}, 34)}));
}

TEST(Gradcheck, MaxMinAlongADim) {
  Tensor x = distinct_leaf({3, 4, 5}, 41);
  Tensor xt = transposed_leaf(distinct_leaf({3, 4, 5}, 42));
  for (const Tensor& in : {x, xt})
    for (int64_t d : {0, 1, 2, -1})
      for (bool keep : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "dim " << d << " keepdim " << keep);
        EXPECT_TRUE(gradcheck([&](const V& v) { return max(v[0], d, keep); }, {in}));
        EXPECT_TRUE(gradcheck([&](const V& v) { return min(v[0], d, keep); }, {in}));
      }
  EXPECT_TRUE(gradcheck([](const V& v) { return max(v[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const V& v) { return max(v[0]); }, {xt}));
  EXPECT_TRUE(gradcheck([](const V& v) { return max(v[0].expand({2, 3, 4})); }, {distinct_leaf({3, 1}, 44)}));
  // broadcast input: ties across the expanded copies; the gradient goes to the first one
  // in both the analytic and (since the copies move together) the numerical derivative.
  Tensor b = distinct_leaf({3, 1}, 43);
  EXPECT_TRUE(gradcheck([](const V& v) { return max(v[0].expand({3, 4}), 0); }, {b}));
  EXPECT_TRUE(gradcheck([](const V& v) { return min(v[0].expand({3, 4}), 0); }, {b}));
}

TEST(Gradcheck, LogsumexpCumsumSoftmax) {
  Tensor x = uniform_leaf({3, 4, 5}, 51, -3, 3);
  Tensor xt = transposed_leaf(uniform_leaf({3, 4, 5}, 52, -3, 3));
  Tensor b = uniform_leaf({3, 1, 5}, 53);
  for (int64_t d : {0, 1, -1}) {
    SCOPED_TRACE(::testing::Message() << "dim " << d);
    for (const Tensor& in : {x, xt}) {
      for (bool keep : {false, true})
        EXPECT_TRUE(gradcheck([&](const V& v) { return logsumexp(v[0], d, keep); }, {in}));
      EXPECT_TRUE(gradcheck([&](const V& v) { return cumsum(v[0], d); }, {in}));
      EXPECT_TRUE(gradcheck([&](const V& v) { return softmax(v[0], d); }, {in}));
      EXPECT_TRUE(gradcheck([&](const V& v) { return log_softmax(v[0], d); }, {in}));
    }
    EXPECT_TRUE(gradcheck([&](const V& v) { return logsumexp(v[0].expand({3, 4, 5}), d); }, {b}));
    EXPECT_TRUE(gradcheck([&](const V& v) { return cumsum(v[0].expand({3, 4, 5}), d); }, {b}));
    EXPECT_TRUE(gradcheck([&](const V& v) { return softmax(v[0].expand({3, 4, 5}), d); }, {b}));
    EXPECT_TRUE(gradcheck([&](const V& v) { return log_softmax(v[0].expand({3, 4, 5}), d); }, {b}));
  }
}

TEST(Gradcheck, Matmul) {
  auto mm = [](const V& v) { return matmul(v[0], v[1]); };
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({3, 4}, 61), uniform_leaf({4, 5}, 62)})) << "2-D";
  EXPECT_TRUE(gradcheck(mm, {transposed_leaf(uniform_leaf({3, 4}, 63)), transposed_leaf(uniform_leaf({4, 5}, 64))}))
      << "transposed";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({2, 3, 4}, 65), uniform_leaf({2, 4, 5}, 66)})) << "batched";
  EXPECT_TRUE(gradcheck(mm, {transposed_leaf(uniform_leaf({2, 3, 4}, 67)), uniform_leaf({2, 4, 5}, 68)}))
      << "batched transposed";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({3, 4}, 69), uniform_leaf({2, 4, 5}, 70)})) << "broadcast batch a";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({2, 1, 3, 4}, 71), uniform_leaf({3, 4, 2}, 72)}))
      << "broadcast batch (2,1)x(3)";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({4}, 73), uniform_leaf({4, 5}, 74)})) << "vector @ matrix";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({3, 4}, 75), uniform_leaf({4}, 76)})) << "matrix @ vector";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({4}, 77), uniform_leaf({4}, 78)})) << "vector @ vector";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({4}, 79), uniform_leaf({2, 4, 3}, 80)})) << "vector @ batch";
  EXPECT_TRUE(gradcheck(mm, {uniform_leaf({2, 3, 4}, 81), uniform_leaf({4}, 82)})) << "batch @ vector";
  EXPECT_TRUE(gradcheck([](const V& v) { return matmul(v[0].expand({3, 4}), v[1]); },
                        {uniform_leaf({1, 4}, 83), uniform_leaf({4, 2}, 84)}))
      << "expanded (stride-0) operand";
  EXPECT_TRUE(gradcheck([](const V& v) { return matmul(v[0], v[0].transpose(0, 1)); }, {uniform_leaf({3, 4}, 85)}))
      << "x @ xT";
  EXPECT_TRUE(gradcheck([](const V& v) { return matmul(v[0].narrow(1, 1, 3), v[1]); },
                        {uniform_leaf({3, 5}, 86), uniform_leaf({3, 2}, 87)}))
      << "narrowed operand";
}

// Zero in-features: the output is the bias for every row; zero rows: an empty output and
// zero weight gradients (shapes as PyTorch's).
TEST(Linear, ZeroInFeaturesOrRows) {
  Tensor x = zeros({4, 0}), w = zeros({3, 0}), b = from_vector(std::vector<float>{1, 2, 3}, {3});
  for (Tensor* t : {&x, &w, &b}) t->set_requires_grad();
  Tensor y = linear(x, w, b);
  ASSERT_EQ(y.shape(), Shape({4, 3}));
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>({1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3}));
  EXPECT_EQ(linear(x, w).to_vector<float>(), std::vector<float>(12, 0.0f));
  y.backward(ones({4, 3}));
  EXPECT_EQ(x.grad().shape(), Shape({4, 0}));
  EXPECT_EQ(w.grad().shape(), Shape({3, 0}));
  EXPECT_EQ(b.grad().to_vector<float>(), std::vector<float>({4, 4, 4}));

  Tensor none = zeros({0, 5}), w5 = ones({3, 5});
  none.set_requires_grad();
  w5.set_requires_grad();
  Tensor e = linear(none, w5);
  ASSERT_EQ(e.shape(), Shape({0, 3}));
  e.backward(zeros({0, 3}));
  EXPECT_EQ(w5.grad().to_vector<float>(), std::vector<float>(15, 0.0f));
}

TEST(Gradcheck, Linear) {
  auto lin = [](const V& v) { return linear(v[0], v[1], v[2]); };
  auto lin_nb = [](const V& v) { return linear(v[0], v[1]); };
  EXPECT_TRUE(gradcheck(lin, {uniform_leaf({3, 4}, 91), uniform_leaf({5, 4}, 92), uniform_leaf({5}, 93)}))
      << "with bias";
  EXPECT_TRUE(gradcheck(lin_nb, {uniform_leaf({3, 4}, 94), uniform_leaf({5, 4}, 95)})) << "without bias";
  EXPECT_TRUE(gradcheck(lin, {uniform_leaf({2, 3, 4}, 96), uniform_leaf({5, 4}, 97), uniform_leaf({5}, 98)}))
      << "3-D input";
  EXPECT_TRUE(gradcheck(lin_nb, {uniform_leaf({2, 3, 4}, 99), uniform_leaf({5, 4}, 100)})) << "3-D, no bias";
  EXPECT_TRUE(gradcheck(lin, {uniform_leaf({4}, 101), uniform_leaf({5, 4}, 102), uniform_leaf({5}, 103)}))
      << "1-D input";
  EXPECT_TRUE(gradcheck(lin, {transposed_leaf(uniform_leaf({3, 4}, 104)), transposed_leaf(uniform_leaf({5, 4}, 105)),
                              uniform_leaf({5}, 106)}))
      << "transposed input and weight";
  EXPECT_TRUE(gradcheck([](const V& v) { return linear(v[0].expand({3, 4}), v[1].expand({5, 4}), v[2].expand({5})); },
                        {uniform_leaf({1, 4}, 107), uniform_leaf({1, 4}, 108), uniform_leaf({1}, 109)}))
      << "broadcast (expanded) input, weight and bias";
  EXPECT_TRUE(gradcheck([](const V& v) { return linear(v[0], v[1].narrow(1, 1, 4)); },
                        {uniform_leaf({3, 4}, 110), uniform_leaf({5, 6}, 111)}))
      << "narrowed weight";
  Tensor x = uniform_leaf({3, 4}, 112), w = uniform_leaf({5, 4}, 113).detach(), b = uniform_leaf({5}, 114);
  EXPECT_TRUE(gradcheck(lin, {x, w, b})) << "constant weight";
}

TEST(Gradcheck, Conv2d) {
  auto conv = [](int64_t stride, int64_t pad) {
    return [=](const V& v) { return conv2d(v[0], v[1], v[2], stride, pad); };
  };
  Tensor x = uniform_leaf({2, 3, 5, 5}, 121), w = uniform_leaf({4, 3, 3, 3}, 122), b = uniform_leaf({4}, 123);
  EXPECT_TRUE(gradcheck(conv(2, 1), {x, w, b})) << "bias, stride 2, padding 1";
  EXPECT_TRUE(gradcheck(conv(1, 0), {x, w, b})) << "stride 1, padding 0";
  EXPECT_TRUE(gradcheck(conv(1, 2), {x, w, b})) << "padding 2";
  EXPECT_TRUE(gradcheck([](const V& v) { return conv2d(v[0], v[1]); }, {x, w})) << "no bias";
  EXPECT_TRUE(gradcheck([](const V& v) { return conv2d(v[0], v[1], v[2], 2, 0); },
                        {uniform_leaf({2, 3, 6, 5}, 124), uniform_leaf({2, 3, 2, 3}, 125), uniform_leaf({2}, 126)}))
      << "rectangular input and kernel, stride 2";
  EXPECT_TRUE(gradcheck(conv(1, 0), {x, uniform_leaf({4, 3, 1, 1}, 127), b})) << "1x1 (pointwise)";
  EXPECT_TRUE(gradcheck(conv(1, 1), {transposed_leaf(uniform_leaf({2, 3, 5, 5}, 128)), transposed_leaf(w), b}))
      << "transposed (non-contiguous) input and weight";
  EXPECT_TRUE(gradcheck([](const V& v) { return conv2d(v[0].expand({2, 3, 5, 5}), v[1], v[2].expand({4}), 2, 1); },
                        {uniform_leaf({1, 3, 5, 5}, 129), w, uniform_leaf({1}, 130)}))
      << "broadcast input and bias";
  EXPECT_TRUE(gradcheck(conv(2, 1), {x.detach(), w, b})) << "constant input";
  EXPECT_TRUE(gradcheck(conv(2, 1), {x, w.detach(), b.detach()})) << "constant weight and bias";
}

TEST(Gradcheck, MaxPool2d) {
  Tensor x = distinct_leaf({2, 2, 5, 5}, 131);
  EXPECT_TRUE(gradcheck([](const V& v) { return max_pool2d(v[0], 2); }, {x})) << "2x2 stride 2";
  EXPECT_TRUE(gradcheck([](const V& v) { return max_pool2d(v[0], 3, 2, 1); }, {x})) << "3x3 stride 2 pad 1";
  EXPECT_TRUE(gradcheck([](const V& v) { return max_pool2d(v[0], 3, 1); }, {x})) << "overlapping windows";
  EXPECT_TRUE(gradcheck([](const V& v) { return max_pool2d(v[0], 2); }, {transposed_leaf(distinct_leaf({2, 2, 5, 5}, 132))}))
      << "transposed";
  EXPECT_TRUE(gradcheck([](const V& v) { return max_pool2d(v[0].expand({2, 2, 4, 4}), 2); },
                        {distinct_leaf({1, 2, 4, 4}, 133)}))
      << "broadcast";
}

TEST(Gradcheck, GatherIndexSelectIndexAddScatterAdd) {
  Tensor x = uniform_leaf({3, 4}, 141);
  Tensor xt = transposed_leaf(uniform_leaf({3, 4}, 142));
  Tensor idx1b = i64({3, 3, 1, 0, 2, 1}, {3, 2});
  Tensor idx0 = i64({2, 0, 1, 1, 0, 2, 2, 2}, {2, 4});
  for (const Tensor& in : {x, xt}) {
    EXPECT_TRUE(gradcheck([&](const V& v) { return gather(v[0], 1, idx1b); }, {in})) << "gather dim 1";
    EXPECT_TRUE(gradcheck([&](const V& v) { return gather(v[0], 0, idx0); }, {in})) << "gather dim 0";
    EXPECT_TRUE(gradcheck([&](const V& v) { return gather(v[0], -1, i64({1, 1, 1}, {3, 1})); }, {in}))
        << "gather duplicates";
    EXPECT_TRUE(gradcheck([&](const V& v) { return index_select(v[0], 0, i64({2, 0, 2, 1}, {4})); }, {in}))
        << "index_select dim 0";
    EXPECT_TRUE(gradcheck([&](const V& v) { return index_select(v[0], 1, i64({3, 3, 0}, {3})); }, {in}))
        << "index_select dim 1";
  }
  EXPECT_TRUE(gradcheck([](const V& v) { return gather(v[0].expand({3, 4}), 1, i64({0, 3, 2, 2, 1, 0}, {3, 2})); },
                        {uniform_leaf({1, 4}, 143)}))
      << "gather broadcast";
  EXPECT_TRUE(gradcheck([](const V& v) { return index_select(v[0].expand({3, 4}), 1, i64({3, 0, 3}, {3})); },
                        {uniform_leaf({3, 1}, 160)}))
      << "index_select broadcast";

  // index_add / scatter_add: both base and src require grad.
  Tensor base = uniform_leaf({4, 3}, 144), src = uniform_leaf({3, 3}, 145);
  EXPECT_TRUE(gradcheck([](const V& v) { return index_add(v[0], 0, i64({1, 3, 1}, {3}), v[1]); }, {base, src}))
      << "index_add dim 0";
  EXPECT_TRUE(gradcheck([](const V& v) { return index_add(v[0], 1, i64({2, 0}, {2}), v[1]); },
                        {uniform_leaf({4, 3}, 146), uniform_leaf({4, 2}, 147)}))
      << "index_add dim 1";
  EXPECT_TRUE(gradcheck([](const V& v) { return index_add(v[0], 0, i64({1, 3, 1}, {3}), v[1]); },
                        {transposed_leaf(uniform_leaf({4, 3}, 148)), transposed_leaf(uniform_leaf({3, 3}, 149))}))
      << "index_add transposed";
  EXPECT_TRUE(gradcheck([](const V& v) { return index_add(v[0].expand({4, 3}), 0, i64({0, 0, 2}, {3}), v[1]); },
                        {uniform_leaf({1, 3}, 150), uniform_leaf({3, 3}, 151)}))
      << "index_add broadcast base";

  Tensor sidx = i64({0, 3, 0, 2, 2, 2}, {3, 2});
  EXPECT_TRUE(gradcheck([&](const V& v) { return scatter_add(v[0], 1, sidx, v[1]); },
                        {uniform_leaf({3, 4}, 152), uniform_leaf({3, 2}, 153)}))
      << "scatter_add dim 1";
  EXPECT_TRUE(gradcheck([](const V& v) { return scatter_add(v[0], 0, i64({1, 0, 1, 1, 1, 0}, {2, 3}), v[1]); },
                        {uniform_leaf({2, 4}, 154), uniform_leaf({2, 3}, 155)}))
      << "scatter_add dim 0, src narrower than base";
  EXPECT_TRUE(gradcheck([&](const V& v) { return scatter_add(v[0], 1, sidx, v[1]); },
                        {transposed_leaf(uniform_leaf({3, 4}, 156)), transposed_leaf(uniform_leaf({3, 2}, 157))}))
      << "scatter_add transposed";
  EXPECT_TRUE(gradcheck([&](const V& v) { return scatter_add(v[0].expand({3, 4}), 1, sidx, v[1].expand({3, 2})); },
                        {uniform_leaf({3, 1}, 158), uniform_leaf({1, 2}, 159)}))
      << "scatter_add broadcast";
}

TEST(Gradcheck, Where) {
  Tensor cond = from_vector<uint8_t>({1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}, {3, 4}).to(DType::boolean);
  auto fn = [&](const V& v) { return where(cond, v[0], v[1]); };
  EXPECT_TRUE(gradcheck(fn, {uniform_leaf({3, 4}, 161), uniform_leaf({3, 4}, 162)})) << "contiguous";
  EXPECT_TRUE(gradcheck(fn, {transposed_leaf(uniform_leaf({3, 4}, 163)), transposed_leaf(uniform_leaf({3, 4}, 164))}))
      << "transposed";
  EXPECT_TRUE(gradcheck(fn, {uniform_leaf({3, 1}, 165), uniform_leaf({1, 4}, 166)})) << "(3,1) x (1,4)";
  Tensor c_row = from_vector<uint8_t>({1, 0, 1, 0}, {4}).to(DType::boolean);
  EXPECT_TRUE(gradcheck([&](const V& v) { return where(c_row, v[0], v[1]); },
                        {uniform_leaf({3, 1}, 167), uniform_leaf({}, 168)}))
      << "broadcast condition";
  EXPECT_TRUE(gradcheck(fn, {uniform_leaf({3, 4}, 169), uniform_leaf({3, 4}, 170).detach()})) << "only a";
}

TEST(Gradcheck, TopkValues) {
  Tensor x = distinct_leaf({3, 5}, 171);
  for (bool largest : {true, false}) {
    SCOPED_TRACE(largest ? "largest" : "smallest");
    EXPECT_TRUE(gradcheck([&](const V& v) { return topk(v[0], 2, -1, largest).first; }, {x}));
    EXPECT_TRUE(gradcheck([&](const V& v) { return topk(v[0], 2, 0, largest).first; }, {x}));
    EXPECT_TRUE(gradcheck([&](const V& v) { return topk(v[0], 5, 1, largest).first; },
                          {transposed_leaf(distinct_leaf({3, 5}, 172))}));
    EXPECT_TRUE(gradcheck([&](const V& v) { return topk(v[0].expand({3, 5}), 3, -1, largest).first; },
                          {distinct_leaf({1, 5}, 173)}));
  }
}

TEST(Gradcheck, CatAndStack) {
  Tensor a = uniform_leaf({2, 3}, 181), b = uniform_leaf({1, 3}, 182);
  Tensor c = transposed_leaf(uniform_leaf({3, 3}, 183));
  EXPECT_TRUE(gradcheck([](const V& v) { return cat(v, 0); }, {a, b, c})) << "cat dim 0";
  EXPECT_TRUE(gradcheck([](const V& v) { return cat(v, 1); },
                        {uniform_leaf({3, 2}, 184), transposed_leaf(uniform_leaf({3, 3}, 185)), uniform_leaf({3, 1}, 186)}))
      << "cat dim 1";
  EXPECT_TRUE(gradcheck([](const V& v) { return cat({v[0].expand({2, 3}), v[1]}, -1); },
                        {uniform_leaf({2, 1}, 187), uniform_leaf({2, 2}, 188)}))
      << "cat broadcast";
  EXPECT_TRUE(gradcheck([](const V& v) { return cat({v[0], v[1], v[0]}, 0); },
                        {uniform_leaf({2, 2}, 189), uniform_leaf({1, 2}, 190).detach()}))
      << "cat repeated input, constant";
  for (int64_t d : {0, 1, 2, -1}) {
    SCOPED_TRACE(::testing::Message() << "stack dim " << d);
    EXPECT_TRUE(gradcheck([&](const V& v) { return stack(v, d); },
                          {uniform_leaf({2, 3}, 191), transposed_leaf(uniform_leaf({2, 3}, 192)), uniform_leaf({2, 3}, 193)}));
  }
  EXPECT_TRUE(gradcheck([](const V& v) { return stack({v[0].expand({2, 3}), v[1]}, 1); },
                        {uniform_leaf({1, 3}, 194), uniform_leaf({2, 3}, 195)}))
      << "stack broadcast";
}

TEST(Gradcheck, DropoutWithAFixedGenerator) {
  // A fresh generator per evaluation: the same mask in the analytic pass and in every
  // numerical evaluation.
  auto drop = [](double p) {
    return [p](const V& v) {
      Generator gen(7);
      return dropout(v[0], p, /*training=*/true, &gen);
    };
  };
  Tensor x = uniform_leaf({4, 5}, 201);
  {
    Generator gen(7);
    std::vector<double> y = vals(dropout(x.detach(), 0.3, true, &gen));
    int zeros_seen = 0;
    for (double v : y) zeros_seen += v == 0.0;
    ASSERT_GT(zeros_seen, 0) << "the mask should drop something";
    ASSERT_LT(zeros_seen, 20);
  }
  EXPECT_TRUE(gradcheck(drop(0.3), {x}));
  EXPECT_TRUE(gradcheck(drop(0.5), {transposed_leaf(uniform_leaf({4, 5}, 202))}));
  EXPECT_TRUE(gradcheck([](const V& v) {
                          Generator gen(9);
                          return dropout(v[0].expand({4, 5}), 0.4, true, &gen);
                        },
                        {uniform_leaf({4, 1}, 203)}));
  EXPECT_TRUE(gradcheck([](const V& v) { return dropout(v[0], 0.5, /*training=*/false); }, {x})) << "eval: identity";
}

TEST(Gradcheck, Views) {
  Tensor x = uniform_leaf({2, 3, 4}, 211);
  Tensor xt = transposed_leaf(uniform_leaf({2, 3, 4}, 212));
  for (const Tensor& in : {x, xt}) {
    SCOPED_TRACE(in.is_contiguous() ? "contiguous" : "transposed");
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].reshape({6, 4}); }, {in})) << "reshape";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].reshape({4, -1}); }, {in})) << "reshape -1";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].transpose(0, 2); }, {in})) << "transpose";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].permute({2, 0, 1}); }, {in})) << "permute";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].narrow(2, 1, 2); }, {in})) << "narrow";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].narrow(0, 1, 1).squeeze(0); }, {in})) << "narrow+squeeze";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].squeeze(1); }, {in})) << "squeeze (no-op)";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].unsqueeze(1); }, {in})) << "unsqueeze";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].unsqueeze(-1); }, {in})) << "unsqueeze last";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].flatten(); }, {in})) << "flatten";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].flatten(1); }, {in})) << "flatten(1)";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].contiguous(); }, {in})) << "contiguous";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].clone(); }, {in})) << "clone";
    EXPECT_TRUE(gradcheck([](const V& v) { return v[0].expand({3, 2, 3, 4}); }, {in})) << "expand leading";
  }
  // Views of a broadcast (expanded, stride-0) input.
  Tensor b = uniform_leaf({3, 1}, 220);
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> on_expanded = {
      {"reshape", [](const Tensor& t) { return t.reshape({4, 6}); }},
      {"transpose", [](const Tensor& t) { return t.transpose(0, 2); }},
      {"permute", [](const Tensor& t) { return t.permute({1, 2, 0}); }},
      {"narrow", [](const Tensor& t) { return t.narrow(2, 1, 2); }},
      {"squeeze", [](const Tensor& t) { return t.narrow(0, 0, 1).squeeze(0); }},
      {"unsqueeze", [](const Tensor& t) { return t.unsqueeze(1); }},
      {"flatten", [](const Tensor& t) { return t.flatten(1); }},
      {"contiguous", [](const Tensor& t) { return t.contiguous(); }},
      {"clone", [](const Tensor& t) { return t.clone(); }},
      {"expand", [](const Tensor& t) { return t.expand({2, 2, 3, 4}); }},
  };
  for (const auto& [name, f] : on_expanded)
    EXPECT_TRUE(gradcheck([&](const V& v) { return f(v[0].expand({2, 3, 4})); }, {b})) << name << " of expanded";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].view({6, 4}); }, {x})) << "view";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].view({2, 12}); }, {x})) << "view";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].transpose(1, 2).view({2, 4, 3}); }, {x}))
      << "view of a transposed view";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].expand({2, 3, 4}); }, {uniform_leaf({3, 1}, 213)}))
      << "expand (3,1)->(2,3,4)";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].expand({-1, 4}); }, {uniform_leaf({3, 1}, 214)}))
      << "expand with -1";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].squeeze(1); }, {uniform_leaf({3, 1}, 215)})) << "squeeze";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].squeeze(0); }, {uniform_leaf({1}, 216)})) << "squeeze to 0-d";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].unsqueeze(0); }, {uniform_leaf({}, 217)})) << "unsqueeze 0-d";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].flatten(); }, {uniform_leaf({}, 218)})) << "flatten 0-d";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].transpose(0, 1).contiguous().transpose(0, 1); },
                        {uniform_leaf({3, 4}, 219)}))
      << "contiguous of transposed";
  // A chain of views with an op between: gradients must route through every view.
  EXPECT_TRUE(gradcheck([](const V& v) {
                          Tensor t = v[0].permute({1, 0, 2}).reshape({3, 8}).narrow(1, 2, 5);
                          return mul(t, sum(t.expand({2, 3, 5}), {0}));
                        },
                        {x}));
}

TEST(Gradcheck, ToDtype) {
  // to(f32) rounds to 24 bits; inputs around 1e-3 keep the rounding error of a central
  // difference (ulp/2eps ≈ 6e-5 relative) inside rtol.
  Tensor x = uniform_leaf({3, 4}, 221, 1e-3, 2e-3);
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].to(DType::f32).to(DType::f64); }, {x}));
  EXPECT_TRUE(gradcheck([](const V& v) { return mul(v[0].to(DType::f32), 2.0f).to(DType::f64); },
                        {transposed_leaf(uniform_leaf({3, 4}, 222, -2e-3, -1e-3))}));
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].to(DType::f64); }, {x})) << "same dtype: identity";
  EXPECT_TRUE(gradcheck([](const V& v) { return v[0].expand({3, 4}).to(DType::f32).to(DType::f64); },
                        {uniform_leaf({3, 1}, 224, 1e-3, 2e-3)}))
      << "broadcast";
  // The gradient arrives in the input's dtype.
  Tensor y = uniform_leaf({3}, 223);
  sum(y.to(DType::f32)).backward();
  EXPECT_EQ(y.grad().dtype(), DType::f64);
  Tensor z = from_vector<float>({1, 2}, {2});
  z.set_requires_grad();
  sum(mul(z.to(DType::bf16), 3.0)).backward();
  EXPECT_EQ(z.grad().dtype(), DType::f32);
  EXPECT_EQ(z.grad().to_vector<float>(), (std::vector<float>{3, 3}));
}

TEST(Gradcheck, Float32GradientsMatchFloat64) {
  // The f32 kernels (the training path) agree with the checked f64 ones.
  Tensor x64 = uniform_leaf({2, 3, 5, 5}, 231), w64 = uniform_leaf({4, 3, 3, 3}, 232);
  Tensor x32 = x64.detach().to(DType::f32), w32 = w64.detach().to(DType::f32);
  x32.set_requires_grad();
  w32.set_requires_grad();
  auto net = [](const Tensor& x, const Tensor& w) {
    Tensor h = max_pool2d(relu(conv2d(x, w, Tensor(), 1, 1)), 2);
    return sum(log_softmax(h.flatten(1), -1));
  };
  net(x64, w64).backward();
  net(x32, w32).backward();
  std::vector<double> gx64 = vals(x64.grad()), gx32 = vals(x32.grad());
  std::vector<double> gw64 = vals(w64.grad()), gw32 = vals(w32.grad());
  for (size_t i = 0; i < gx64.size(); ++i) EXPECT_NEAR(gx32[i], gx64[i], 1e-4) << i;
  for (size_t i = 0; i < gw64.size(); ++i) EXPECT_NEAR(gw32[i], gw64[i], 1e-4) << i;
}

// ============================================================================ bad input

Tensor f32z(const Shape& s) { return zeros(s, DType::f32); }

TEST(BadInput, ArithmeticAndComparisonsNameBothShapesAndDtypes) {
  Tensor a = f32z({2, 3}), b = f32z({4, 5}), d = zeros({2, 3}, DType::f64);
  using BinFn = Tensor (*)(const Tensor&, const Tensor&);
  const std::vector<std::pair<const char*, BinFn>> ops = {
      {"add", add}, {"sub", sub}, {"mul", mul}, {"div", div}, {"maximum", maximum}, {"minimum", minimum},
      {"eq", eq}, {"ne", ne}, {"lt", lt}, {"le", le}, {"gt", gt}, {"ge", ge}};
  for (const auto& [name, fn] : ops) {
    SCOPED_TRACE(name);
    expect_error([&] { fn(a, b); }, {"[2, 3]", "[4, 5]"});
    expect_error([&] { fn(a, d); }, {name, "[2, 3] f32", "[2, 3] f64"});
  }
  Tensor bl = zeros({2}, DType::boolean);
  expect_error([&] { add(bl, bl); }, {"add", "[2] bool"});
  expect_error([&] { add(bl, 1.0); }, {"add", "[2] bool"});
  expect_error([&] { mul(bl, 2.0); }, {"mul", "[2] bool"});
  expect_error([&] { pow(bl, 2.0); }, {"pow", "[2] bool"});
  expect_error([&] { rsub(1.0, bl); }, {"sub", "[2] bool"});
  expect_error([&] { rdiv(1.0, bl); }, {"div", "[2] bool"});
  expect_error([&] { neg(bl); }, {"neg", "[2] bool"});
  expect_error([&] { mul(zeros({3}, DType::i64), 0.5); }, {"0.5", "[3] i64"});
  expect_error([&] { div(zeros({3}, DType::i64), zeros({3}, DType::i64)); }, {"division by zero", "[3] i64"});
}

TEST(BadInput, UnaryMathNamesTheTensor) {
  Tensor i = zeros({2, 2}, DType::i64);
  using UnFn = Tensor (*)(const Tensor&);
  const std::vector<std::pair<const char*, UnFn>> float_only = {
      {"exp", exp}, {"log", log}, {"sqrt", sqrt}, {"rsqrt", rsqrt}, {"sin", sin}, {"cos", cos},
      {"tanh", tanh}, {"sigmoid", sigmoid}, {"silu", silu}};
  for (const auto& [name, fn] : float_only) expect_error([&] { fn(i); }, {name, "[2, 2] i64"});
  expect_error([&] { gelu(i); }, {"gelu", "[2, 2] i64"});
  expect_error([&] { gelu(i, true); }, {"gelu_tanh", "[2, 2] i64"});
  Tensor bl = zeros({3}, DType::boolean);
  expect_error([&] { abs(bl); }, {"abs", "[3] bool"});
  expect_error([&] { square(bl); }, {"square", "[3] bool"});
  expect_error([&] { relu(bl); }, {"relu", "[3] bool"});
}

TEST(BadInput, ReductionsNameDimAndShape) {
  Tensor x = f32z({2, 3});
  expect_error([&] { sum(x, {2}); }, {"dim 2", "[2, 3]"});
  expect_error([&] { sum(x, {1, -1}); }, {"sum", "repeated"});
  expect_error([&] { mean(x, {-3}); }, {"dim -3", "[2, 3]"});
  expect_error([&] { mean(zeros({2}, DType::i32)); }, {"mean", "[2] i32"});
  expect_error([&] { max(x, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { min(x, -3); }, {"dim -3", "[2, 3]"});
  expect_error([&] { max(f32z({0})); }, {"[0]", "empty"});
  expect_error([&] { max(f32z({2, 0}), 1); }, {"[2, 0]", "empty"});
  expect_error([&] { logsumexp(x, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { logsumexp(zeros({2}, DType::i64), 0); }, {"logsumexp", "[2] i64"});
  expect_error([&] { argmax(x, 5); }, {"dim 5", "[2, 3]"});
  expect_error([&] { cumsum(x, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { softmax(x, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { log_softmax(x, -3); }, {"dim -3", "[2, 3]"});
  expect_error([&] { softmax(zeros({2}, DType::i64)); }, {"softmax", "[2] i64"});
  expect_error([&] { log_softmax(zeros({2}, DType::u8)); }, {"log_softmax", "[2] u8"});
}

TEST(BadInput, MatmulAndLinear) {
  expect_error([&] { matmul(f32z({2, 3}), f32z({4, 5})); }, {"[2, 3]", "[4, 5]", "not aligned"});
  expect_error([&] { matmul(f32z({3}), f32z({4, 5})); }, {"[3]", "[4, 5]"});
  expect_error([&] { matmul(f32z({2, 3}), f32z({4})); }, {"[2, 3]", "[4]"});
  expect_error([&] { matmul(f32z({3}), f32z({4})); }, {"[3]", "[4]"});
  expect_error([&] { matmul(f32z({2, 2, 3}), f32z({3, 3, 4})); }, {"[2]", "[3]"});
  expect_error([&] { matmul(f32z({2, 3}), zeros({3, 4}, DType::f64)); }, {"[2, 3] f32", "[3, 4] f64"});
  expect_error([&] { matmul(f32z({}), f32z({3})); }, {"[] f32", "[3] f32"});
  expect_error([&] { linear(f32z({3, 4}), f32z({5, 3})); }, {"[3, 4]", "[5, 3]"});
  expect_error([&] { linear(f32z({3, 4}), f32z({5, 4}), f32z({4})); }, {"[4] f32", "[5]"});
  expect_error([&] { linear(f32z({3, 4}), f32z({4})); }, {"[4] f32", "(out, in)"});
  expect_error([&] { linear(f32z({3, 4}), zeros({5, 4}, DType::f64)); }, {"[3, 4] f32", "[5, 4] f64"});
  expect_error([&] { linear(f32z({3, 4}), f32z({5, 4}), zeros({5}, DType::f64)); }, {"[5] f64", "[5, 4] f32"});
}

TEST(BadInput, ConvolutionAndPooling) {
  expect_error([&] { conv2d(f32z({1, 3, 5, 5}), f32z({2, 4, 3, 3})); }, {"[1, 3, 5, 5]", "[2, 4, 3, 3]", "channels"});
  expect_error([&] { conv2d(f32z({3, 5, 5}), f32z({2, 3, 3, 3})); }, {"[3, 5, 5]", "[2, 3, 3, 3]"});
  expect_error([&] { conv2d(f32z({1, 3, 5, 5}), f32z({2, 3, 3, 3}), f32z({3})); }, {"[3] f32", "[2, 3, 3, 3]"});
  expect_error([&] { conv2d(f32z({1, 3, 5, 5}), f32z({2, 3, 3, 3}), zeros({2}, DType::f64)); }, {"[2] f64", "f32"});
  expect_error([&] { conv2d(f32z({1, 3, 5, 5}), zeros({2, 3, 3, 3}, DType::f64)); }, {"[1, 3, 5, 5] f32", "[2, 3, 3, 3] f64"});
  expect_error([&] { conv2d(f32z({1, 3, 2, 2}), f32z({2, 3, 3, 3})); }, {"[1, 3, 2, 2]", "[2, 3, 3, 3]"});
  expect_error([&] { conv2d(f32z({1, 3, 5, 5}), f32z({2, 3, 3, 3}), Tensor(), 0); }, {"stride"});
  expect_error([&] { conv2d(zeros({1, 1, 3, 3}, DType::i32), zeros({1, 1, 1, 1}, DType::i32)); }, {"conv2d", "i32"});
  expect_error([&] { max_pool2d(f32z({4, 4}), 2); }, {"[4, 4]"});
  expect_error([&] { max_pool2d(f32z({1, 1, 2, 2}), 3); }, {"3x3", "[1, 1, 2, 2]"});
  expect_error([&] { max_pool2d(f32z({1, 1, 4, 4}), 2, 2, 2); }, {"padding"});
  expect_error([&] { max_pool2d(f32z({1, 1, 4, 4}), 0); }, {"kernel"});
}

TEST(BadInput, IndexingNamesShapesAndIndexValues) {
  Tensor x = f32z({2, 3});
  expect_error([&] { gather(x, 1, i64({0, 5}, {1, 2})); }, {"index 5", "size 3"});
  expect_error([&] { gather(x, 0, i64({-1}, {1, 1})); }, {"index -1", "size 2"});
  expect_error([&] { gather(x, 1, i64({0}, {1})); }, {"[1] i64", "[2, 3] f32"});
  expect_error([&] { gather(x, 2, i64({0}, {1, 1})); }, {"dim 2", "[2, 3]"});
  expect_error([&] { index_select(x, 1, i64({3}, {1})); }, {"index 3", "size 3"});
  expect_error([&] { index_select(x, 0, i64({0, 1}, {1, 2})); }, {"1-D", "[1, 2] i64"});
  expect_error([&] { index_add(x, 0, i64({1}, {1}), f32z({1, 4})); }, {"[1, 4] f32", "[1, 3]", "[2, 3] f32"});
  expect_error([&] { index_add(x, 0, i64({2}, {1}), f32z({1, 3})); }, {"index 2", "size 2"});
  expect_error([&] { index_add(x, 0, i64({1}, {1}), zeros({1, 3}, DType::f64)); }, {"[2, 3] f32", "[1, 3] f64"});
  expect_error([&] { scatter_add(x, 1, i64({0, 1}, {1, 2}), f32z({1, 3})); }, {"[1, 2] i64", "[1, 3] f32"});
  expect_error([&] { scatter_add(x, 1, i64({9}, {1, 1}), f32z({1, 1})); }, {"index 9", "size 3"});
  expect_error([&] { scatter_add(x, 1, i64({0, 0, 0}, {3, 1}), f32z({3, 1})); }, {"[3, 1]", "[2, 3]"});
  Tensor c = zeros({2}, DType::boolean);
  expect_error([&] { where(c, x, x); }, {"[2]", "[2, 3]"});
  expect_error([&] { where(zeros({2, 3}), x, x); }, {"bool", "[2, 3] f32"});
  expect_error([&] { where(zeros({2, 3}, DType::boolean), x, zeros({2, 3}, DType::f64)); }, {"[2, 3] f32", "[2, 3] f64"});
  expect_error([&] { topk(x, 4); }, {"k=4", "[2, 3]"});
  expect_error([&] { topk(x, 1, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { topk(zeros({3}, DType::boolean), 1); }, {"topk", "bool"});
}

TEST(BadInput, CatStackDropout) {
  expect_error([&] { cat({f32z({2, 3}), f32z({2, 4})}, 0); }, {"[2, 3]", "[2, 4]"});
  expect_error([&] { cat({f32z({2, 3}), zeros({2, 3}, DType::f64)}); }, {"[2, 3] f32", "[2, 3] f64"});
  expect_error([&] { cat({f32z({2, 3}), f32z({3})}); }, {"[2, 3] f32", "[3] f32"});
  expect_error([&] { cat({f32z({2, 3})}, 2); }, {"dim 2"});
  expect_error([&] { cat({}); }, {"at least one"});
  expect_error([&] { cat({f32z({}), f32z({})}); }, {"0-d", "stack"});
  expect_error([&] { stack({f32z({2, 3}), f32z({2, 4})}); }, {"[2, 3]", "[2, 4]"});
  expect_error([&] { stack({f32z({2, 3}), zeros({2, 3}, DType::f64)}); }, {"[2, 3] f32", "[2, 3] f64"});
  expect_error([&] { stack({f32z({2, 3})}, 3); }, {"dim 3"});
  expect_error([&] { stack({}); }, {"at least one"});
  expect_error([&] { dropout(f32z({2}), 1.0, true); }, {"p=1"});
  expect_error([&] { dropout(f32z({2}), -0.1, true); }, {"p=-0.1"});
}

TEST(BadInput, ViewsNameTheShapes) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  expect_error([&] { x.reshape({4, 2}); }, {"[2, 3]", "[4, 2]"});
  expect_error([&] { x.view({5}); }, {"[2, 3]", "[5]"});
  expect_error([&] { x.transpose(0, 1).view({6}); }, {"[3, 2]", "[6]"});
  expect_error([&] { x.transpose(0, 2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { x.permute({1}); }, {"[1]", "[2, 3]"});
  expect_error([&] { x.permute({1, 1}); }, {"[1, 1]", "repeated"});
  expect_error([&] { x.narrow(1, 2, 2); }, {"[2, 4)", "[2, 3]"});
  expect_error([&] { x.expand({2, 4}); }, {"[2, 3]", "[2, 4]"});
  expect_error([&] { x.expand({3}); }, {"[2, 3]", "[3]"});
  expect_error([&] { x.squeeze(2); }, {"dim 2", "[2, 3]"});
  expect_error([&] { x.unsqueeze(3); }, {"dim 3", "rank 3"});
  expect_error([&] { x.flatten(1, 0); }, {"[2, 3]"});
  EXPECT_TRUE(x.is_leaf()) << "failed views leave the input alone";
}

}  // namespace

// ============================================================================ anomaly mode

TEST(AnomalyMode, ForwardNonFiniteOutputNamesTheOpAndItsInputs) {
  Tensor x = from_vector<double>({1.0, -2.0}, {2}).set_requires_grad(true);
  Tensor y = mul(x, 3.0);
  EXPECT_NO_THROW(log(y));   // off by default: NaN flows silently, as in PyTorch
  autograd::DetectAnomalyGuard anomaly;
  mox::testing::expect_error([&] { log(y); }, {"anomaly: op 'log'", "inputs from: mul", "(forward)"});
  EXPECT_NO_THROW(exp(y));   // finite outputs pass
}

TEST(AnomalyMode, BackwardNonFiniteGradientNamesTheOp) {
  // sqrt(0) = 0 is finite, its derivative 1/(2·sqrt(0)) is not.
  Tensor x = from_vector<double>({0.0, 4.0}, {2}).set_requires_grad(true);
  {
    Tensor loss = sum(sqrt(x));
    EXPECT_NO_THROW(loss.backward());
    EXPECT_TRUE(std::isinf(x.grad().to_vector<double>()[0]));
  }
  autograd::DetectAnomalyGuard anomaly;
  Tensor loss = sum(sqrt(mul(x, 1.0)));
  mox::testing::expect_error([&] { loss.backward(); }, {"anomaly: the backward of op 'sqrt'", "inputs from: mul"});
}

TEST(AnomalyMode, GuardRestoresThePreviousMode) {
  EXPECT_FALSE(autograd::anomaly_mode());
  {
    autograd::DetectAnomalyGuard on;
    EXPECT_TRUE(autograd::anomaly_mode());
    {
      autograd::DetectAnomalyGuard off(false);
      EXPECT_FALSE(autograd::anomaly_mode());
    }
    EXPECT_TRUE(autograd::anomaly_mode());
  }
  EXPECT_FALSE(autograd::anomaly_mode());
}
