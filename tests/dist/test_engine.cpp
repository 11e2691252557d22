// test_engine.cpp — dist::Engine (DeepSpeed-style engine) at the world size mpirun gave:
// data parallel + gradient accumulation + clipping + WarmupLR against one process on the
// global batch; ZeRO-1 against stage 0; expert parallel against ep_size 1; fp16 loss scaling
// (overflow skips the step and halves the scale, on every rank when one rank's expert gradient
// overflows, so every rank counts the same steps); bf16 with fp32 masters; exact resume from a
// checkpoint; an uncommitted save ignored. The cross-layout resume (saved at world 4 / ep 2,
// loaded at world 2 / ep 1 and world 4 / ep 4) needs three jobs: tests/test_engine_resume.cpp
// in the main suite drives EngineCheckpointPhase below through scripts/moxrun.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "dist/engine.h"
#include "dist/world.h"
#include "moe/moe_layer.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

namespace mox::dist {
namespace {

constexpr int64_t kIn = 6, kHidden = 8, kOut = 3, kExperts = 4, kGlobalBatch = 16;

// in → GELU → MoE (4 Linear experts, top-2, dropless, no noise) → out. Dropless so that
// splitting the batch over ranks cannot change routing (capacity is per rank).
class TinyMoeNet : public nn::Module {
 public:
  explicit TinyMoeNet(int64_t ep_size) {
    in = register_module("in", std::make_shared<nn::Linear>(kIn, kHidden));
    out = std::make_shared<nn::Linear>(kHidden, kOut);   // drawn before the experts: same in every layout
    moe::MoEConfig c;
    c.gate.num_experts = kExperts;
    c.gate.k = 2;
    c.gate.drop_tokens = false;
    c.gate.use_rts = false;
    c.gate.top2_2nd_expert_sampling = false;
    c.gate.min_capacity = 1;
    c.ep_size = ep_size;
    layer = register_module("moe", std::make_shared<moe::MoE>(
                                       kHidden, [] { return std::make_shared<nn::Linear>(kHidden, kHidden); }, c));
    register_module("out", out);
  }
  Tensor forward(const Tensor& x) override { return out->forward(layer->forward(gelu(in->forward(x)))); }
  std::shared_ptr<nn::Linear> in, out;
  std::shared_ptr<moe::MoE> layer;
};

std::shared_ptr<TinyMoeNet> make_net(int64_t ep_size) {
  manual_seed(7);   // same weights on every rank and in every layout
  return std::make_shared<TinyMoeNet>(ep_size);
}

// Global batch `step`: inputs (16, 6) and targets (16, 3), deterministic.
std::pair<Tensor, Tensor> global_batch(int64_t step) {
  std::vector<float> x(kGlobalBatch * kIn), y(kGlobalBatch * kOut);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.37 * double(i) + 1.3 * double(step)));
  for (size_t i = 0; i < y.size(); ++i) y[i] = float(std::cos(0.11 * double(i) - 0.7 * double(step)));
  return {from_vector(x, {kGlobalBatch, kIn}), from_vector(y, {kGlobalBatch, kOut})};
}

DsConfig config(const std::string& extra = "") {
  return parse_ds_config(R"({"train_batch_size": 16, "gradient_accumulation_steps": 2, "steps_per_print": 1000,
    "gradient_clipping": 0.05,
    "optimizer": {"type": "AdamW", "params": {"lr": 0.01, "betas": [0.8, 0.99], "weight_decay": 0.01}},
    "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0.001, "warmup_max_lr": 0.01,
                  "warmup_num_steps": 3, "warmup_type": "linear"}})" + extra + "}",
                         "test config");
}

// One optimizer step of the engine: accum micro-batches of this rank's rows of the global batch.
void engine_step(Engine& e, int64_t step) {
  auto [x, y] = global_batch(step);
  const int64_t W = world().size(), micro = e.batch_sizes().micro;
  for (int64_t j = 0; j < e.batch_sizes().accum; ++j) {
    const int64_t start = (j * W + world().rank()) * micro;   // micro-batch j of this rank
    e.backward(nn::mse_loss(e.forward(x.narrow(0, start, micro)).to(DType::f32), y.narrow(0, start, micro)));
    e.step();
  }
}

// The model's parameters by global name (experts renamed to their global ids).
std::map<std::string, Tensor> by_global_name(TinyMoeNet& net) {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : net.named_parameters()) {
    std::string n = name;
    const std::string prefix = "moe.experts.";
    if (n.compare(0, prefix.size(), prefix) == 0) {
      const size_t dot = n.find('.', prefix.size());
      const int64_t local = std::stoll(n.substr(prefix.size(), dot - prefix.size()));
      n = prefix + std::to_string(net.layer->global_expert_id(local)) + n.substr(dot);
    }
    out[n] = raw::to_dtype(t, DType::f32);
  }
  return out;
}

// max_i |a - b| / (0.1 + |b|): below r means within rtol r and atol r/10 (f32 sums in another
// order differ by ~1e-7 relative; parameters near zero are compared absolutely).
double max_rel_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]) / (0.1 + std::abs(y[i])));
  return worst;
}

TEST(Engine, AccumulationDataParallelClippingAndWarmupMatchOneProcess) {
  auto net = make_net(1);
  Engine engine(net, config());
  EXPECT_EQ(engine.batch_sizes().micro, kGlobalBatch / 2 / world().size());
  // Reference: one process, the whole global batch, the same optimizer, clipping and schedule.
  auto ref = make_net(1);
  std::vector<optim::ParamGroup> groups{optim::make_group("default", ref->named_parameters())};
  groups[0].lr = 0.01;
  groups[0].beta1 = 0.8;
  groups[0].beta2 = 0.99;
  groups[0].weight_decay = 0.01;
  optim::AdamW opt(groups);
  optim::WarmupLr schedule({0.001, 0.01, 3, "linear"});
  for (int64_t step = 0; step < 5; ++step) {
    engine_step(engine, step);
    auto [x, y] = global_batch(step);
    opt.zero_grad();
    nn::mse_loss(ref->forward(x), y).backward();
    optim::clip_grad_norm(ref->parameters(), 0.05);
    schedule.apply(opt, step);
    opt.step();
  }
  EXPECT_EQ(engine.global_steps(), 5);
  EXPECT_EQ(engine.micro_steps(), 10);
  EXPECT_DOUBLE_EQ(engine.lr(), 0.01);
  auto got = by_global_name(*net), want = by_global_name(*ref);
  for (auto& [name, t] : want) EXPECT_LT(max_rel_diff(got.at(name), t), 1e-5) << name;
}

TEST(Engine, ZeroStage1MatchesStage0AndShardsTheOptimizerState) {
  auto a = make_net(1), b = make_net(1);
  Engine stage0(a, config());
  Engine stage1(b, config(R"(, "zero_optimization": {"stage": 1})"));
  for (int64_t step = 0; step < 4; ++step) {
    engine_step(stage0, step);
    engine_step(stage1, step);
  }
  auto x = by_global_name(*a), y = by_global_name(*b);
  for (auto& [name, t] : x) EXPECT_LT(max_rel_diff(y.at(name), t), 1e-6) << name;
  // Each parameter is updated by exactly one rank.
  const std::vector<std::string> mine = stage1.owned_parameters();
  Tensor count = zeros({int64_t(x.size())});
  int64_t i = 0;
  for (auto& [name, t] : x) {
    if (std::find(mine.begin(), mine.end(), name) != mine.end()) raw::fill_(count.narrow(0, i, 1), 1.0);
    ++i;
  }
  world().all_reduce(count);
  for (float c : count.to_vector<float>()) EXPECT_EQ(c, 1.0f);
  if (world().size() > 1) {
    EXPECT_LT(mine.size(), x.size());
  }
}

TEST(Engine, ExpertParallelMatchesEpSizeOne) {
  const int W = world().size();
  auto ref = make_net(1), ep = make_net(W);
  Engine a(ref, config()), b(ep, config());
  for (int64_t step = 0; step < 4; ++step) {
    engine_step(a, step);
    engine_step(b, step);
  }
  auto want = by_global_name(*ref), got = by_global_name(*ep);
  for (auto& [name, t] : got) EXPECT_LT(max_rel_diff(t, want.at(name)), 1e-5) << name;
}

TEST(Engine, Fp16OverflowSkipsTheStepAndHalvesTheScale) {
  auto net = make_net(1);
  Engine e(net, config(R"(, "fp16": {"enabled": true, "initial_scale_power": 8, "hysteresis": 1})"));
  EXPECT_EQ(net->in->weight.dtype(), DType::f16);
  EXPECT_EQ(net->layer->gate->wg->weight.dtype(), DType::f32);   // the router stays fp32
  EXPECT_EQ(e.loss_scale(), 256.0);
  const Tensor before = raw::clone(net->out->weight);
  auto [x, y] = global_batch(0);
  const int64_t micro = e.batch_sizes().micro;
  for (int j = 0; j < 2; ++j) {   // a loss whose scaled gradient overflows f16
    e.backward(mul(nn::mse_loss(e.forward(x.narrow(0, 0, micro)).to(DType::f32), y.narrow(0, 0, micro)), 1e6));
    EXPECT_FALSE(e.step() && j == 1);
  }
  EXPECT_EQ(e.skipped_steps(), 1);
  EXPECT_EQ(e.loss_scale(), 128.0);
  EXPECT_EQ(max_rel_diff(net->out->weight, before), 0.0);
  engine_step(e, 1);   // an ordinary step goes through
  EXPECT_EQ(e.skipped_steps(), 1);
  EXPECT_GT(max_rel_diff(net->out->weight, before), 0.0);
}

TEST(Engine, Fp16OverflowOnOneRankIsSkippedOnEveryRank) {
  // ep_size W: a rank's experts are its own (their gradients are not reduced with other ranks'),
  // so an inf in one of rank 0's shows on rank 0 only, until the engine reduces the flag.
  const int W = world().size();
  auto net = make_net(W);
  Engine e(net, config(R"(, "fp16": {"enabled": true, "initial_scale_power": 8, "hysteresis": 1})"));
  const Tensor before = raw::clone(net->out->weight);
  auto [x, y] = global_batch(0);
  const int64_t micro = e.batch_sizes().micro;
  for (int64_t j = 0; j < e.batch_sizes().accum; ++j) {
    const int64_t start = (j * W + world().rank()) * micro;
    e.backward(nn::mse_loss(e.forward(x.narrow(0, start, micro)).to(DType::f32), y.narrow(0, start, micro)));
    if (j + 1 == e.batch_sizes().accum && world().rank() == 0)   // an expert that got tokens
      for (const auto& [name, p] : net->layer->experts->named_parameters())
        if (p.grad().defined()) {
          raw::fill_(p.grad(), INFINITY);
          break;
        }
    e.step();
  }
  EXPECT_EQ(max_rel_diff(net->out->weight, before), 0.0);   // skipped on this rank too
  engine_step(e, 1);
  // (global steps, skipped steps, loss scale) of every rank: what rank 0 prints is everyone's.
  const std::vector<double> all =
      world().all_gather(from_vector<double>({double(e.global_steps()), double(e.skipped_steps()), e.loss_scale()}, {1, 3}))
          .to_vector<double>();
  for (int r = 0; r < W; ++r) {
    EXPECT_EQ(all[size_t(3 * r)], 2.0) << "rank " << r;
    EXPECT_EQ(all[size_t(3 * r + 1)], 1.0) << "rank " << r;
    EXPECT_EQ(all[size_t(3 * r + 2)], 128.0) << "rank " << r;
  }
}

TEST(Engine, Bf16TrainsWithFp32Masters) {
  auto net = make_net(1);
  Engine e(net, config(R"(, "bf16": {"enabled": true})"));
  EXPECT_EQ(net->in->weight.dtype(), DType::bf16);
  auto loss_at = [&](int64_t step) {
    auto [x, y] = global_batch(step);
    autograd::NoGradGuard g;
    Tensor l = nn::mse_loss(e.forward(x).to(DType::f32), y);
    return l.item<double>();
  };
  const double first = loss_at(0);
  for (int i = 0; i < 15; ++i) engine_step(e, 0);
  EXPECT_LT(loss_at(0), 0.8 * first);
}

TEST(EngineCheckpoint, ResumeIsBitwiseExact) {
  mox::testing::TempDir dir("mox-engine-ckpt");
  std::string path = dir.path("ckpt");
  // Every rank uses rank 0's directory.
  std::vector<int64_t> chars(256, 0);
  for (size_t i = 0; i < path.size() && i < 255; ++i) chars[i] = path[i];
  Tensor t = from_vector(chars, {256});
  world().broadcast(t, 0);
  path.clear();
  for (int64_t c : t.to_vector<int64_t>())
    if (c) path += char(c);

  auto a = make_net(world().size()), b = make_net(world().size());
  Engine first(a, config(R"(, "fp16": {"enabled": true, "initial_scale_power": 6})"));
  for (int64_t s = 0; s < 2; ++s) engine_step(first, s);
  first.save(path, {{"note", "two steps"}});
  for (int64_t s = 2; s < 4; ++s) engine_step(first, s);

  Engine second(b, config(R"(, "fp16": {"enabled": true, "initial_scale_power": 6})"));
  std::map<std::string, std::string> client = second.load(path);
  EXPECT_EQ(client["note"], "two steps");
  EXPECT_EQ(second.global_steps(), 2);
  for (int64_t s = 2; s < 4; ++s) engine_step(second, s);
  auto x = by_global_name(*a), y = by_global_name(*b);
  for (auto& [name, t] : x) EXPECT_EQ(max_rel_diff(y.at(name), t), 0.0) << name;
  EXPECT_EQ(first.loss_scale(), second.loss_scale());

  // A save killed before its commit marker is ignored; a pointer to one is refused.
  world().barrier();
  if (world().rank() == 0) {
    std::filesystem::create_directories(path + "/step9.partial");
    std::ofstream(path + "/step9.partial/rank0.safetensors") << "torn";
  }
  world().barrier();
  auto c = make_net(world().size());
  Engine third(c, config(R"(, "fp16": {"enabled": true, "initial_scale_power": 6})"));
  third.load(path);
  EXPECT_EQ(third.global_steps(), 2);
  world().barrier();
  if (world().rank() == 0) {
    std::filesystem::create_directories(path + "/step9");
    std::ofstream(path + "/latest") << "step9\n";
  }
  world().barrier();
  mox::testing::expect_error([&] { third.load(path); }, {"no COMMIT marker"});
  world().barrier();   // rank 0's TempDir goes when every rank is done with it
}

TEST(EngineConfig, BatchIdentityIsCheckedAgainstTheWorld) {
  const int64_t W = world().size();
  DsConfig c = parse_ds_config(str(R"({"train_batch_size": )", 8 * W + 1, R"(, "train_micro_batch_size_per_gpu": 2,
      "optimizer": {"type": "SGD"}})"), "cfg");
  mox::testing::expect_error([&] { Engine e(make_net(1), c); },
                             {"train_batch_size", "train_micro_batch_size_per_gpu 2", str("data-parallel size ", W)});
}

// Driven by tests/test_engine_resume.cpp (main suite) through scripts/moxrun: the phase "save"
// trains 3 steps at ep_size MOX_ENGINE_CKPT_EP and saves, then records the global loss on the
// next batch, takes one more step and records the loss after it; "load" restores the
// checkpoint under the current world size and ep_size and checks both losses (rtol 1e-5).
TEST(EngineCheckpointPhase, SaveOrLoadAcrossLayouts) {
  const char* phase = std::getenv("MOX_ENGINE_CKPT_PHASE");
  const char* dir = std::getenv("MOX_ENGINE_CKPT_DIR");
  const char* ep = std::getenv("MOX_ENGINE_CKPT_EP");
  if (!phase || !dir || !ep) GTEST_SKIP() << "run by the main suite's EngineResume test (needs MOX_ENGINE_CKPT_*)";
  auto net = make_net(std::atoi(ep));
  const DsConfig cfg = parse_ds_config(R"({"train_batch_size": 16, "steps_per_print": 1000, "gradient_clipping": 1.0,
      "optimizer": {"type": "AdamW", "params": {"lr": 0.01}}, "zero_optimization": {"stage": 1}})", "phase config");
  Engine e(net, cfg);
  auto global_loss = [&](int64_t step) {
    auto [x, y] = global_batch(step);
    const int64_t micro = e.batch_sizes().micro;
    autograd::NoGradGuard g;
    Tensor l = from_vector<double>(
        {nn::mse_loss(e.forward(x.narrow(0, world().rank() * micro, micro)), y.narrow(0, world().rank() * micro, micro))
             .item<double>()},
        {1});
    world().all_reduce(l, ReduceOp::avg);
    return l.item<double>();
  };
  const std::string expected = std::string(dir) + "/expected_losses.txt";
  if (std::string(phase) == "save") {
    for (int64_t s = 0; s < 3; ++s) engine_step(e, s);
    e.save(std::string(dir) + "/ckpt");
    const double l3 = global_loss(3);
    engine_step(e, 3);
    const double l4 = global_loss(4);
    if (world().rank() == 0) {
      std::ofstream out(expected);
      out.precision(17);
      out << l3 << " " << l4 << "\n";
    }
    if (world().rank() == 0)
      std::printf("saved at world %d ep %s: next-step losses %.9g %.9g\n", world().size(), ep, l3, l4);
  } else {
    e.load(std::string(dir) + "/ckpt");
    double want3 = 0, want4 = 0;
    std::ifstream(expected) >> want3 >> want4;
    ASSERT_GT(want3, 0) << "no " << expected;
    const double l3 = global_loss(3);
    engine_step(e, 3);
    const double l4 = global_loss(4);
    if (world().rank() == 0)
      std::printf("loaded at world %d ep %s: next-step losses %.9g %.9g (saved run: %.9g %.9g)\n", world().size(), ep,
                  l3, l4, want3, want4);
    EXPECT_NEAR(l3, want3, 1e-5 * want3);
    EXPECT_NEAR(l4, want4, 1e-5 * want4);
  }
}

}  // namespace
}  // namespace mox::dist
