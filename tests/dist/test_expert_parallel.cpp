// test_expert_parallel.cpp — the MoE layer with experts spread over ranks (ep_size 2 and 4)
// against the same layer with every expert on one process (ep_size 1), in f64: outputs, input
// gradients, router gradients and expert gradients agree (rtol 1e-4; in practice ~1e-15), in
// capacity (with drops) and dropless modes, top-1 and top-2, plain and PR-MoE, with a
// different number of tokens on every rank.
//
// The reference on each rank is an ep_size=1 layer holding all E experts with the same weights,
// run on that rank's tokens, expert by expert (MoEConfig::grouped_gemm = false), so the
// expert-parallel layer's grouped experts (moe/grouped_experts.h) are checked against it too. An expert-parallel expert sees the tokens of its whole
// expert-parallel group, so its gradient is compared with the reference gradients summed over
// that group; everything else (output, input and router gradients) is per rank.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "dist/groups.h"
#include "dist/world.h"
#include "moe/moe_layer.h"
#include "nn/mlp.h"
#include "tensor/ops.h"

namespace mox::moe {
namespace {

using dist::world;

// Deterministic values in [-0.5, 0.5]: element i of stream `seed`.
Tensor filled(const Shape& shape, double seed) {
  std::vector<double> v(size_t(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5 * std::sin(seed * 12.9898 + double(i) * 78.233 + 0.5);
  return from_vector(v, shape);
}

constexpr int64_t kHidden = 6, kExperts = 4;

std::shared_ptr<nn::Module> make_expert() { return std::make_shared<nn::Linear>(kHidden, kHidden); }

struct Case {
  int64_t k;
  bool dropless;
  bool residual;
};

std::string name_of(const Case& c, int p) {
  return str("top-", c.k, c.dropless ? " dropless" : " capacity", c.residual ? " PR-MoE" : "", " ep_size=", p);
}

MoEConfig config(const Case& c, int64_t ep_size) {
  MoEConfig m;
  m.gate.num_experts = kExperts;
  m.gate.k = c.k;
  m.gate.capacity_factor = 1.0;   // with uneven routing, capacity mode drops tokens
  m.gate.min_capacity = 1;
  m.gate.drop_tokens = !c.dropless;
  m.gate.use_rts = false;         // no random draws: the two layers route identically
  m.gate.top2_2nd_expert_sampling = false;
  m.ep_size = ep_size;
  m.use_residual = c.residual;
  return m;
}

// Reference weights: parameter j of name n gets stream hash(n); expert e's copies differ.
void set_reference_weights(MoE& ref) {
  double seed = 1;
  for (auto& [name, p] : ref.named_parameters()) {
    raw::copy_(p, filled(p.shape(), seed));
    seed += 1;
  }
}

// The ep layer takes the reference's weights, local expert i ← global expert first + i.
void copy_weights(const MoE& ref, MoE& ep) {
  std::map<std::string, Tensor> src;
  for (auto& [name, t] : ref.state_dict()) src[name] = t;
  nn::NamedTensors state;
  for (auto& [name, t] : ep.state_dict()) {
    std::string from = name;
    const std::string prefix = "experts.";
    if (name.compare(0, prefix.size(), prefix) == 0) {
      const size_t dot = name.find('.', prefix.size());
      const int64_t local = std::stoll(name.substr(prefix.size(), dot - prefix.size()));
      from = str(prefix, ep.global_expert_id(local), name.substr(dot));
    }
    state.emplace_back(name, src.at(from));
  }
  ep.load_state_dict(state);
}

double max_rel_err(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i)
    worst = std::max(worst, std::abs(x[i] - y[i]) / (1e-8 + std::abs(y[i])));
  return worst;
}

// Runs one case at expert-parallel size p on this rank's uneven share of tokens.
void check_case(const Case& c, int p) {
  SCOPED_TRACE(name_of(c, p));
  const int r = world().rank();
  MoEConfig per_expert = config(c, 1);
  per_expert.grouped_gemm = false;
  MoE ref(kHidden, make_expert, per_expert);
  MoE ep(kHidden, make_expert, config(c, p));
  ref.to(DType::f64);
  ep.to(DType::f64);
  set_reference_weights(ref);
  copy_weights(ref, ep);

  const int64_t S = 5 + 3 * r;   // uneven: 5, 8, 11, 14 tokens
  Tensor x0 = filled({S, kHidden}, 100 + r);
  Tensor w = filled({S, kHidden}, 200 + r);   // loss = Σ out·w + l_aux: gradients everywhere
  auto run = [&](MoE& m) {
    Tensor x = x0.clone().set_requires_grad(true);
    MoEOutput o = m.forward_moe(x);
    add(sum(mul(o.output, w)), o.l_aux).backward();
    return std::make_pair(o, x.grad());
  };
  auto [ro, rgx] = run(ref);
  auto [eo, egx] = run(ep);
  EXPECT_LT(max_rel_err(eo.output, ro.output), 1e-4);
  EXPECT_LT(max_rel_err(egx, rgx), 1e-4);
  EXPECT_LT(max_rel_err(ep.gate->wg->weight.grad(), ref.gate->wg->weight.grad()), 1e-4);
  if (c.residual) {
    EXPECT_LT(max_rel_err(ep.coefficient->weight.grad(), ref.coefficient->weight.grad()), 1e-4);
    EXPECT_LT(max_rel_err(ep.mlp->parameters()[0].grad(), ref.mlp->parameters()[0].grad()), 1e-4);
  }
  // Expert grads: the reference's, summed over this rank's expert-parallel group. Every rank
  // reduces every expert's reference gradients in global order (collectives pair up by order).
  std::shared_ptr<dist::ProcessGroup> group = dist::expert_groups(p).expert_parallel;
  for (int64_t e = 0; e < kExperts; ++e) {
    std::vector<Tensor> ref_params = (*ref.experts)[e].parameters();
    const int64_t local = e - ep.global_expert_id(0);
    for (size_t j = 0; j < ref_params.size(); ++j) {
      Tensor want = ref_params[j].grad().defined() ? raw::clone(ref_params[j].grad()) : zeros_like(ref_params[j]);
      group->all_reduce(want);
      if (local < 0 || local >= ep.experts->size()) continue;
      Tensor got = (*ep.experts)[local].parameters()[j].grad();
      if (!got.defined()) got = zeros_like(want);
      EXPECT_LT(max_rel_err(got, want), 1e-4) << "expert " << e << " parameter " << j;
    }
  }
}

TEST(ExpertParallel, MatchesOneProcessForEveryModeAndEpSize) {
  const int W = world().size();
  for (int p : {1, 2, 4}) {
    if (W % p != 0) continue;
    for (Case c : {Case{1, false, false}, Case{2, false, false}, Case{1, true, false}, Case{2, true, false},
                   Case{1, false, true}, Case{2, true, true}})
      check_case(c, p);
  }
}

// Every token of every rank goes to global expert 0: the other ranks' experts receive no rows,
// yet those ranks still take part in both all_to_alls of forward and backward (no hang), and
// the last rank, with a single token, gets its gradient back.
TEST(ExpertParallel, RanksWhoseExpertsGetNoTokens) {
  const int W = world().size();
  if (W < 2) GTEST_SKIP() << "needs at least 2 ranks";
  MoEConfig m = config(Case{1, true, false}, W);
  MoE ep(kHidden, make_expert, m);
  ep.to(DType::f64);
  // Router sends everything to global expert 0 (rank 0 owns it).
  Tensor wg = zeros({kExperts, kHidden}, DType::f64);
  raw::copy_(wg.narrow(0, 0, 1), full({1, kHidden}, 1.0, DType::f64));
  raw::copy_(ep.gate->wg->weight, wg);
  const int64_t S = world().rank() == W - 1 ? 1 : 4;
  Tensor x = full({S, kHidden}, 0.25, DType::f64).set_requires_grad(true);
  MoEOutput o = ep.forward_moe(x);
  sum(o.output).backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().shape(), Shape({S, kHidden}));
  for (int64_t e = 0; e < kExperts; ++e) EXPECT_EQ(o.routing.kept_per_expert[size_t(e)], e == 0 ? S : 0);
  // Expert 0 (on rank 0) is a Linear: d Σ out / d x = column sums of its weight times the
  // combine weight (softmax probability of expert 0), the same for every token.
  const bool owner = ep.global_expert_id(0) == 0;
  EXPECT_EQ((*ep.experts)[0].parameters()[0].grad().defined(), owner);
}

}  // namespace
}  // namespace mox::moe
