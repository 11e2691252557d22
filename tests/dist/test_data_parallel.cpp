// test_data_parallel.cpp — GradientReducer at the world size mpirun gave (make test: 2 and 4):
// sharded training equals one process on the global batch (dense MLP and an MoE model, SGD with
// momentum and AdamW); expert gradients over expert-data-parallel groups divided by the world;
// undefined gradients as zeros; bucketing changes nothing; errors name the thing.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "dist/data_parallel.h"
#include "dist/groups.h"
#include "dist/world.h"
#include "moe/experts.h"
#include "moe/moe_layer.h"
#include "moe/param_groups.h"
#include "nn/basic.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"

namespace mox::dist {
namespace {

using mox::testing::expect_error;

constexpr int64_t kGlobalBatch = 16, kIn = 8, kHidden = 16, kOut = 4;

// ---------------------------------------------------------------- models

std::shared_ptr<nn::Module> make_mlp(uint64_t seed) {
  manual_seed(seed);
  return std::shared_ptr<nn::Module>(new nn::Sequential{std::make_shared<nn::Linear>(kIn, kHidden),
                                                        std::make_shared<nn::GELU>(),
                                                        std::make_shared<nn::Linear>(kHidden, kOut)});
}

// Linear → MoE (4 experts, top-2, ep_size 1) → Linear. Sharded routing must equal full-batch
// routing, so: dropless (drop_tokens = false: the capacity, which depends on the tokens per
// rank, never drops anything), no noisy gate policy and no second-expert sampling (no random
// draws that would depend on the token count). l_aux is left out of the loss: it is a
// non-linear function of a batch's routing fractions, so the mean of the shards' l_aux is not
// the global batch's (DeepSpeed computes it per rank too).
std::shared_ptr<nn::Module> make_moe_model(uint64_t seed) {
  manual_seed(seed);
  moe::MoEConfig cfg;
  cfg.gate.num_experts = 4;
  cfg.gate.k = 2;
  cfg.gate.drop_tokens = false;
  cfg.gate.noisy_gate_policy = moe::NoisyGatePolicy::none;
  cfg.gate.top2_2nd_expert_sampling = false;
  cfg.gate.use_rts = false;
  cfg.ep_size = 1;
  auto expert = [] {
    return std::shared_ptr<nn::Module>(
        new nn::Sequential{std::make_shared<nn::Linear>(kHidden, kHidden), std::make_shared<nn::GELU>()});
  };
  return std::shared_ptr<nn::Module>(new nn::Sequential{std::make_shared<nn::Linear>(kIn, kHidden),
                                                        std::make_shared<moe::MoE>(kHidden, expert, cfg),
                                                        std::make_shared<nn::Linear>(kHidden, kOut)});
}

enum class Opt { sgd_momentum, adamw };

// One "default" group (lr, momentum / weight decay), expert parameters split into their own
// group as a real MoE run does (moe/param_groups.h).
std::unique_ptr<optim::Optimizer> make_optimizer(const nn::Module& m, Opt kind) {
  optim::ParamGroup g = optim::make_group("default", m.named_parameters());
  if (kind == Opt::sgd_momentum) {
    g.lr = 0.05;
    g.momentum = 0.9;
    g.weight_decay = 1e-3;
  } else {
    g.lr = 1e-2;
    g.weight_decay = 1e-2;
  }
  std::vector<optim::ParamGroup> groups = moe::split_moe_param_groups({g}, m);
  if (kind == Opt::sgd_momentum) return std::make_unique<optim::Sgd>(std::move(groups));
  return std::make_unique<optim::AdamW>(std::move(groups));
}

// One training step on (x, y): mean-squared error of the batch (mean over its rows), backward,
// the reducer's average (when given), update.
void train_step(nn::Module& m, optim::Optimizer& opt, const Tensor& x, const Tensor& y, GradientReducer* reducer) {
  opt.zero_grad();
  Tensor loss = nn::mse_loss(m.forward(x), y);
  loss.backward();
  if (reducer) reducer->reduce();
  opt.step();
}

// Rows [r·n/W, (r+1)·n/W) of t: rank r's shard of the global batch.
Tensor shard(const Tensor& t, const ProcessGroup& w) {
  const int64_t n = t.size(0) / w.size();
  return raw::contiguous(raw::narrow(t, 0, w.rank() * n, n));
}

// Largest |a − b| / (atol + rtol·|b|) over every parameter (≤ 1 passes), naming the worst.
double worst_violation(const nn::Module& a, const nn::Module& b, double rtol, double atol, std::string& where) {
  const nn::NamedTensors pa = a.named_parameters(), pb = b.named_parameters();
  double worst = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    const std::vector<double> va = pa[i].second.to_vector<double>(), vb = pb[i].second.to_vector<double>();
    for (size_t j = 0; j < va.size(); ++j) {
      const double v = std::abs(va[j] - vb[j]) / (atol + rtol * std::abs(vb[j]));
      if (v > worst) {
        worst = v;
        where = str(pa[i].first, "[", j, "]: ", va[j], " vs ", vb[j]);
      }
    }
  }
  return worst;
}

// Number of parameter elements on this rank that differ from world rank 0's (bitwise).
int64_t differs_from_rank0(const nn::Module& m) {
  int64_t n = 0;
  for (const auto& [name, p] : m.named_parameters()) {
    Tensor mine = raw::clone(p), root = raw::clone(p);
    world().broadcast(root, 0);
    const std::vector<double> a = mine.to_vector<double>(), b = root.to_vector<double>();
    for (size_t j = 0; j < a.size(); ++j) n += a[j] != b[j];
  }
  return n;
}

// ---------------------------------------------------------------- equivalence

// W ranks on their shards of a global batch end with the parameters one process gets on the
// whole batch: with equal shards, the mean over ranks of the shards' mean losses is the global
// mean loss, so the averaged gradient is the global one. Every rank also trains the
// single-process reference itself. The distributed copy starts from other weights on ranks ≠ 0
// (another seed) and is made consistent by broadcast_parameters().
void check_matches_one_process(std::shared_ptr<nn::Module> (*make)(uint64_t), Opt kind, const char* label) {
  ProcessGroup& w = world();
  ASSERT_EQ(kGlobalBatch % w.size(), 0) << "the global batch must split evenly over " << w.size() << " ranks";
  SCOPED_TRACE(label);
  std::shared_ptr<nn::Module> reference = make(42);
  std::shared_ptr<nn::Module> replica = make(w.rank() == 0 ? 42 : 1000 + uint64_t(w.rank()));
  GradientReducer reducer(*replica);
  reducer.broadcast_parameters();
  std::string where;
  ASSERT_EQ(worst_violation(*replica, *reference, 0, 1e-30, where), 0.0) << "after broadcast: " << where;

  Generator gen(7);
  const Tensor x = raw::normal({kGlobalBatch, kIn}, 0, 1, DType::f32, Device::cpu(), &gen);    // (16, 8)
  const Tensor y = raw::normal({kGlobalBatch, kOut}, 0, 1, DType::f32, Device::cpu(), &gen);   // (16, 4)
  const Tensor xs = shard(x, w), ys = shard(y, w);                                             // (16/W, ·)
  std::unique_ptr<optim::Optimizer> opt_ref = make_optimizer(*reference, kind);
  std::unique_ptr<optim::Optimizer> opt_rep = make_optimizer(*replica, kind);
  for (int step = 0; step < 5; ++step) {
    train_step(*reference, *opt_ref, x, y, nullptr);
    train_step(*replica, *opt_rep, xs, ys, &reducer);
  }
  // f32 with rtol 1e-5 (atol 1e-6): the shard sums add the same terms in another order, which
  // is ulp-level noise; at 2 and 4 ranks the worst element uses about 5% of that tolerance.
  const double v = worst_violation(*replica, *reference, 1e-5, 1e-6, where);
  EXPECT_LE(v, 1.0) << "rank " << w.rank() << ", worst parameter " << where;
  EXPECT_EQ(differs_from_rank0(*replica), 0) << "the replicas must stay bitwise identical";
}

TEST(DataParallel, MlpShardsMatchOneProcessSgdMomentum) {
  check_matches_one_process(make_mlp, Opt::sgd_momentum, "Linear-GELU-Linear, SGD momentum");
}
TEST(DataParallel, MlpShardsMatchOneProcessAdamW) {
  check_matches_one_process(make_mlp, Opt::adamw, "Linear-GELU-Linear, AdamW");
}
TEST(DataParallel, MoEShardsMatchOneProcessSgdMomentum) {
  check_matches_one_process(make_moe_model, Opt::sgd_momentum, "Linear-MoE-Linear, SGD momentum");
}
TEST(DataParallel, MoEShardsMatchOneProcessAdamW) {
  check_matches_one_process(make_moe_model, Opt::adamw, "Linear-MoE-Linear, AdamW");
}

TEST(DataParallel, ReducerSplitsDenseAndExpertParameters) {
  std::shared_ptr<nn::Module> m = make_moe_model(1);
  GradientReducer reducer(*m);
  // Dense: 2 Linears (4 tensors) + the gate's router weight; experts: 4 × (weight, bias).
  EXPECT_EQ(reducer.num_dense_parameters(), 5);
  EXPECT_EQ(reducer.num_expert_parameters(), 8);
  EXPECT_EQ(reducer.expert_group_names(), std::vector<std::string>({"ep_size_1"}));
  EXPECT_EQ(reducer.num_buckets(), 2);   // one f32 bucket each for the world and ep_size_1
}

// ---------------------------------------------------------------- expert groups, undefined grads

// A dense Linear(3, 2) and, per group name, an Experts of two Linear(3, 2).
class ToyExperts : public nn::Module {
 public:
  explicit ToyExperts(const std::vector<std::string>& groups) {
    dense = register_module("dense", std::make_shared<nn::Linear>(3, 2));
    for (size_t i = 0; i < groups.size(); ++i)
      experts.push_back(register_module(
          str("experts", i), std::make_shared<moe::Experts>([] { return std::make_shared<nn::Linear>(3, 2); }, 2,
                                                             groups[i])));
  }
  std::shared_ptr<nn::Linear> dense;
  std::vector<std::shared_ptr<moe::Experts>> experts;
};

void set_grad(const Tensor& p, double value) { Tensor(p).set_grad(full(p.shape(), value, p.dtype())); }

// Expert gradients: summed over the expert-data-parallel group (ranks q ≡ r mod p) and divided
// by the world size W, DeepSpeed's scaling. Rank q contributes q + 1 everywhere; values exact.
TEST(DataParallel, ExpertGradientsSumOverTheirGroupDividedByTheWorld) {
  ProcessGroup& w = world();
  const int W = w.size(), r = w.rank();
  std::vector<int> sizes = {1, W};
  if (W == 4) sizes.push_back(2);
  std::vector<std::string> names;
  for (int p : sizes) names.push_back(str("ep_size_", p));
  ToyExperts model(names);
  GradientReducer reducer(model);
  EXPECT_EQ(reducer.num_expert_parameters(), int64_t(4 * sizes.size()));
  for (const auto& [name, p] : model.named_parameters()) set_grad(p, r + 1);
  reducer.reduce();
  EXPECT_EQ(model.dense->weight.grad().to_vector<double>(), std::vector<double>(6, (W + 1) / 2.0));
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int p = sizes[i];
    double sum = 0;
    for (int q = r % p; q < W; q += p) sum += q + 1;
    for (const auto& [name, t] : model.experts[i]->named_parameters())
      EXPECT_EQ(t.grad().to_vector<double>(), std::vector<double>(size_t(t.numel()), sum / W))
          << "ep_size " << p << " param " << name;
  }
  // broadcast_parameters: dense from world rank 0, experts from rank 0 of their expert-data-
  // parallel group, which is world rank r mod p.
  for (const auto& [name, p] : model.named_parameters()) raw::fill_(p, r);
  reducer.broadcast_parameters();
  EXPECT_EQ(model.dense->weight.to_vector<double>(), std::vector<double>(6, 0.0));
  for (size_t i = 0; i < sizes.size(); ++i)
    EXPECT_EQ(model.experts[i]->named_parameters()[0].second.to_vector<double>(),
              std::vector<double>(6, double(r % sizes[i])))
        << "ep_size " << sizes[i];
}

// A gradient undefined on some ranks counts as zeros there (every rank still joins every
// collective); a parameter with no gradient on any rank keeps an undefined grad.
TEST(DataParallel, UndefinedGradientCountsAsZeroAndNeverHangs) {
  ProcessGroup& w = world();
  const int W = w.size(), r = w.rank();
  ToyExperts model({"ep_size_1"});
  GradientReducer reducer(model);
  moe::Experts& e = *model.experts[0];
  const Tensor w0 = e[0].named_parameters()[0].second;   // expert 0 weight: a grad on rank 0 only
  const Tensor b0 = e[0].named_parameters()[1].second;   // expert 0 bias: a grad on every rank but 0
  set_grad(model.dense->weight, r + 1);                  // dense weight: everywhere; dense bias: nowhere
  if (r == 0) set_grad(w0, 4);
  if (r != 0) set_grad(b0, 2);
  // expert 1: no gradient anywhere (it got no tokens on any rank)
  reducer.reduce();
  EXPECT_EQ(model.dense->weight.grad().to_vector<double>(), std::vector<double>(6, (W + 1) / 2.0));
  EXPECT_FALSE(model.dense->bias.grad().defined()) << "no rank had a gradient: stays undefined";
  ASSERT_TRUE(w0.grad().defined()) << "rank 0 had one: defined on every rank";
  EXPECT_EQ(w0.grad().to_vector<double>(), std::vector<double>(6, 4.0 / W));
  if (W > 1) {
    ASSERT_TRUE(b0.grad().defined());
    EXPECT_EQ(b0.grad().to_vector<double>(), std::vector<double>(2, 2.0 * (W - 1) / W));
  } else {
    EXPECT_FALSE(b0.grad().defined());
  }
  for (const auto& [name, p] : e[1].named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

// ---------------------------------------------------------------- buckets

// Parameters of three dtypes; gradients (rank + 1)·k/8, exact in every dtype and every sum.
class MixedDtypes : public nn::Module {
 public:
  MixedDtypes() {
    const DType dtypes[] = {DType::f32, DType::f64, DType::bf16, DType::f32, DType::f64, DType::bf16, DType::f32};
    for (int64_t k = 0; k < 7; ++k) params.push_back(register_parameter(str("p", k), zeros({k + 1, 3}, dtypes[k])));
  }
  std::vector<Tensor> params;
};

std::vector<std::vector<double>> reduced_mixed(int64_t bucket_bytes, int64_t& buckets) {
  const int r = world().rank();
  MixedDtypes m;
  GradientReducer reducer(m, {bucket_bytes});
  buckets = reducer.num_buckets();
  for (size_t i = 0; i < m.params.size(); ++i) {
    std::vector<double> g(size_t(m.params[i].numel()));
    for (size_t j = 0; j < g.size(); ++j) g[j] = (r + 1) * double((i + j) % 8) / 8;
    Tensor(m.params[i]).set_grad(from_doubles(g, m.params[i].shape(), m.params[i].dtype()));
  }
  reducer.reduce();
  std::vector<std::vector<double>> out;
  for (const Tensor& p : m.params) out.push_back(p.grad().to_vector<double>());
  return out;
}

TEST(DataParallel, BucketSizeDoesNotChangeTheResult) {
  const int W = world().size();
  int64_t many = 0, one = 0, some = 0;
  const auto a = reduced_mixed(1, many);                  // one parameter per bucket
  const auto b = reduced_mixed(int64_t(1) << 40, one);    // one bucket per dtype
  // In between: 40 f32 or 20 f64 elements: f32 {p0, p3, p6}, f64 {p1} {p4}, bf16 {p2, p5}.
  const auto c = reduced_mixed(160, some);
  EXPECT_EQ(many, 7);
  EXPECT_EQ(one, 3);
  EXPECT_EQ(some, 4);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  for (size_t i = 0; i < a.size(); ++i)   // mean over ranks of (q + 1)·v = (W + 1)/2 · v
    for (size_t j = 0; j < a[i].size(); ++j)
      EXPECT_EQ(a[i][j], (W + 1) / 2.0 * double((i + j) % 8) / 8) << "p" << i << "[" << j << "]";
}

// ---------------------------------------------------------------- errors

TEST(DataParallel, ModelThatDiffersAcrossRanksIsNamed) {
  if (world().size() < 2) GTEST_SKIP() << "needs at least 2 ranks (run under mpirun -np 2 or 4)";
  const int r = world().rank();
  // Rank 0 has one more Linear: 6 parameter tensors there, 4 elsewhere.
  nn::Sequential deeper{std::make_shared<nn::Linear>(3, 3), std::make_shared<nn::Linear>(3, 3),
                        std::make_shared<nn::Linear>(3, 3)};
  nn::Sequential shallow{std::make_shared<nn::Linear>(3, 3), std::make_shared<nn::Linear>(3, 3)};
  expect_error([&] { GradientReducer bad(r == 0 ? static_cast<nn::Module&>(deeper) : shallow); },
               {"the model differs across", str("this rank (", r, ") has ", r == 0 ? 6 : 4, " parameter tensors"),
                "between 4 and 6 tensors", "24 and 36 elements"});
  // Same counts, other shapes: (2, 3) on rank 0, (3, 2) elsewhere.
  nn::Linear wide(3, 2, false), tall(2, 3, false);
  expect_error([&] { GradientReducer bad(r == 0 ? wide : tall); },
               {"every rank has 1 parameter tensors (6 elements)", "names, shapes, dtypes or expert groups differ"});
}

TEST(DataParallel, BadGradientsAreNamedOnEveryRank) {
  ProcessGroup& w = world();
  const int W = w.size(), r = w.rank();
  nn::Linear m(3, 2);
  GradientReducer reducer(m);
  // Everywhere: an integer gradient.
  Tensor(m.weight).set_grad(zeros({2, 3}, DType::i64));
  expect_error([&] { reducer.reduce(); }, {"gradient of 'weight'", "i64", "parameter's shape, dtype and device"});
  // On the last rank only: a wrongly shaped gradient. That rank names it; the others name that
  // rank; nobody waits for a collective that will not come.
  Tensor(m.weight).set_grad(zeros({2, 3}));
  if (r == W - 1) Tensor(m.bias).set_grad(zeros({3}));
  if (r == W - 1)
    expect_error([&] { reducer.reduce(); }, {"gradient of 'bias' is [3] f32"});
  else
    expect_error([&] { reducer.reduce(); }, {str("rank ", W - 1, " of the world has an invalid gradient")});
  // The ranks are still in step: a good reduce works.
  Tensor(m.bias).set_grad(full({2}, r + 1.0));
  reducer.reduce();
  EXPECT_EQ(m.bias.grad().to_vector<double>(), std::vector<double>(2, (W + 1) / 2.0));
  // The model changed under the reducer.
  m.to(DType::f64);
  expect_error([&] { reducer.reduce(); }, {"parameter 'weight' is now [2, 3] f64", "build a new GradientReducer"});
  expect_error([&] { GradientReducer bad(m, {0}); }, {"bucket_bytes=0"});
}

}  // namespace
}  // namespace mox::dist
