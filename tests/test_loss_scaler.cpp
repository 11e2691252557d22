// test_loss_scaler.cpp — LossScaler: DeepSpeed's dynamic loss-scale rule, the static scale,
// the gradient finite check, unscale, exact state save/load and config errors.
//
// The expected scales are worked out by hand from DeepSpeed's DynamicLossScaler.update_scale
// (deepspeed/runtime/fp16/loss_scaler.py): on an overflow, if hysteresis == 1 or
// cur_hysteresis == 1 the scale becomes max(scale/2, min) (an error when it already is the
// min), else cur_hysteresis -= 1; either way last_overflow_iter = cur_iter. On a clean step
// consecutive_hysteresis refills cur_hysteresis, and when (cur_iter - last_overflow_iter) %
// window == 0 the scale doubles (refilling cur_hysteresis when not consecutive). Then
// cur_iter += 1. Each table row is one step: its outcome and the state after it.
//
// DeepSpeed's own tests/unit/runtime/half_precision/test_dynamic_loss_scale.py drive the
// non-ZeRO FP16_Optimizer, whose _update_scale is a different rule (no hysteresis, growth when
// cur_iter - last_overflow_iter - 1 is a positive multiple of the window, a silent clamp at the
// minimum). Where that rule and DynamicLossScaler agree (hysteresis 1), their cases are
// reproduced below and cited; where they differ, the comment says how.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "nn/optim/loss_scaler.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"

namespace {

using namespace mox;
using namespace mox::optim;
using mox::testing::expect_error;

constexpr bool O = true;    // overflow: the step is skipped
constexpr bool C = false;   // clean step

struct Row {
  bool overflow;
  double scale;             // after the step
  int hysteresis;           // cur_hysteresis after the step
  int64_t last_overflow;    // last_overflow_iter after the step
};

LossScalerConfig dynamic_config(int power, int64_t window, int hysteresis, bool consecutive = false,
                                double min_scale = 1) {
  LossScalerConfig c;
  c.initial_scale_power = power;
  c.loss_scale_window = window;
  c.hysteresis = hysteresis;
  c.consecutive_hysteresis = consecutive;
  c.min_loss_scale = min_scale;
  return c;
}

// Feed the rows' outcomes and check the whole state after every step.
void expect_table(LossScaler& s, const std::vector<Row>& rows) {
  const int64_t start = s.iteration();
  for (size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i + 1) + (rows[i].overflow ? " (overflow)" : " (clean)"));
    s.update(rows[i].overflow);
    EXPECT_EQ(s.scale(), rows[i].scale);
    EXPECT_EQ(s.iteration(), start + int64_t(i) + 1);
    const auto st = s.state();
    EXPECT_EQ(st.at("cur_hysteresis"), std::to_string(rows[i].hysteresis));
    EXPECT_EQ(st.at("last_overflow_iter"), std::to_string(rows[i].last_overflow));
  }
}

Tensor param_with_grad(const std::vector<double>& grad, DType dtype = DType::f32) {
  Tensor p = zeros({int64_t(grad.size())}, dtype);
  p.set_grad(from_doubles(grad, {int64_t(grad.size())}, dtype));
  return p;
}

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---------------------------------------------------------------- the dynamic rule

TEST(LossScaler, DefaultsFollowDeepSpeed) {
  LossScaler s(LossScalerConfig{});
  EXPECT_TRUE(s.dynamic());
  EXPECT_EQ(s.scale(), 65536.0);   // 2^16
  EXPECT_EQ(s.iteration(), 0);
  const std::map<std::string, std::string> fresh = {
      {"cur_scale", "65536"}, {"cur_iter", "0"}, {"last_overflow_iter", "-1"}, {"cur_hysteresis", "2"}};
  EXPECT_EQ(s.state(), fresh);
  // The first growth: (cur_iter - (-1)) % 1000 == 0 at cur_iter 999, the 1000th clean step.
  for (int i = 0; i < 999; ++i) s.update(C);
  EXPECT_EQ(s.scale(), 65536.0);
  s.update(C);
  EXPECT_EQ(s.scale(), 131072.0);
  EXPECT_EQ(s.iteration(), 1000);
}

// 2^4, window 3, hysteresis 2: the first overflow only uses up hysteresis, the second halves;
// window clean steps after the last overflow double (and refill the hysteresis); an overflow
// between growths counts from itself.
TEST(LossScaler, HysteresisAndWindow) {
  LossScaler s(dynamic_config(4, 3, 2));
  expect_table(s, {
      {O, 16, 1, 0},    // iter 0: hysteresis 2 -> 1, scale kept
      {O, 8, 1, 1},     // iter 1: hysteresis at 1: halve
      {C, 8, 1, 1},     // iter 2: (2-1) % 3 = 1
      {C, 8, 1, 1},     // iter 3: 2
      {C, 16, 2, 1},    // iter 4: 3 % 3 = 0: double, refill hysteresis
      {O, 16, 1, 5},    // iter 5: hysteresis 2 -> 1
      {C, 16, 1, 5},    // iter 6: not consecutive: hysteresis stays 1
      {O, 8, 1, 7},     // iter 7: halve
      {C, 8, 1, 7},
      {C, 8, 1, 7},
      {C, 16, 2, 7},    // iter 10: (10-7) % 3 = 0
      {C, 16, 2, 7},
      {C, 16, 2, 7},
      {C, 32, 2, 7},    // iter 13: 6 % 3 = 0
  });
}

// The same steps with consecutive_hysteresis: every clean step refills the hysteresis, so
// the overflow at iter 7 (one clean step after the one at iter 5) is absorbed again.
TEST(LossScaler, ConsecutiveHysteresis) {
  LossScaler s(dynamic_config(4, 3, 2, /*consecutive=*/true));
  expect_table(s, {
      {O, 16, 1, 0},
      {O, 8, 1, 1},
      {C, 8, 2, 1},     // refilled by the clean step
      {C, 8, 2, 1},
      {C, 16, 2, 1},
      {O, 16, 1, 5},
      {C, 16, 2, 5},    // refilled
      {O, 16, 1, 7},    // absorbed (not consecutive: halved to 8)
      {C, 16, 2, 7},
      {C, 16, 2, 7},
      {C, 32, 2, 7},
      {C, 32, 2, 7},
      {C, 32, 2, 7},
      {C, 64, 2, 7},
  });
}

// Hysteresis 3, window 100 (no growth): consecutive refills to 3 after one clean step; not
// consecutive, the hysteresis once used up stays at 1 and every overflow halves.
TEST(LossScaler, HysteresisThreeRefill) {
  LossScaler consecutive(dynamic_config(4, 100, 3, true));
  expect_table(consecutive, {
      {O, 16, 2, 0}, {O, 16, 1, 1}, {C, 16, 3, 1}, {O, 16, 2, 3},
      {O, 16, 1, 4}, {O, 8, 1, 5},  {C, 8, 3, 5},  {C, 8, 3, 5},
  });
  LossScaler plain(dynamic_config(4, 100, 3, false));
  expect_table(plain, {
      {O, 16, 2, 0}, {O, 16, 1, 1}, {C, 16, 1, 1}, {O, 8, 1, 3},
      {O, 4, 1, 4},  {O, 2, 1, 5},  {C, 2, 1, 5},  {C, 2, 1, 5},
  });
}

// DeepSpeed test_some_overflow (2^8, window 2): two overflows divide by 4, window + 1 clean
// steps double once, one more overflow halves; cur_iter 2, 5, 6. The fp16 config there leaves
// hysteresis at its default 2, which FP16_Optimizer ignores; with DynamicLossScaler the same
// numbers need hysteresis 1. (FP16_Optimizer grows at the third clean step, DynamicLossScaler
// at the second; the test only looks after the third.)
TEST(LossScaler, DeepSpeedSomeOverflow) {
  LossScaler s(dynamic_config(8, 2, 1));
  expect_table(s, {
      {O, 128, 1, 0}, {O, 64, 1, 1},                   // 2^8 / 2^2, cur_iter 2
      {C, 64, 1, 1},  {C, 128, 1, 1}, {C, 128, 1, 1},  // x 2, cur_iter 5
      {O, 64, 1, 5},                                   // / 2, cur_iter 6
  });
}

// DeepSpeed test_all_overflow (2^4, window 2): every overflow halves down to the minimum
// (TestFused: min 1; TestUnfused: min_loss_scale 0.25). DeepSpeed's FP16 optimizers then stay
// at the minimum silently; DynamicLossScaler (raise_error_at_min_scale) stops the run, and so
// do we: the overflow after the scale reached the minimum throws.
TEST(LossScaler, DeepSpeedAllOverflowStopsAtMinimum) {
  LossScaler fused(dynamic_config(4, 2, 1));
  expect_table(fused, {{O, 8, 1, 0}, {O, 4, 1, 1}, {O, 2, 1, 2}, {O, 1, 1, 3}});
  expect_error([&] { fused.update(O); }, {"minimum", "scale 1", "min_loss_scale 1", "iteration 4"});

  LossScaler unfused(dynamic_config(4, 2, 1, false, 0.25));
  expect_table(unfused, {{O, 8, 1, 0}, {O, 4, 1, 1}, {O, 2, 1, 2}, {O, 1, 1, 3}, {O, 0.5, 1, 4},
                         {O, 0.25, 1, 5}});
  expect_error([&] { unfused.update(O); }, {"scale 0.25", "min_loss_scale 0.25", "iteration 6"});
}

// DeepSpeed test_no_overflow (2^8, window 2, ten clean steps). FP16_Optimizer doubles after
// clean steps 3, 5, 7, 9; DynamicLossScaler after steps 2, 4, 6, 8, 10 ((cur_iter + 1) % 2 == 0).
TEST(LossScaler, NoOverflowDoublesEveryWindow) {
  LossScaler s(dynamic_config(8, 2, 2));
  for (int step = 1; step <= 10; ++step) {
    s.update(C);
    EXPECT_EQ(s.scale(), std::ldexp(1.0, 8 + step / 2)) << "after clean step " << step;
    EXPECT_EQ(s.iteration(), step);
  }
}

// max(scale / 2, min) with a minimum that is not a power of two; then the error, which names
// the scale, the minimum and what to do, and leaves the state as it was.
TEST(LossScaler, MinimumClampsThenThrows) {
  LossScaler s(dynamic_config(2, 2, 1, false, 3));
  expect_table(s, {{O, 3, 1, 0}, {C, 3, 1, 0}, {C, 6, 1, 0}, {O, 3, 1, 3}});
  const auto before = s.state();
  expect_error([&] { s.update(O); },
               {"already at its minimum", "scale 3", "min_loss_scale 3", "iteration 4",
                "learning rate", "min_loss_scale"});
  EXPECT_EQ(s.state(), before);
  EXPECT_EQ(s.iteration(), 4);
  // A clean step afterwards goes on from the untouched state: (4 - 3) % 2 = 1, no growth.
  s.update(C);
  EXPECT_EQ(s.scale(), 3.0);
}

// At the minimum the check sits inside the halving branch: hysteresis still absorbs one
// overflow first, as in DeepSpeed.
TEST(LossScaler, HysteresisAbsorbsAnOverflowAtTheMinimum) {
  LossScaler s(dynamic_config(0, 1000, 2));   // scale 2^0 = min 1
  expect_table(s, {{O, 1, 1, 0}});
  expect_error([&] { s.update(O); }, {"minimum", "iteration 1"});
}

TEST(LossScaler, GrowingPastTheLargestDoubleThrows) {
  LossScaler s(dynamic_config(1022, 1, 1));
  s.update(C);
  EXPECT_EQ(s.scale(), std::ldexp(1.0, 1023));
  const auto before = s.state();
  expect_error([&] { s.update(C); }, {"infinite", "iteration 1", "static loss_scale"});
  EXPECT_EQ(s.state(), before);
  s.update(O);   // an overflow still halves
  EXPECT_EQ(s.scale(), std::ldexp(1.0, 1022));
}

// ---------------------------------------------------------------- static scale

TEST(LossScaler, StaticScaleNeverChanges) {
  LossScalerConfig c;
  c.loss_scale = 128;
  c.initial_scale_power = 5000;   // unused by a static scaler, so not checked
  LossScaler s(c);
  EXPECT_FALSE(s.dynamic());
  EXPECT_EQ(s.scale(), 128.0);
  for (bool overflow : {O, O, O, C, C, C, O, C}) s.update(overflow);
  EXPECT_EQ(s.scale(), 128.0);
  EXPECT_EQ(s.iteration(), 8);
  EXPECT_EQ(s.state().at("last_overflow_iter"), "6");

  c.loss_scale = 1;   // equal to min_loss_scale: an overflow is still only a skipped step
  LossScaler one(c);
  for (int i = 0; i < 5; ++i) one.update(O);
  EXPECT_EQ(one.scale(), 1.0);
}

// ---------------------------------------------------------------- gradients

TEST(LossScaler, GradsFinite) {
  EXPECT_TRUE(LossScaler::grads_finite({}));
  Tensor a = param_with_grad({1, -2, 3e38});   // 3e38 + 3e38 would overflow a float sum
  Tensor b = param_with_grad({3e38, 0.5});
  Tensor none = zeros({3});                     // undefined grad: skipped
  EXPECT_TRUE(LossScaler::grads_finite({a, none, b}));
  for (double bad : {kNaN, kInf, -kInf}) {
    for (DType dtype : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + std::to_string(bad));
      Tensor c = param_with_grad({0.25, bad, 1}, dtype);
      EXPECT_FALSE(LossScaler::grads_finite({a, none, c}));
      EXPECT_FALSE(LossScaler::grads_finite({c}));
    }
  }
  // A non-contiguous gradient (a transposed view) is checked element by element too.
  Tensor w = zeros({3, 2});
  w.set_grad(from_doubles({1, 2, kNaN, 4, 5, 6}, {2, 3}, DType::f32).transpose(0, 1));
  EXPECT_FALSE(LossScaler::grads_finite({w}));
  // f16 overflow: 70000 does not fit in f16 and becomes inf.
  EXPECT_FALSE(LossScaler::grads_finite({param_with_grad({70000}, DType::f16)}));
}

TEST(LossScaler, UnscaleIsExactAndInPlace) {
  LossScaler s(dynamic_config(16, 1000, 2));   // 2^16
  const std::vector<double> x = {1, -0.5, 3.25, 1e-3, -7e-5, 0};
  std::vector<double> scaled;
  for (double v : x) scaled.push_back(v * 65536);
  Tensor p = param_with_grad(scaled, DType::f64);
  Tensor none = zeros({2});
  const Tensor g = p.grad();
  s.unscale({p, none});
  EXPECT_TRUE(p.grad().is_same(g));
  EXPECT_EQ(p.grad().to_vector<double>(), x);
  EXPECT_FALSE(none.grad().defined());

  // f32, f16, bf16: dividing by a power of two only moves the exponent.
  LossScaler s4(dynamic_config(4, 1000, 2));   // 2^4
  const std::vector<double> y = {1, -0.5, 3.25, 0.0078125, 6.103515625e-05, -2047};
  std::vector<double> y16;
  for (double v : y) y16.push_back(v * 16);
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const std::vector<double> expect = from_doubles(y, {6}, dtype).to_vector<double>();
    Tensor q = param_with_grad(y16, dtype);
    s4.unscale({q});
    EXPECT_EQ(q.grad().dtype(), dtype);
    EXPECT_EQ(q.grad().to_vector<double>(), expect);
  }

  // A static scale that is not a power of two: a true division, exact where x·3 was.
  LossScalerConfig c;
  c.loss_scale = 3;
  LossScaler three(c);
  Tensor r = param_with_grad({3, 4.5, -7.5, 1.125});
  three.unscale({r});
  EXPECT_EQ(r.grad().to_vector<float>(), (std::vector<float>{1, 1.5f, -2.5f, 0.375f}));

  // A non-contiguous gradient is divided in place, through the view.
  Tensor base = from_doubles({16, 32, 48, 64, 80, 96}, {2, 3}, DType::f32);
  Tensor w = zeros({3, 2});
  w.set_grad(base.transpose(0, 1));
  s4.unscale({w});
  EXPECT_EQ(base.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(LossScaler, UnscaleRejectsASharedGradient) {
  LossScaler s(dynamic_config(4, 1000, 2));
  Tensor g = from_doubles({16, 32}, {2}, DType::f32);
  Tensor a = zeros({2}), b = zeros({2});
  a.set_grad(g);
  b.set_grad(g);
  expect_error([&] { s.unscale({a, b}); }, {"params[0]", "params[1]", "share one gradient"});
  expect_error([&] { s.unscale({a, zeros({1}), a}); }, {"params[0]", "params[2]"});
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{16, 32})) << "nothing divided";
}

// ---------------------------------------------------------------- state

TEST(LossScaler, StateTextIsExact) {
  // 2^0 with min 0.1: four overflows reach 0.1 (0.5, 0.25, 0.125, then max(0.0625, 0.1)),
  // two clean steps double it to 0.2.
  LossScaler s(dynamic_config(0, 2, 1, false, 0.1));
  for (bool overflow : {O, O, O, O}) s.update(overflow);
  EXPECT_EQ(s.state().at("cur_scale"), "0.10000000000000001");
  s.update(C);
  s.update(C);
  EXPECT_EQ(s.scale(), 0.2);
  EXPECT_EQ(s.state(), (std::map<std::string, std::string>{{"cur_scale", "0.20000000000000001"},
                                                          {"cur_iter", "6"},
                                                          {"last_overflow_iter", "3"},
                                                          {"cur_hysteresis", "1"}}));
}

// Save mid-sequence (inside a hysteresis, at a scale that is not a power of two), load into a
// fresh scaler, and both go on identically.
TEST(LossScaler, StateRoundTripContinuesIdentically) {
  const LossScalerConfig cfg = dynamic_config(0, 2, 2, false, 0.1);
  const std::vector<bool> first = {O, O, O, O, O, C, C, O};
  const std::vector<bool> rest = {C, C, C, O, C, C, C, C, C, O, O, C, C};
  LossScaler a(cfg);
  for (bool o : first) a.update(o);
  const auto saved = a.state();
  EXPECT_EQ(saved, (std::map<std::string, std::string>{{"cur_scale", "0.20000000000000001"},
                                                      {"cur_iter", "8"},
                                                      {"last_overflow_iter", "7"},
                                                      {"cur_hysteresis", "1"}}));
  LossScaler b(cfg);
  b.load_state(saved);
  EXPECT_EQ(b.state(), saved);
  EXPECT_EQ(b.scale(), a.scale());
  EXPECT_EQ(b.iteration(), 8);
  for (size_t i = 0; i < rest.size(); ++i) {
    a.update(rest[i]);
    b.update(rest[i]);
    EXPECT_EQ(b.state(), a.state()) << "step " << first.size() + i + 1;
  }
  EXPECT_EQ(b.scale(), 1.6);   // 0.1 · 2^4, worked out by hand from the rule
  EXPECT_EQ(b.iteration(), 21);

  // A static scaler round-trips too.
  LossScalerConfig st;
  st.loss_scale = 0.1;
  LossScaler c(st), d(st);
  c.update(O);
  c.update(C);
  d.load_state(c.state());
  EXPECT_EQ(d.state(), c.state());
  EXPECT_EQ(d.scale(), 0.1);
}

TEST(LossScaler, LoadStateErrorsNameTheKey) {
  LossScaler src(dynamic_config(4, 3, 2));
  src.update(O);
  src.update(C);
  const auto good = src.state();   // scale 16, iter 2, last 0, hysteresis 1
  LossScaler s(dynamic_config(4, 3, 2));
  const auto fresh = s.state();
  auto with = [&](const std::string& key, const std::string& value) {
    auto m = good;
    m[key] = value;
    return m;
  };

  for (const char* key : {"cur_scale", "cur_iter", "last_overflow_iter", "cur_hysteresis"}) {
    auto m = good;
    m.erase(key);
    expect_error([&] { s.load_state(m); }, {"missing key '" + std::string(key) + "'"});
  }
  expect_error([&] { s.load_state(with("loss_scale", "16")); }, {"unexpected key 'loss_scale'"});
  expect_error([&] { s.load_state(with("cur_scale", "big")); }, {"'cur_scale'", "'big'"});
  expect_error([&] { s.load_state(with("cur_iter", "2.5")); }, {"'cur_iter'", "'2.5'", "integer"});
  expect_error([&] { s.load_state(with("cur_hysteresis", "")); }, {"'cur_hysteresis'"});
  expect_error([&] { s.load_state(with("cur_scale", "nan")); }, {"'cur_scale'", "finite"});
  expect_error([&] { s.load_state(with("cur_scale", "inf")); }, {"'cur_scale'", "finite"});
  expect_error([&] { s.load_state(with("cur_scale", "0")); }, {"'cur_scale'", "> 0"});
  expect_error([&] { s.load_state(with("cur_scale", "0.5")); }, {"'cur_scale'", "min_loss_scale 1"});
  expect_error([&] { s.load_state(with("cur_iter", "-1")); }, {"'cur_iter'", "-1"});
  expect_error([&] { s.load_state(with("last_overflow_iter", "2")); },
               {"'last_overflow_iter'", "below cur_iter 2"});
  expect_error([&] { s.load_state(with("last_overflow_iter", "-2")); }, {"'last_overflow_iter'"});
  expect_error([&] { s.load_state(with("cur_hysteresis", "0")); }, {"'cur_hysteresis'", "[1, hysteresis = 2]"});
  expect_error([&] { s.load_state(with("cur_hysteresis", "3")); }, {"'cur_hysteresis'", "3"});

  LossScalerConfig st;
  st.loss_scale = 8;
  LossScaler fixed(st);
  expect_error([&] { fixed.load_state(good); }, {"'cur_scale'", "16", "static loss_scale 8"});

  // Every failed load left the scaler as it was; the good state loads.
  EXPECT_EQ(s.state(), fresh);
  s.load_state(good);
  EXPECT_EQ(s.state(), good);
}

// ---------------------------------------------------------------- config

TEST(LossScaler, ConfigErrorsNameTheFieldAndValue) {
  auto bad = [](auto edit, const std::vector<std::string>& parts) {
    LossScalerConfig c;
    edit(c);
    expect_error([&] { LossScaler s(c); }, parts);
  };
  bad([](LossScalerConfig& c) { c.loss_scale = -1; }, {"loss_scale", "-1"});
  bad([](LossScalerConfig& c) { c.loss_scale = kNaN; }, {"loss_scale", "nan"});
  bad([](LossScalerConfig& c) { c.loss_scale = kInf; }, {"loss_scale", "inf"});
  bad([](LossScalerConfig& c) { c.loss_scale_window = 0; }, {"loss_scale_window", "0"});
  bad([](LossScalerConfig& c) { c.loss_scale_window = -5; }, {"loss_scale_window", "-5"});
  bad([](LossScalerConfig& c) { c.hysteresis = 0; }, {"hysteresis", "0"});
  bad([](LossScalerConfig& c) { c.min_loss_scale = 0; }, {"min_loss_scale", "0"});
  bad([](LossScalerConfig& c) { c.min_loss_scale = -2; }, {"min_loss_scale", "-2"});
  bad([](LossScalerConfig& c) { c.min_loss_scale = kInf; }, {"min_loss_scale", "inf"});
  bad([](LossScalerConfig& c) { c.initial_scale_power = 1024; }, {"initial_scale_power", "1024"});
  bad([](LossScalerConfig& c) { c.initial_scale_power = -1023; }, {"initial_scale_power", "-1023"});
  bad([](LossScalerConfig& c) { c.initial_scale_power = -1; },
      {"2^-1", "0.5", "below min_loss_scale 1", "initial_scale_power"});
  bad([](LossScalerConfig& c) { c.initial_scale_power = 2; c.min_loss_scale = 5; },
      {"2^2", "below min_loss_scale 5"});

  LossScalerConfig ok;   // edges that are valid
  ok.initial_scale_power = 0;
  EXPECT_EQ(LossScaler(ok).scale(), 1.0);
  ok.initial_scale_power = -3;
  ok.min_loss_scale = 0.125;
  EXPECT_EQ(LossScaler(ok).scale(), 0.125);
  ok.initial_scale_power = 1023;
  EXPECT_EQ(LossScaler(ok).scale(), std::ldexp(1.0, 1023));
}

}  // namespace
