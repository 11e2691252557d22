// test_nn.cpp — nn::Module registration and the basic layers.
//
// Module: ordered dotted names in named_parameters()/state_dict()/named_modules() for nested
// modules and Sequential/ModuleList ("0", "1", ...); empty, dotted and clashing names are
// rejected; parameters require grad; train()/eval() reach every descendant; zero_grad;
// to(Device::cpu()) is a no-op and to(DType::f64) converts in place; strict
// load_state_dict (missing / unexpected / duplicate key, shape and dtype mismatch: each
// error names the key, a shape mismatch both shapes; a failed load changes nothing; a good
// load copies values). Layers: PyTorch's default init bounds for Linear and Conv2d
// (±1/√fan_in, sample std ≈ bound/√3), Linear forward against x·Wᵀ+b by hand, Conv2d /
// MaxPool2d output shapes, Dropout (eval identity, train drop rate and 1/(1−p) scale,
// seeded masks), Flatten, and a float64 gradcheck of Linear and Conv2d modules w.r.t. their
// input, weight and bias (tests/gradcheck.h). Not here: optimizers (test_optim.cpp), losses
// (test_loss.cpp), checkpoints (test_checkpoint.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "examples/cifar10/net.h"
#include "nn/basic.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "tests/gradcheck.h"
#include "tests/expect_error.h"

namespace {

using namespace mox;
using namespace mox::nn;
using Names = std::vector<std::string>;

using mox::testing::expect_error;

Names names_of(const NamedTensors& nt) {
  Names out;
  for (auto& [n, t] : nt) out.push_back(n);
  return out;
}

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// A module exposing the protected registration calls, for the registration tests.
class Open : public Module {
 public:
  using Module::register_buffer;
  using Module::register_module;
  using Module::register_parameter;
  std::string repr() const override { return "Open"; }
};

// Two levels of nesting: block { fc (Linear 3→4), act, out (Linear 4→2) } + a scale param.
class Block : public Module {
 public:
  Block() {
    fc = register_module("fc", std::make_shared<Linear>(3, 4));
    act = register_module("act", std::make_shared<ReLU>());
    out = register_module("out", std::make_shared<Linear>(4, 2, /*bias=*/false));
  }
  Tensor forward(const Tensor& x) override { return out->forward(act->forward(fc->forward(x))); }
  std::shared_ptr<Linear> fc, out;
  std::shared_ptr<ReLU> act;
};

class Outer : public Module {
 public:
  Outer() {
    scale = register_parameter("scale", ones({2}));
    block = register_module("block", std::make_shared<Block>());
    head = register_module("head", std::make_shared<Linear>(2, 1));
    register_buffer("running", zeros({2}));
  }
  Tensor scale;
  std::shared_ptr<Block> block;
  std::shared_ptr<Linear> head;
};

// ================================================================================ registration

TEST(NnModule, NamedParametersAreDottedAndInRegistrationOrder) {
  Outer m;
  EXPECT_EQ(names_of(m.named_parameters()),
            (Names{"scale", "block.fc.weight", "block.fc.bias", "block.out.weight", "head.weight", "head.bias"}));
  EXPECT_EQ(names_of(m.named_buffers()), (Names{"running"}));
  // state_dict = every parameter (in order) and every buffer (in order).
  EXPECT_EQ(names_of(m.state_dict()), (Names{"scale", "block.fc.weight", "block.fc.bias", "block.out.weight",
                                             "head.weight", "head.bias", "running"}));
  EXPECT_EQ(m.parameters().size(), 6u);
  EXPECT_EQ(m.num_parameters(), 2 + 12 + 4 + 8 + 2 + 1);
  Names modules;
  for (auto& [n, p] : m.named_modules()) modules.push_back(n);
  EXPECT_EQ(modules, (Names{"", "block", "block.fc", "block.act", "block.out", "head"}));
  EXPECT_EQ(m.named_modules()[0].second, &m);
  // The handles kept as members are the registered tensors themselves.
  EXPECT_TRUE(m.named_parameters()[1].second.is_same(m.block->fc->weight));
}

TEST(NnModule, SequentialAndModuleListNameChildrenByPosition) {
  auto seq = std::make_shared<Sequential>(
      std::initializer_list<std::shared_ptr<Module>>{std::make_shared<Linear>(4, 3), std::make_shared<ReLU>(),
                                                     std::make_shared<Linear>(3, 2)});
  EXPECT_EQ(names_of(seq->named_parameters()), (Names{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(seq->size(), 3u);
  EXPECT_EQ(seq->forward(ones({5, 4})).shape(), (Shape{5, 2}));

  ModuleList list;
  list.push_back(std::make_shared<Linear>(2, 2));
  list.push_back(seq);
  EXPECT_EQ(names_of(list.named_parameters()),
            (Names{"0.weight", "0.bias", "1.0.weight", "1.0.bias", "1.2.weight", "1.2.bias"}));
  EXPECT_EQ(&list[1], seq.get());
  expect_error([&] { (void)list[2]; }, {"index 2", "2 modules"});
  expect_error([&] { (void)(*seq)[7]; }, {"index 7", "3 layers"});
  expect_error([&] { list.forward(ones({1, 2})); }, {"ModuleList", "forward"});
}

TEST(NnModule, RejectsEmptyDottedAndDuplicateNames) {
  Open m;
  m.register_parameter("w", zeros({2}));
  expect_error([&] { m.register_parameter("", zeros({2})); }, {"''", "non-empty"});
  expect_error([&] { m.register_parameter("a.b", zeros({2})); }, {"'a.b'", "'.'"});
  expect_error([&] { m.register_buffer("x.y", zeros({2})); }, {"'x.y'"});
  expect_error([&] { m.register_module("sub.mod", std::make_shared<ReLU>()); }, {"'sub.mod'"});
  expect_error([&] { m.register_parameter("w", zeros({2})); }, {"'w'", "already registered"});
  m.register_module("child", std::make_shared<ReLU>());
  expect_error([&] { m.register_module("child", std::make_shared<ReLU>()); }, {"'child'", "already registered"});
  expect_error([&] { m.register_module("null", std::shared_ptr<Module>()); }, {"'null'", "null"});
  // One namespace for parameters, buffers and children (as PyTorch's attributes): a buffer
  // named like a parameter would give state_dict() the same key twice.
  expect_error([&] { m.register_buffer("w", zeros({2})); }, {"'w'", "already registered"});
  expect_error([&] { m.register_parameter("child", zeros({2})); }, {"'child'", "already registered"});
  expect_error([&] { m.register_module("w", std::make_shared<ReLU>()); }, {"'w'", "already registered"});
  EXPECT_EQ(names_of(m.state_dict()), (Names{"w"}));
  m.load_state_dict(m.state_dict());   // its own state always loads back
}

TEST(NnModule, ParametersRequireGradBuffersDoNot) {
  Outer m;
  for (auto& [n, p] : m.named_parameters()) {
    EXPECT_TRUE(p.requires_grad()) << n;
    EXPECT_TRUE(p.is_leaf()) << n;
  }
  for (auto& [n, b] : m.named_buffers()) EXPECT_FALSE(b.requires_grad()) << n;
}

TEST(NnModule, TrainAndEvalReachEveryDescendant) {
  Outer m;
  for (auto& [n, mod] : m.named_modules()) EXPECT_TRUE(mod->is_training()) << n;
  m.eval();
  for (auto& [n, mod] : m.named_modules()) EXPECT_FALSE(mod->is_training()) << n;
  m.block->train();   // a subtree only
  EXPECT_FALSE(m.is_training());
  EXPECT_TRUE(m.block->fc->is_training());
  EXPECT_FALSE(m.head->is_training());
  m.train();
  for (auto& [n, mod] : m.named_modules()) EXPECT_TRUE(mod->is_training()) << n;
}

TEST(NnModule, ZeroGradZeroesEveryGradientInPlace) {
  Block b;
  Tensor loss = sum(b.forward(full({5, 3}, 0.5)));
  loss.backward();
  Tensor g = b.fc->weight.grad();
  ASSERT_TRUE(g.defined());
  b.zero_grad();
  for (auto& [n, p] : b.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << n;
    for (double v : vals(p.grad())) EXPECT_EQ(v, 0.0) << n;
  }
  EXPECT_TRUE(b.fc->weight.grad().is_same(g)) << "zero_grad keeps the grad buffers";
  Linear fresh(2, 2);
  fresh.zero_grad();   // no grads yet: nothing to do, no error
  EXPECT_FALSE(fresh.weight.grad().defined());
}

TEST(NnModule, ToCpuIsANoOpAndToF64ConvertsInPlace) {
  Linear lin(3, 2);
  const void* data = lin.weight.raw_data();
  const std::vector<double> before = vals(lin.weight);
  lin.to(Device::cpu());
  EXPECT_EQ(lin.weight.raw_data(), data);
  EXPECT_EQ(vals(lin.weight), before);
  EXPECT_TRUE(lin.named_parameters()[0].second.is_same(lin.weight));

  lin.to(DType::f64);
  EXPECT_EQ(lin.weight.dtype(), DType::f64);
  EXPECT_EQ(lin.bias.dtype(), DType::f64);
  EXPECT_EQ(vals(lin.weight), before) << "f32 → f64 is exact";
  EXPECT_TRUE(lin.weight.requires_grad());
  EXPECT_TRUE(lin.named_parameters()[0].second.is_same(lin.weight)) << "member handles stay valid";
  EXPECT_EQ(lin.forward(ones({1, 3}, DType::f64)).dtype(), DType::f64);
}

// ================================================================================ load_state_dict

TEST(NnModule, LoadStateDictCopiesValuesIntoTheLiveTensors) {
  Outer a, b;
  NamedTensors src;
  double v = 0.25;
  for (auto& [n, t] : a.state_dict()) {
    Tensor c = full(t.shape(), v, t.dtype());
    v += 0.5;
    src.emplace_back(n, c);
  }
  Tensor weight_handle = a.block->fc->weight;
  a.load_state_dict(src);
  for (size_t i = 0; i < src.size(); ++i)
    EXPECT_EQ(vals(a.state_dict()[i].second), vals(src[i].second)) << src[i].first;
  EXPECT_TRUE(a.block->fc->weight.is_same(weight_handle)) << "copied in place, not replaced";
  EXPECT_TRUE(a.block->fc->weight.requires_grad());
  src[1].second.data<float>()[0] = 99.f;   // the model does not alias the source
  EXPECT_NE(vals(a.block->fc->weight)[0], 99.0);
  // Order of the given keys does not matter.
  NamedTensors reversed(src.rbegin(), src.rend());
  b.load_state_dict(reversed);
  EXPECT_EQ(vals(b.head->bias), vals(a.head->bias));
}

TEST(NnModule, LoadStateDictIsStrictAndNamesTheKey) {
  Outer m;
  const NamedTensors good = m.state_dict();
  auto without = [&](const std::string& key) {
    NamedTensors s;
    for (auto& kv : good) if (kv.first != key) s.push_back(kv);
    return s;
  };
  auto replaced = [&](const std::string& key, Tensor t) {
    NamedTensors s = good;
    for (auto& kv : s) if (kv.first == key) kv.second = t;
    return s;
  };
  expect_error([&] { m.load_state_dict(without("block.fc.bias")); }, {"missing key", "'block.fc.bias'"});
  expect_error([&] { m.load_state_dict(without("running")); }, {"missing key", "'running'"});
  NamedTensors extra = good;
  extra.emplace_back("block.fc.extra", zeros({1}));
  expect_error([&] { m.load_state_dict(extra); }, {"unexpected key", "'block.fc.extra'"});
  NamedTensors twice = good;
  twice.push_back(good[0]);
  expect_error([&] { m.load_state_dict(twice); }, {"'scale'", "twice"});
  expect_error([&] { m.load_state_dict(replaced("block.fc.weight", zeros({3, 4}))); },
               {"'block.fc.weight'", "[3, 4]", "[4, 3]"});
  expect_error([&] { m.load_state_dict(replaced("head.bias", zeros({1}, DType::f64))); },
               {"'head.bias'", "f64", "f32"});
}

TEST(NnModule, FailedLoadStateDictChangesNothing) {
  Outer m;
  const std::vector<double> w0 = vals(m.block->fc->weight), s0 = vals(m.scale);
  NamedTensors bad;
  for (auto& [n, t] : m.state_dict()) bad.emplace_back(n, full(t.shape(), 7.0, t.dtype()));
  bad.back().second = zeros({3});   // "running" (the last key) has the wrong shape
  expect_error([&] { m.load_state_dict(bad); }, {"'running'", "[3]", "[2]"});
  EXPECT_EQ(vals(m.scale), s0) << "keys before the bad one must not be loaded";
  EXPECT_EQ(vals(m.block->fc->weight), w0);
}

// ================================================================================ init

// Checks every value lies in [-bound, bound] and, for a large tensor, that the sample mean
// is ≈ 0 and the sample std ≈ bound/√3 (U(−b, b) has std b/√3).
void expect_uniform(const Tensor& t, double bound, const std::string& what) {
  std::vector<double> v = vals(t);
  double sum = 0, sq = 0, lo = 1e9, hi = -1e9;
  for (double x : v) {
    sum += x; sq += x * x;
    lo = std::min(lo, x); hi = std::max(hi, x);
  }
  EXPECT_GE(lo, -bound) << what;
  EXPECT_LE(hi, bound) << what;
  if (v.size() >= 10000) {
    const double n = double(v.size()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    EXPECT_NEAR(mean, 0.0, 0.02 * bound) << what;
    EXPECT_NEAR(sd, bound / std::sqrt(3.0), 0.02 * bound) << what;
    EXPECT_GT(hi, 0.99 * bound) << what << ": the range is used fully";
    EXPECT_LT(lo, -0.99 * bound) << what;
  }
}

TEST(NnInit, LinearUsesPyTorchDefaultBounds) {
  manual_seed(7);
  Linear fc(400, 120);   // the Net's fc1: 48,000 weights
  const double bound = 1.0 / std::sqrt(400.0);
  EXPECT_EQ(fc.weight.shape(), (Shape{120, 400}));
  EXPECT_EQ(fc.weight.dtype(), DType::f32);
  expect_uniform(fc.weight, bound, "fc1.weight");
  expect_uniform(fc.bias, bound, "fc1.bias");
  Linear big(10, 20000);   // 20,000 biases for the bias statistics
  expect_uniform(big.bias, 1.0 / std::sqrt(10.0), "bias");
  Linear nobias(4, 3, false);
  EXPECT_FALSE(nobias.bias.defined());
  EXPECT_EQ(names_of(nobias.named_parameters()), (Names{"weight"}));
}

TEST(NnInit, Conv2dUsesFanInOfChannelsTimesKernel) {
  manual_seed(8);
  Conv2d conv(16, 32, 5);   // fan_in 400, 12,800 weights
  EXPECT_EQ(init::fan_in(conv.weight), 16 * 5 * 5);
  const double bound = 1.0 / std::sqrt(400.0);
  expect_uniform(conv.weight, bound, "conv.weight");
  expect_uniform(conv.bias, bound, "conv.bias");
  Conv2d wide(1000, 20000, 1);   // 20,000 biases, fan_in 1000
  expect_uniform(wide.bias, 1.0 / std::sqrt(1000.0), "bias");
}

TEST(NnInit, GeneratorMakesInitReproducible) {
  Generator g1(42), g2(42), g3(43);
  Linear a(8, 4, true, &g1), b(8, 4, true, &g2), c(8, 4, true, &g3);
  EXPECT_EQ(vals(a.weight), vals(b.weight));
  EXPECT_EQ(vals(a.bias), vals(b.bias));
  EXPECT_NE(vals(a.weight), vals(c.weight));
  manual_seed(5);
  Linear d(8, 4);
  manual_seed(5);
  Linear e(8, 4);
  EXPECT_EQ(vals(d.weight), vals(e.weight));
}

TEST(NnInit, RejectsBadSizes) {
  expect_error([] { Linear(0, 3); }, {"in_features=0"});
  expect_error([] { Conv2d(3, 6, 0); }, {"kernel_size=0"});
  expect_error([] { Conv2d(3, 6, 3, 0); }, {"stride=0"});
  expect_error([] { MaxPool2d(0); }, {"kernel_size=0"});
  expect_error([] { Dropout(1.0); }, {"p=1"});
  expect_error([] { init::fan_in(zeros({3})); }, {"[3]", "2 dims"});
}

// ================================================================================ layers

TEST(NnLinear, ForwardIsXTimesWTransposedPlusB) {
  Linear lin(3, 2);
  lin.load_state_dict({{"weight", from_vector<float>({1, 2, 3, -1, 0.5f, 2}, {2, 3})},
                       {"bias", from_vector<float>({0.5f, -1}, {2})}});
  Tensor x = from_vector<float>({1, 0, -1, 2, 1, 0.5f}, {2, 3});
  // row 0: [1·1 + 2·0 + 3·(−1) + 0.5, −1·1 + 0.5·0 + 2·(−1) − 1] = [−1.5, −4]
  // row 1: [1·2 + 2·1 + 3·0.5 + 0.5, −1·2 + 0.5·1 + 2·0.5 − 1] = [6, −1.5]
  Tensor y = lin.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(vals(y), (std::vector<double>{-1.5, -4, 6, -1.5}));
  // Leading dims are batch dims: (2, 1, 3) → (2, 1, 2).
  EXPECT_EQ(vals(lin.forward(x.reshape({2, 1, 3}))), vals(y));
  EXPECT_EQ(lin.forward(x.reshape({2, 1, 3})).shape(), (Shape{2, 1, 2}));
  EXPECT_EQ(lin(x).shape(), (Shape{2, 2}));
  EXPECT_THROW(lin.forward(ones({2, 4})), Error);
  EXPECT_EQ(lin.repr(), "Linear(in=3, out=2)");
}

TEST(NnLinear, Float64GradcheckOfTheModuleForward) {
  Generator gen(11);
  Linear lin(4, 3, true, &gen);
  lin.to(DType::f64);
  Tensor x = mox::testing::uniform_leaf({5, 4}, 12);
  // gradcheck perturbs the inputs' storage, which the module's own parameters share.
  EXPECT_TRUE(mox::testing::gradcheck([&](const std::vector<Tensor>& in) { return lin.forward(in[0]); },
                                 {x, lin.weight, lin.bias}));
}

TEST(NnConv2d, Float64GradcheckOfTheModuleForward) {
  Generator gen(13);
  Conv2d conv(2, 3, 3, /*stride=*/2, /*padding=*/1, true, &gen);
  conv.to(DType::f64);
  Tensor x = mox::testing::uniform_leaf({2, 2, 5, 5}, 14);
  EXPECT_TRUE(mox::testing::gradcheck([&](const std::vector<Tensor>& in) { return conv.forward(in[0]); },
                                 {x, conv.weight, conv.bias}));
}

TEST(NnConv2d, OutputShapes) {
  manual_seed(1);
  EXPECT_EQ(Conv2d(3, 6, 5).forward(zeros({4, 3, 32, 32})).shape(), (Shape{4, 6, 28, 28}));
  EXPECT_EQ(Conv2d(3, 8, 3, 1, 1).forward(zeros({2, 3, 32, 32})).shape(), (Shape{2, 8, 32, 32}));
  EXPECT_EQ(Conv2d(3, 8, 5, 2, 1).forward(zeros({1, 3, 32, 32})).shape(), (Shape{1, 8, 15, 15}));   // ⌊29/2⌋+1
  EXPECT_EQ(Conv2d(1, 1, 3, 1, 0, false).forward(zeros({1, 1, 3, 3})).shape(), (Shape{1, 1, 1, 1}));
  EXPECT_THROW(Conv2d(3, 6, 5).forward(zeros({4, 2, 32, 32})), Error);   // wrong channel count
  EXPECT_EQ(Conv2d(3, 6, 5).repr(), "Conv2d(3, 6, kernel=5, stride=1, padding=0)");
}

TEST(NnMaxPool2d, OutputShapesAndValues) {
  EXPECT_EQ(MaxPool2d(2, 2).forward(zeros({4, 6, 28, 28})).shape(), (Shape{4, 6, 14, 14}));
  EXPECT_EQ(MaxPool2d(2).forward(zeros({4, 16, 10, 10})).shape(), (Shape{4, 16, 5, 5}));   // stride = kernel
  EXPECT_EQ(MaxPool2d(2).forward(zeros({1, 1, 5, 5})).shape(), (Shape{1, 1, 2, 2}));      // floor
  EXPECT_EQ(MaxPool2d(3, 2, 1).forward(zeros({1, 2, 7, 7})).shape(), (Shape{1, 2, 4, 4}));
  EXPECT_EQ(MaxPool2d(2).stride, 2);
  Tensor x = from_vector<float>({1, 5, 2, 0, -1, 3, 4, 8, 7, 6, -2, -3, 0, 1, 9, 2}, {1, 1, 4, 4});
  EXPECT_EQ(vals(MaxPool2d(2).forward(x)), (std::vector<double>{5, 8, 7, 9}));
}

TEST(CifarNet, TutorialNetShapesAndParameterCount) {
  manual_seed(3);
  cifar10::Net net;
  EXPECT_EQ(net.forward(zeros({3, 3, 32, 32})).shape(), (Shape{3, 10}));
  // conv1 456 + conv2 2,416 + fc1 48,120 + fc2 10,164 + fc3 850 (PyTorch prints 62,006)
  EXPECT_EQ(net.num_parameters(), 62006);
  EXPECT_EQ(names_of(net.named_parameters()),
            (Names{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                   "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"}));
}

TEST(NnDropout, EvalModeIsTheIdentity) {
  Dropout d(0.5);
  d.eval();
  Tensor x = full({100}, 3.0);
  Tensor y = d.forward(x);
  EXPECT_EQ(vals(y), vals(x));
  Dropout zero(0.0);   // p = 0 in training mode keeps everything
  EXPECT_EQ(vals(zero.forward(x)), vals(x));
}

TEST(NnDropout, TrainModeDropsAboutPAndScalesTheRest) {
  for (double p : {0.1, 0.5, 0.8}) {
    Generator gen(100);
    Dropout d(p, &gen);
    ASSERT_TRUE(d.is_training());
    const int64_t n = 100000;
    std::vector<double> y = vals(d.forward(full({n}, 2.0)));
    int64_t zeros_seen = 0;
    for (double v : y) {
      if (v == 0.0) ++zeros_seen;
      else EXPECT_NEAR(v, 2.0 / (1.0 - p), 1e-5) << "p=" << p;
    }
    // Binomial(n, p): sd ≤ 0.0016·n; 0.01·n is > 6 sd.
    EXPECT_NEAR(double(zeros_seen) / double(n), p, 0.01) << "p=" << p;
  }
}

TEST(NnDropout, SameSeedSameMaskAndGradientUsesTheMask) {
  Generator g1(9), g2(9);
  Dropout a(0.3, &g1), b(0.3, &g2);
  Tensor x = full({1000}, 1.0);
  std::vector<double> ma = vals(a.forward(x)), mb = vals(b.forward(x));
  EXPECT_EQ(ma, mb);
  EXPECT_NE(vals(a.forward(x)), ma) << "the generator advances: the next mask differs";
  Tensor leaf = full({1000}, 1.0, DType::f32);
  leaf.set_requires_grad();
  Generator g3(9);
  Dropout c(0.3, &g3);
  sum(c.forward(leaf)).backward();
  EXPECT_EQ(vals(leaf.grad()), ma) << "d(sum)/dx is the scaled mask";
}

TEST(NnFlatten, FlattensAllButTheBatchDimByDefault) {
  Tensor x = arange(0, 120, 1, DType::f32).reshape({2, 3, 4, 5});
  Tensor y = Flatten().forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 60}));
  EXPECT_EQ(vals(y), vals(x));
  EXPECT_EQ(Flatten(0).forward(x).shape(), (Shape{120}));
  EXPECT_EQ(Flatten(1, 2).forward(x).shape(), (Shape{2, 12, 5}));
  EXPECT_EQ(Flatten(-2).forward(x).shape(), (Shape{2, 3, 20}));
}

TEST(NnActivations, ModulesApplyTheirFunction) {
  Tensor x = from_vector<float>({-2, -0.5f, 0, 1.5f}, {4});
  EXPECT_EQ(vals(ReLU().forward(x)), (std::vector<double>{0, 0, 0, 1.5}));
  EXPECT_EQ(vals(Tanh().forward(x)), vals(tanh(x)));
  EXPECT_EQ(vals(SiLU().forward(x)), vals(silu(x)));
  EXPECT_EQ(vals(GELU().forward(x)), vals(gelu(x)));
  EXPECT_EQ(vals(GELU(true).forward(x)), vals(gelu(x, true)));
}

TEST(NnModule, ToStringPrintsTheTree) {
  Block b;
  const std::string s = b.to_string();
  EXPECT_NE(s.find("(fc): Linear(in=3, out=4)"), std::string::npos) << s;
  EXPECT_NE(s.find("(out): Linear(in=4, out=2, bias=false)"), std::string::npos) << s;
  EXPECT_NE(s.find("(act): ReLU()"), std::string::npos) << s;
}

}  // namespace
