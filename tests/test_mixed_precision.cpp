// test_mixed_precision.cpp — optim::MixedPrecision on the CPU: a bf16/fp16 model with fp32
// master weights, DeepSpeed's fp16 overflow handling, fp32 routers, checkpoints of the masters;
// and the CPU's f32 fallback for the 16-bit conv and transformer layers (widen_on_cpu).
//
// Checked: one SGD step of a bf16 (fp16) model moves its masters as the f32 model's step moves
// its weights, within 16-bit rounding of the gradients, and the 16-bit weights are the masters
// rounded; updates below bf16's resolution accumulate in the masters. fp16: the loss is scaled,
// the master gradients are unscaled; an overflow skips the step (masters, weights and optimizer
// untouched), is absorbed by the hysteresis once, then halves the scale; at the minimum scale it
// is an error. Routers (moe::is_router) stay f32 and are their own masters; an MoE model trains
// as its f32 twin does (within 3 % after 20 steps); nothing in a kept module is ever rounded
// (frozen parameters and buffers have no master to restore them).
// state_dict / model_state hold the f32 masters, load strictly, and round-trip a checkpoint with
// the optimizer. dtype f32 is a pass-through. Errors name the parameter or the value.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "moe/gate.h"
#include "moe/moe_layer.h"
#include "nn/checkpoint.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/optim/mixed_precision.h"
#include "nn/optim/sgd.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

namespace {

using namespace mox;
using mox::testing::expect_error;
using optim::MixedPrecision;

constexpr int64_t kIn = 6, kHidden = 8, kOut = 3, kBatch = 16;

// in → GELU → [MoE: 4 Linear experts, top-2, dropless] → out.
class Net : public nn::Module {
 public:
  explicit Net(bool with_moe) {
    manual_seed(11);   // the same weights for every instance
    in = register_module("in", std::make_shared<nn::Linear>(kIn, kHidden));
    if (with_moe) {
      moe::MoEConfig c;
      c.gate.num_experts = 4;
      c.gate.k = 2;
      c.gate.drop_tokens = false;
      c.gate.use_rts = false;
      c.gate.top2_2nd_expert_sampling = false;
      c.gate.min_capacity = 1;
      layer = register_module(
          "moe", std::make_shared<moe::MoE>(kHidden, [] { return std::make_shared<nn::Linear>(kHidden, kHidden); }, c));
    }
    out = register_module("out", std::make_shared<nn::Linear>(kHidden, kOut));
  }
  Tensor forward(const Tensor& x) override {   // x (B, 6) → (B, 3)
    Tensor h = gelu(in->forward(x));           // (B, 8)
    if (layer) h = layer->forward(h);
    return out->forward(h);
  }
  std::shared_ptr<nn::Linear> in, out;
  std::shared_ptr<moe::MoE> layer;
};

std::pair<Tensor, Tensor> batch() {   // x (16, 6), y (16, 3)
  std::vector<float> x(kBatch * kIn), y(kBatch * kOut);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.37 * double(i) + 0.5));
  for (size_t i = 0; i < y.size(); ++i) y[i] = float(std::cos(0.11 * double(i)));
  return {from_vector(x, {kBatch, kIn}), from_vector(y, {kBatch, kOut})};
}

Tensor loss_of(nn::Module& m, const MixedPrecision& mp, double factor = 1.0) {   // in f32
  auto [x, y] = batch();
  return mul(nn::mse_loss(m.forward(x.to(mp.dtype())).to(DType::f32), y), factor);
}

std::vector<double> values(const Tensor& t) { return raw::contiguous(raw::to_dtype(t, DType::f64)).to_vector<double>(); }
double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : values(t)) m = std::max(m, std::abs(v));
  return m;
}
double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = values(a), y = values(b);
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

optim::ParamGroup sgd_group(const nn::Module& m, double lr) {
  optim::ParamGroup g = optim::make_group("default", m.named_parameters());
  g.lr = lr;
  return g;
}

// One step of the mixed-precision loop (no ranks): true when the optimizer stepped.
bool mp_step(nn::Module& m, MixedPrecision& mp, optim::Optimizer& opt, double loss_factor = 1.0) {
  mp.zero_grad();
  mp.backward(loss_of(m, mp, loss_factor));
  mp.grads_to_masters();
  if (!mp.unscale_or_skip(mp.overflowed())) return false;
  opt.step();
  mp.masters_to_params();
  return true;
}

class HalfStep : public ::testing::TestWithParam<DType> {};

TEST_P(HalfStep, MovesTheMastersAsTheF32StepMovesItsWeights) {
  const DType dt = GetParam();
  Net ref(false), net(false);
  MixedPrecision f32(ref, DType::f32);
  optim::Sgd ref_opt({sgd_group(ref, 0.5)});
  MixedPrecision mp(net, dt);
  optim::Sgd opt(mp.master_groups({sgd_group(net, 0.5)}));
  EXPECT_EQ(net.in->weight.dtype(), dt);
  std::vector<Tensor> before;
  for (const Tensor& m : mp.masters()) {
    EXPECT_EQ(m.dtype(), DType::f32);
    before.push_back(raw::clone(m));
  }
  ASSERT_TRUE(mp_step(ref, f32, ref_opt));
  ASSERT_TRUE(mp_step(net, mp, opt));
  const double tol = dt == DType::bf16 ? 3e-2 : 5e-3;   // 16-bit activations and gradients
  const auto& w = mp.weights();
  const std::vector<Tensor> ref_params = ref.parameters();
  for (size_t i = 0; i < w.size(); ++i) {
    const Tensor want = raw::sub(ref_params[i], before[i]), got = raw::sub(w[i].master, before[i]);   // the steps
    ASSERT_GT(max_abs(want), 0.0) << w[i].name;
    EXPECT_LE(max_abs_diff(got, want), tol * max_abs(want)) << w[i].name;
    // The 16-bit weight is its master rounded, exactly.
    EXPECT_EQ(max_abs_diff(w[i].param, raw::to_dtype(w[i].master, dt)), 0.0) << w[i].name;
  }
}

INSTANTIATE_TEST_SUITE_P(Bf16AndFp16, HalfStep, ::testing::Values(DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(MixedPrecision, UpdatesBelowBf16ResolutionAccumulateInTheMasters) {
  Net net(false);
  MixedPrecision mp(net, DType::bf16);
  optim::Sgd opt(mp.master_groups({sgd_group(net, 1e-5)}));
  const Tensor start16 = raw::clone(net.out->weight), start32 = raw::clone(mp.master(net.out->weight));
  ASSERT_TRUE(mp_step(net, mp, opt));
  // One tiny step rounds back to the same bf16 weights (8 significant bits), but the master moved.
  EXPECT_EQ(max_abs_diff(net.out->weight, start16), 0.0);
  EXPECT_GT(max_abs_diff(mp.master(net.out->weight), start32), 0.0);
}

TEST(MixedPrecision, Fp16ScalesTheLossAndUnscalesTheMasterGradients) {
  Net ref(false), net(false);
  optim::LossScalerConfig c;
  c.initial_scale_power = 10;
  MixedPrecision mp(net, DType::f16, {}, c);
  EXPECT_EQ(mp.loss_scale(), 1024.0);
  mp.backward(loss_of(net, mp));
  EXPECT_GT(max_abs(net.out->weight.grad()), 0.0);
  mp.grads_to_masters();
  ASSERT_FALSE(mp.overflowed());
  ASSERT_TRUE(mp.unscale_or_skip(false));
  auto [x, y] = batch();
  nn::mse_loss(ref.forward(x), y).backward();
  const std::vector<Tensor> ref_params = ref.parameters();
  for (size_t i = 0; i < ref_params.size(); ++i) {
    const Tensor want = ref_params[i].grad(), got = mp.weights()[i].master.grad();
    ASSERT_EQ(got.dtype(), DType::f32);
    EXPECT_LE(max_abs_diff(got, want), 5e-3 * max_abs(want)) << mp.weights()[i].name;
  }
}

TEST(MixedPrecision, Fp16OverflowSkipsTheStepAndHalvesTheScaleAfterTheHysteresis) {
  Net net(false);
  optim::LossScalerConfig c;
  c.initial_scale_power = 8;   // DeepSpeed's other defaults: hysteresis 2, window 1000, min scale 1
  MixedPrecision mp(net, DType::f16, {}, c);
  optim::ParamGroup g = sgd_group(net, 0.1);
  g.momentum = 0.9;   // a step would allocate momentum buffers
  optim::Sgd opt(mp.master_groups({g}));
  const Tensor param = raw::clone(net.in->weight), master = raw::clone(mp.master(net.in->weight));
  // A loss whose scaled gradients overflow f16 (max 65504): 1e6 · 256.
  EXPECT_FALSE(mp_step(net, mp, opt, 1e6));
  EXPECT_EQ(mp.loss_scale(), 256.0);   // the first overflow is absorbed by the hysteresis
  EXPECT_FALSE(mp_step(net, mp, opt, 1e6));
  EXPECT_EQ(mp.loss_scale(), 128.0);   // the second halves the scale
  EXPECT_EQ(max_abs_diff(net.in->weight, param), 0.0);
  EXPECT_EQ(max_abs_diff(mp.master(net.in->weight), master), 0.0);
  EXPECT_TRUE(opt.state_dict().tensors.empty());   // the optimizer never stepped
  EXPECT_TRUE(mp_step(net, mp, opt));   // an ordinary loss steps at the new scale
  EXPECT_GT(max_abs_diff(mp.master(net.in->weight), master), 0.0);
  EXPECT_EQ(mp.scaler()->iteration(), 3);
}

TEST(MixedPrecision, Fp16OverflowAtTheMinimumScaleIsAnError) {
  Net net(false);
  optim::LossScalerConfig c;
  c.initial_scale_power = 0;
  c.hysteresis = 1;
  MixedPrecision mp(net, DType::f16, {}, c);
  optim::Sgd opt(mp.master_groups({sgd_group(net, 0.1)}));
  expect_error([&] { mp_step(net, mp, opt, 1e30); }, {"loss scale already at its minimum", "train in bf16/f32"});
}

TEST(MixedPrecision, RoutersStayF32AsTheirOwnMastersAndAnMoEModelTrains) {
  Net net(true);
  MixedPrecision mp(net, DType::bf16, moe::is_router);
  const Tensor router = net.layer->gate->wg->weight;
  EXPECT_EQ(router.dtype(), DType::f32);
  EXPECT_TRUE(mp.master(router).is_same(router));
  EXPECT_EQ(net.in->weight.dtype(), DType::bf16);
  EXPECT_FALSE(mp.master(net.in->weight).is_same(net.in->weight));
  const Tensor expert = net.layer->experts->named_parameters()[0].second;
  EXPECT_EQ(expert.dtype(), DType::bf16);
  optim::Sgd opt(mp.master_groups({sgd_group(net, 0.2)}));
  Net ref(true);   // the same training in f32
  MixedPrecision f32(ref, DType::f32, moe::is_router);
  optim::Sgd ref_opt({sgd_group(ref, 0.2)});
  const Tensor router_start = raw::clone(router);
  const double first = loss_of(net, mp).item<double>();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(mp_step(net, mp, opt));
    ASSERT_TRUE(mp_step(ref, f32, ref_opt));
  }
  const double last = loss_of(net, mp).item<double>(), want = loss_of(ref, f32).item<double>();
  EXPECT_LT(last, 0.9 * first);
  EXPECT_NEAR(last, want, 0.03 * want);
  EXPECT_GT(max_abs_diff(router, router_start), 0.0);   // the router learns too, in f32
  // Without the predicate everything is converted.
  Net all(true);
  MixedPrecision plain(all, DType::bf16);
  EXPECT_EQ(all.layer->gate->wg->weight.dtype(), DType::bf16);
}

// 1 + 2^-20: neither f16 nor bf16 represents it.
const float kOffGrid = 1.0f + std::ldexp(1.0f, -20);

// A trainable parameter, a frozen one and a buffer, each holding kOffGrid.
class Leaf : public nn::Module {
 public:
  Leaf() {
    weight = register_parameter("weight", full({3}, kOffGrid));
    frozen = register_parameter("frozen", full({3}, kOffGrid));
    frozen.set_requires_grad(false);
    stat = register_buffer("stat", full({3}, kOffGrid));
  }
  Tensor weight, frozen, stat;
};
class Kept : public Leaf {   // the module kept in f32, with a child
 public:
  Kept() { child = register_module("child", std::make_shared<Leaf>()); }
  std::shared_ptr<Leaf> child;
};
class Holder : public Leaf {
 public:
  Holder() { kept = register_module("kept", std::make_shared<Kept>()); }
  std::shared_ptr<Kept> kept;
};

TEST(MixedPrecision, KeptModulesAreNeverRoundedFrozenParametersAndBuffersIncluded) {
  for (const DType dt : {DType::f16, DType::bf16}) {
    SCOPED_TRACE(str(dt));
    Holder m;
    MixedPrecision mp(m, dt, [](const nn::Module& x) { return dynamic_cast<const Kept*>(&x) != nullptr; });
    for (const auto& [name, t] : m.kept->state_dict()) {
      EXPECT_EQ(t.dtype(), DType::f32) << name;
      EXPECT_EQ(values(t), std::vector<double>(3, kOffGrid)) << name;   // bit for bit
    }
    EXPECT_TRUE(mp.master(m.kept->weight).is_same(m.kept->weight));
    for (const Tensor& t : {m.weight, m.frozen, m.stat}) EXPECT_EQ(t.dtype(), dt);   // the rest: 16-bit
    EXPECT_EQ(values(mp.master(m.weight)), std::vector<double>(3, kOffGrid));
  }
}

TEST(MixedPrecision, F32IsAPassThrough) {
  Net net(false);
  MixedPrecision mp(net, DType::f32, moe::is_router);
  for (const auto& w : mp.weights()) EXPECT_TRUE(w.master.is_same(w.param)) << w.name;
  EXPECT_EQ(mp.scaler(), nullptr);
  EXPECT_EQ(mp.loss_scale(), 1.0);
  const nn::NamedTensors state = mp.state_dict(), plain = net.state_dict();
  ASSERT_EQ(state.size(), plain.size());
  for (size_t i = 0; i < state.size(); ++i) EXPECT_TRUE(state[i].second.is_same(plain[i].second));
}

TEST(MixedPrecision, StateDictHoldsTheMastersAndLoadsStrictly) {
  Net net(true), other(true);
  MixedPrecision mp(net, DType::bf16, moe::is_router);
  optim::Sgd opt(mp.master_groups({sgd_group(net, 0.2)}));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(mp_step(net, mp, opt));
  const nn::NamedTensors state = mp.state_dict();
  for (const auto& [name, t] : state) EXPECT_EQ(t.dtype(), DType::f32) << name;
  // It loads into the f32 model as is (generation, evaluation)...
  Net f32(true);
  f32.load_state_dict(state);
  EXPECT_EQ(max_abs_diff(f32.in->weight, mp.master(net.in->weight)), 0.0);
  // ...and into another bf16 run: masters exactly, weights rounded from them.
  MixedPrecision mp2(other, DType::bf16, moe::is_router);
  mp2.load_state_dict(state);
  EXPECT_EQ(max_abs_diff(mp2.master(other.in->weight), mp.master(net.in->weight)), 0.0);
  EXPECT_EQ(max_abs_diff(other.in->weight, net.in->weight), 0.0);
  // Strict: the bf16 weights themselves are not what it holds.
  expect_error([&] { mp2.load_state_dict(net.state_dict()); }, {"key 'in.weight' has dtype bf16", "f32"});
  nn::NamedTensors missing(state.begin() + 1, state.end());
  expect_error([&] { mp2.load_state_dict(missing); }, {"missing key '", state[0].first});
}

TEST(MixedPrecision, CheckpointRoundTripsMastersAndOptimizer) {
  mox::testing::TempDir dir("mox-mp");
  Net net(false), other(false);
  MixedPrecision mp(net, DType::bf16);
  optim::ParamGroup g = sgd_group(net, 0.1);
  g.momentum = 0.9;
  optim::Sgd opt(mp.master_groups({g}));
  ASSERT_TRUE(mp_step(net, mp, opt));
  nn::save_checkpoint(dir.path("ck.safetensors"), mp.model_state(), &opt, {{"dtype", "bf16"}});
  MixedPrecision mp2(other, DType::bf16);
  optim::ParamGroup g2 = sgd_group(other, 0.1);
  g2.momentum = 0.9;
  optim::Sgd opt2(mp2.master_groups({g2}));
  const nn::Metadata meta = nn::load_checkpoint(dir.path("ck.safetensors"), mp2.model_state(), &opt2);
  EXPECT_EQ(meta.at("dtype"), "bf16");
  // The next step is the same in both.
  ASSERT_TRUE(mp_step(net, mp, opt));
  ASSERT_TRUE(mp_step(other, mp2, opt2));
  for (size_t i = 0; i < mp.weights().size(); ++i)
    EXPECT_EQ(max_abs_diff(mp.weights()[i].master, mp2.weights()[i].master), 0.0) << mp.weights()[i].name;
}

TEST(MixedPrecision, ErrorsNameTheParameterOrTheValue) {
  Net net(false);
  net.in->to(DType::f64);
  expect_error([&] { MixedPrecision mp(net, DType::bf16); }, {"parameter 'in.weight'", "f64", "build the model in f32"});
  Net ok(false);
  expect_error([&] { MixedPrecision mp(ok, DType::i32); }, {"dtype i32", "f32, f16, bf16"});
  optim::LossScalerConfig bad;
  bad.hysteresis = 0;
  expect_error([&] { MixedPrecision mp(ok, DType::f16, {}, bad); }, {"hysteresis must be >= 1"});
  EXPECT_EQ(ok.in->weight.dtype(), DType::f32);   // a refused config leaves the model as it was
  MixedPrecision mp(ok, DType::bf16);
  expect_error([&] { mp.master(zeros({2})); }, {"not a trainable parameter"});
  expect_error([&] { mp.unscale_or_skip(true); }, {"bf16", "no loss scaler"});
  expect_error([&] { mp.backward(zeros({2})); }, {"single loss value", "[2]"});
  optim::ParamGroup foreign = optim::make_group("default", {{"w", zeros({2}).set_requires_grad()}});
  expect_error([&] { mp.master_groups({foreign}); }, {"group 'default' param 'w'", "not a trainable parameter"});
}

// On the CPU the 16-bit conv and transformer-layer ops run through f32 copies: their results
// agree with the f32 op to 16-bit rounding, and gradients come back in the inputs' dtype.
TEST(MixedPrecision, CpuRunsConvAndTransformerLayersIn16BitThroughF32) {
  auto leaf = [](const Shape& s, DType dt) { return raw::to_dtype(raw::uniform(s, -1, 1), dt).set_requires_grad(); };
  for (DType dt : {DType::bf16, DType::f16}) {
    const double tol = dt == DType::bf16 ? 2e-2 : 3e-3;
    auto check = [&](const char* what, const std::function<Tensor(DType)>& f) {
      manual_seed(3);
      Tensor want = f(DType::f32);
      manual_seed(3);
      Tensor got = f(dt);
      EXPECT_EQ(got.dtype(), dt) << what;
      EXPECT_LE(max_abs_diff(got, want), tol * std::max(1.0, max_abs(want))) << what << " " << dt;
    };
    check("conv2d", [&](DType d) {
      Tensor x = leaf({2, 3, 8, 8}, d), w = leaf({4, 3, 3, 3}, d), b = leaf({4}, d);
      Tensor y = conv2d(x, w, b, 1, 1);
      sum(y.to(DType::f32)).backward();
      EXPECT_EQ(w.grad().dtype(), d);
      return y;
    });
    check("layer_norm", [&](DType d) { return layer_norm(leaf({4, 16}, d), leaf({16}, d), leaf({16}, d)); });
    check("rms_norm", [&](DType d) { return rms_norm(leaf({4, 16}, d), leaf({16}, d)); });
    check("bias_gelu", [&](DType d) { return bias_gelu(leaf({4, 16}, d), leaf({16}, d)); });
    check("attention", [&](DType d) {
      Tensor q = leaf({2, 2, 5, 4}, d), k = leaf({2, 2, 5, 4}, d), v = leaf({2, 2, 5, 4}, d);
      Tensor y = scaled_dot_product_attention(q, k, v, true);
      sum(y.to(DType::f32)).backward();
      EXPECT_EQ(q.grad().dtype(), d);
      return y;
    });
    check("rotary", [&](DType d) { return apply_rotary(leaf({2, 2, 5, 4}, d), 3); });
  }
}

}  // namespace
