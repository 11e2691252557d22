// test_moe.cpp — the MoE gate, experts and layer (moe/).
//
// Gate: DeepSpeed's published dispatch decisions (tests/unit/moe/test_moe.py, TestTopkGate),
// DeepSpeed 0.19.8's own decisions on random logits (tests/data/moe/), hand-computed capacity,
// l_aux and z-loss, RTS reproducibility, dropless mode, noise only in training,
// configuration errors. Layer: the index-based layer against a dense einsum-style
// reference written here (S×E×C dispatch/combine tensors, DeepSpeed's cumsum locations) in
// output and gradients — bit for bit at k=1, 1e-6 relative otherwise — for k=1,2,3, with and
// without dropping and residual; DeepSpeed 0.19.8's own MoE layer's output and gradients
// (tests/data/moe/); a float64 gradcheck of the whole layer; expert parameters
// marked with their group. Everything is small: the file runs in well under a second.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <stdexcept>

#include "moe/moe_layer.h"
#include "moe/param_groups.h"
#include "moe/routing_stats.h"
#include "nn/basic.h"
#include "nn/container.h"
#include "nn/optim/sgd.h"
#include "tests/expect_error.h"
#include "tests/gradcheck.h"
#include "tests/repo_root.h"

using namespace mox;
using namespace mox::moe;
using mox::testing::error_of;

namespace {

using Triple = std::array<int64_t, 3>;   // (token, expert, slot)

// The kept assignments as (token, expert, slot), sorted by token then expert — the order of
// DeepSpeed's "sparse truth" lists.
std::vector<Triple> triples(const GateOutput& g) {
  std::vector<int64_t> t = g.token.to_vector<int64_t>(), e = g.expert.to_vector<int64_t>(),
                       c = g.slot.to_vector<int64_t>();
  std::vector<Triple> out;
  for (size_t i = 0; i < t.size(); ++i) out.push_back({t[i], e[i], c[i]});
  std::sort(out.begin(), out.end());
  return out;
}

GateConfig gate_config(int64_t E, int64_t k) {
  GateConfig c;
  c.num_experts = E;
  c.k = k;
  return c;
}

// ---- DeepSpeed's TestTopkGate (tests/unit/moe/test_moe.py): topkgating(logits, k, 1,
// min_capacity=1, drop_policy=...), the logits scaled by (rank + 1) for ranks 0 and 1.
const std::vector<float> kDsLogits4x4 = {0.11f, 0.2f, 0.1f, 0.3f, 0.3f, 0.4f, 0.11f, 0.1f,
                                         0.11f, 0.1f, 0.6f, 0.5f, 0.1f, 0.11f, 0.7f, 0.8f};
const std::vector<float> kDsLogits4x6 = {0.5858f, 0.4801f, 0.6269f, 0.5397f, 0.9722f, 0.7034f,
                                         0.5445f, 0.6332f, 0.4519f, 0.6308f, 0.0519f, 0.6450f,
                                         0.4874f, 0.8110f, 0.7467f, 0.8474f, 0.0277f, 0.3068f,
                                         0.8570f, 0.6714f, 0.5310f, 0.3274f, 0.4836f, 0.9892f};

// One of the files bench/reference/deepspeed_moe_cases.py wrote from DeepSpeed 0.19.8's own code.
nlohmann::json deepspeed_cases(const char* name) {
  const std::filesystem::path file = mox::testing::repo_root() / "tests/data/moe" / name;
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  return nlohmann::json::parse(in)["cases"];
}

GateOutput ds_route(const std::vector<float>& logits, int64_t E, int64_t k, DropPolicy policy, float scale) {
  GateConfig c = gate_config(E, k);
  c.min_capacity = 1;
  c.drop_policy = policy;
  TopKGate gate(8, c);
  std::vector<float> v = logits;
  for (float& x : v) x *= scale;
  return gate.route_logits(from_vector<float>(v, {int64_t(v.size()) / E, E}));
}

}  // namespace

// ============================================================================ gate: DeepSpeed

TEST(MoeGate, ReproducesDeepSpeedTop2Decisions) {
  // test_moe.py: probs_sec_sparse and position_sec_sparse for S=4, E=4, k=2, C=2.
  const std::vector<Triple> probs = {{0, 1, 0}, {1, 0, 0}, {1, 1, 1}, {2, 2, 0}, {2, 3, 0}, {3, 2, 1}, {3, 3, 1}};
  const std::vector<Triple> position = {{0, 1, 0}, {0, 3, 0}, {1, 0, 0}, {1, 1, 1}, {2, 2, 0}, {2, 3, 1}, {3, 2, 1}};
  for (float scale : {1.0f, 2.0f}) {
    GateOutput p = ds_route(kDsLogits4x4, 4, 2, DropPolicy::probs, scale);
    EXPECT_EQ(p.capacity, 2);
    EXPECT_EQ(triples(p), probs) << "scale " << scale;
    GateOutput q = ds_route(kDsLogits4x4, 4, 2, DropPolicy::position, scale);
    EXPECT_EQ(triples(q), position) << "scale " << scale;
    EXPECT_EQ(q.exp_counts, (std::vector<int64_t>{1, 2, 2, 3}));
    EXPECT_EQ(q.dropped, 1);
  }
  // Token 0 lost expert 3 under `probs`: its one surviving expert gets weight 1.
  GateOutput p = ds_route(kDsLogits4x4, 4, 2, DropPolicy::probs, 1.0f);
  std::vector<int64_t> tok = p.token.to_vector<int64_t>();
  std::vector<float> w = p.weight.to_vector<float>();
  for (size_t i = 0; i < tok.size(); ++i)
    if (tok[i] == 0) { EXPECT_FLOAT_EQ(w[i], 1.0f); }
}

TEST(MoeGate, ReproducesDeepSpeedTop3PositionDecisions) {
  // test_moe.py: position_sec_sparse for S=4, E=6, k=3, C=2.
  const std::vector<Triple> position = {{0, 2, 0}, {0, 4, 0}, {0, 5, 0}, {1, 1, 0}, {1, 3, 0},
                                        {1, 5, 1}, {2, 1, 1}, {2, 2, 1}, {2, 3, 1}, {3, 0, 0}};
  for (float scale : {1.0f, 2.0f}) {
    GateOutput g = ds_route(kDsLogits4x6, 6, 3, DropPolicy::position, scale);
    EXPECT_EQ(g.capacity, 2);
    EXPECT_EQ(triples(g), position) << "scale " << scale;
    EXPECT_EQ(g.exp_counts, (std::vector<int64_t>{1, 3, 2, 2, 1, 3}));
  }
}

// tests/data/moe/deepspeed_gate_cases.json: what DeepSpeed 0.19.8's own top1gating /
// top2gating / topkgating decided on skewed random logits (16–64 tokens, 4–8 experts, k = 1–4,
// dropping and dropless, both drop policies; bench/reference/deepspeed_moe_cases.py wrote
// it). Replayed through mox's gate: the same capacity, counts, l_aux and kept routes, with the
// same slots and combine weights. One exception, by design: top-1 without RTS keeps whichever C
// tokens torch.topk returns among equal 0/1 mask values (not token order), where mox keeps the
// first C in token order (moe/README.md, deviation 8); for an over-full expert there, the kept
// count and the weight of every token both keep are compared, the other experts exactly.
TEST(MoeGate, MatchesDeepSpeedOnRandomLogits) {
  const nlohmann::json cases = deepspeed_cases("deepspeed_gate_cases.json");
  ASSERT_EQ(cases.size(), 11u);
  for (const nlohmann::json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    GateConfig cfg = gate_config(c["num_experts"], c["k"]);
    cfg.capacity_factor = c["capacity_factor"];
    cfg.min_capacity = c["min_capacity"];
    cfg.drop_tokens = c["drop_tokens"];
    cfg.drop_policy = parse_drop_policy(c["drop_policy"]);
    cfg.use_rts = false;                    // DeepSpeed's draws cannot be replayed
    cfg.top2_2nd_expert_sampling = false;
    const std::vector<float> logits = c["logits"];
    const int64_t E = cfg.num_experts, S = int64_t(logits.size()) / E;
    TopKGate gate(8, cfg);
    const GateOutput g = gate.route_logits(from_vector<float>(logits, {S, E}));
    EXPECT_EQ(g.capacity, c["capacity"].get<int64_t>());
    EXPECT_EQ(g.exp_counts, c["exp_counts"].get<std::vector<int64_t>>());
    EXPECT_NEAR(g.l_aux.item<float>(), c["l_aux"].get<double>(), 1e-6 * c["l_aux"].get<double>());

    std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, double>> theirs;   // (token, expert) → (slot, weight)
    std::vector<int64_t> their_kept(size_t(E), 0);
    for (const nlohmann::json& r : c["routes"]) {
      theirs[{r[0].get<int64_t>(), r[1].get<int64_t>()}] = {r[2].get<int64_t>(), r[3].get<double>()};
      ++their_kept[r[1].get<size_t>()];
    }
    EXPECT_EQ(g.kept_per_expert, their_kept);
    EXPECT_EQ(g.token.numel(), int64_t(c["routes"].size()));
    const bool tie_order_differs = cfg.k == 1 && cfg.drop_tokens;
    const std::vector<int64_t> tok = g.token.to_vector<int64_t>(), ex = g.expert.to_vector<int64_t>(),
                               slot = g.slot.to_vector<int64_t>();
    const std::vector<float> w = g.weight.to_vector<float>();
    for (size_t i = 0; i < tok.size(); ++i) {
      const auto it = theirs.find({tok[i], ex[i]});
      if (it == theirs.end()) {   // only an over-full expert may pick other tokens, and only at top-1
        EXPECT_TRUE(tie_order_differs && g.exp_counts[size_t(ex[i])] > g.capacity)
            << "mox keeps token " << tok[i] << " at expert " << ex[i] << "; DeepSpeed drops it";
        continue;
      }
      if (!tie_order_differs || g.exp_counts[size_t(ex[i])] <= g.capacity) {   // slots are token order among the kept
        EXPECT_EQ(slot[i], it->second.first) << "token " << tok[i] << ", expert " << ex[i];
      }
      EXPECT_NEAR(w[i], it->second.second, 1e-6) << "token " << tok[i] << ", expert " << ex[i];
    }
  }
}

TEST(MoeGate, Top3ProbsRanksByProbabilityNotLogit) {
  // DeepSpeed's published probs_sec_sparse ranks an expert's tokens by raw logit. Across tokens
  // that is not the router's preference: expert 1 holds tokens 1, 2, 3 with logits .633, .811,
  // .671 but probabilities .188, .210, .167, and expert 5 tokens 0, 1, 3 with logits .703,
  // .645, .989 but probabilities .173, .190, .230. Ranking by probability keeps tokens {1, 2} at
  // expert 1 and {1, 3} at expert 5, where DeepSpeed keeps {2, 3} and {0, 3} (moe/README.md).
  const std::vector<Triple> deepspeed = {{0, 2, 0}, {0, 4, 0}, {0, 5, 0}, {1, 3, 0}, {2, 1, 0},
                                         {2, 2, 1}, {2, 3, 1}, {3, 0, 0}, {3, 1, 1}, {3, 5, 1}};
  const std::vector<Triple> ours = {{0, 2, 0}, {0, 4, 0}, {1, 1, 0}, {1, 3, 0}, {1, 5, 0},
                                    {2, 1, 1}, {2, 2, 1}, {2, 3, 1}, {3, 0, 0}, {3, 5, 1}};
  GateOutput g = ds_route(kDsLogits4x6, 6, 3, DropPolicy::probs, 1.0f);
  EXPECT_EQ(triples(g), ours);
  EXPECT_NE(triples(g), deepspeed);
  // k>2 with the standard policy is `probs`.
  EXPECT_EQ(triples(ds_route(kDsLogits4x6, 6, 3, DropPolicy::standard, 1.0f)), ours);
  // The worked example of moe/README.md: weights renormalised over the surviving experts and
  // l_aux = (E²/k)·mean_e(me·ce).
  std::vector<int64_t> tok = g.token.to_vector<int64_t>(), exp = g.expert.to_vector<int64_t>();
  std::vector<float> w = g.weight.to_vector<float>();
  for (size_t i = 0; i < tok.size(); ++i) {
    if (tok[i] == 0) { EXPECT_NEAR(w[i], exp[i] == 2 ? 0.4145 : 0.5855, 1e-4); }
    if (tok[i] == 3) { EXPECT_NEAR(w[i], exp[i] == 0 ? 0.4670 : 0.5330, 1e-4); }
  }
  EXPECT_NEAR(g.l_aux.item<float>(), 1.02228, 1e-5);
}

// ============================================================================ gate: formulas

TEST(MoeGate, CapacityIsHandComputed) {
  auto cap = [](int64_t E, int64_t k, double f, double ef, int64_t minc, int64_t S, bool train) {
    GateConfig c = gate_config(E, k);
    c.capacity_factor = f;
    c.eval_capacity_factor = ef;
    c.min_capacity = minc;
    TopKGate g(4, c);
    g.train(train);
    return g.capacity(S);
  };
  EXPECT_EQ(cap(4, 1, 1.0, 1.0, 0, 8, true), 2);      // ceil(1·8/4·1)
  EXPECT_EQ(cap(4, 1, 1.25, 1.0, 0, 8, true), 3);     // ceil(2.5)
  EXPECT_EQ(cap(4, 1, 1.0, 1.0, 4, 8, true), 4);      // min_capacity wins
  EXPECT_EQ(cap(4, 2, 1.5, 1.0, 0, 10, true), 8);     // ceil(2·10/4·1.5) = ceil(7.5)
  EXPECT_EQ(cap(4, 2, 1.0, 2.0, 0, 10, false), 10);   // eval factor: ceil(2·10/4·2)
  EXPECT_EQ(cap(6, 3, 1.0, 1.0, 1, 4, true), 2);      // ceil(3·4/6) = 2 exactly
  EXPECT_EQ(cap(3, 1, 0.3, 1.0, 0, 10, true), 1);     // (1·10·0.3)/3 = 1; (10/3)·0.3 would round to 1+ulp
}

TEST(MoeGate, LauxWeightsAndZLossAreHandComputed) {
  // Probabilities given as logits = log p: tokens [.9 .1] [.8 .2] [.3 .7] [.6 .4].
  const std::vector<double> p = {0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.6, 0.4};
  std::vector<double> lg;
  for (double v : p) lg.push_back(std::log(v));
  Tensor logits = from_vector<double>(lg, {4, 2});
  auto route = [&](int64_t k, DropPolicy policy) {
    GateConfig c = gate_config(2, k);
    c.min_capacity = 0;
    c.capacity_factor = 2;   // nothing dropped
    c.top2_2nd_expert_sampling = false;
    c.drop_policy = policy;
    return TopKGate(4, c).route_logits(logits);
  };
  // me = [.65 .35]; first choices e0: t0 t1 t3, e1: t2 → ce = [.75 .25].
  // top-1 and top-2: E·Σ me·ce = 2·(.65·.75 + .35·.25) = 1.15.
  GateOutput g1 = route(1, DropPolicy::standard);
  EXPECT_NEAR(g1.l_aux.item<double>(), 1.15, 1e-12);
  EXPECT_EQ(triples(g1), (std::vector<Triple>{{0, 0, 0}, {1, 0, 1}, {2, 1, 0}, {3, 0, 2}}));
  std::vector<double> w1 = g1.weight.to_vector<double>();   // raw probabilities, expert order
  EXPECT_NEAR(w1[0], 0.9, 1e-12);
  EXPECT_NEAR(w1[3], 0.7, 1e-12);
  EXPECT_NEAR(route(2, DropPolicy::standard).l_aux.item<double>(), 1.15, 1e-12);
  // The top-k formula at k=2: (E/k)·Σ me·ce with ce over both choices = [1 1] → 1.0.
  EXPECT_NEAR(route(2, DropPolicy::probs).l_aux.item<double>(), 1.0, 1e-12);
  // Top-2 weights renormalised over the two experts: p / (p1 + p2) = p.
  std::vector<double> w2 = route(2, DropPolicy::standard).weight.to_vector<double>();
  EXPECT_NEAR(std::accumulate(w2.begin(), w2.end(), 0.0), 4.0, 1e-12);

  // k=3 of E=4, tokens [.4 .3 .2 .1] → {0,1,2} and [.1 .5 .3 .1] → {1,2,0} (tie to the lower
  // index): ce = [1 1 1 0], me = [.25 .4 .25 .1], l_aux = (4/3)·0.9 = 1.2.
  std::vector<double> lg3;
  for (double v : {0.4, 0.3, 0.2, 0.1, 0.1, 0.5, 0.3, 0.1}) lg3.push_back(std::log(v));
  GateConfig c3 = gate_config(4, 3);
  c3.min_capacity = 0;
  EXPECT_NEAR(TopKGate(4, c3).route_logits(from_vector<double>(lg3, {2, 4})).l_aux.item<double>(), 1.2, 1e-12);

  // z-loss: mean over tokens of logsumexp², times its coefficient.
  GateConfig cz = gate_config(2, 1);
  cz.min_capacity = 0;
  cz.z_loss_coef = 0.5;
  GateOutput gz = TopKGate(4, cz).route_logits(from_vector<double>({1, 2, 0, 0}, {2, 2}));
  const double a = std::log(std::exp(1.0) + std::exp(2.0)), b = std::log(2.0);
  EXPECT_NEAR(gz.z_loss_unscaled, (a * a + b * b) / 2, 1e-12);
  EXPECT_NEAR(gz.z_loss.item<double>(), 0.5 * (a * a + b * b) / 2, 1e-12);

  // Router entropy: token 0 has p = (1, e)/(1 + e), token 1 is uniform (ln 2).
  const double p0 = 1 / (1 + std::exp(1.0)), p1 = 1 - p0;
  EXPECT_NEAR(gz.entropy, (-(p0 * std::log(p0) + p1 * std::log(p1)) + std::log(2.0)) / 2, 1e-12);
}

TEST(MoeGate, Top2SecondChoicesQueueBehindFirstChoices) {
  // E=2, S=4, C = ceil(2·4/2·0.5) = 2. First choices: t0..t2 → e0, t3 → e1; second choices
  // the other expert. e0 keeps t0, t1 (first choices), e1 keeps t3 (first) then t0 (second).
  // t2 keeps nothing (its first choice e0 and second choice e1 are both full): weight gone.
  GateConfig c = gate_config(2, 2);
  c.capacity_factor = 0.5;
  c.min_capacity = 0;
  c.top2_2nd_expert_sampling = false;
  GateOutput g = TopKGate(4, c).route_logits(from_vector<float>({2, 0, 1, 0, 3, 0, 0, 1}, {4, 2}));
  EXPECT_EQ(triples(g), (std::vector<Triple>{{0, 0, 0}, {0, 1, 1}, {1, 0, 1}, {3, 1, 0}}));
  EXPECT_EQ(g.dropped, 4);
  EXPECT_EQ(g.dropped_tokens, 1);
  EXPECT_EQ(g.exp_counts, (std::vector<int64_t>{4, 4}));
  std::vector<int64_t> tok = g.token.to_vector<int64_t>();
  std::vector<float> w = g.weight.to_vector<float>();
  for (size_t i = 0; i < tok.size(); ++i)
    if (tok[i] == 1) { EXPECT_FLOAT_EQ(w[i], 1.0f); }   // t1 lost its second choice
}

TEST(MoeGate, ExpCountsSumToSkAndDropsAreAccounted) {
  Generator gen(3);
  Tensor logits = raw::normal({24, 6}, 0, 2, DType::f32, Device::cpu(), &gen);
  for (int64_t k : {1, 2, 3, 6}) {
    for (double f : {0.5, 4.0}) {
      GateConfig c = gate_config(6, k);
      c.capacity_factor = f;
      c.min_capacity = 0;
      GateOutput g = TopKGate(4, c).route_logits(logits);
      int64_t sum = 0, kept = 0;
      for (int64_t n : g.exp_counts) sum += n;
      for (int64_t n : g.kept_per_expert) {
        kept += n;
        EXPECT_LE(n, g.capacity);
      }
      EXPECT_EQ(sum, 24 * k) << "k=" << k;
      EXPECT_EQ(kept, g.token.numel());
      EXPECT_EQ(g.dropped, 24 * k - kept);
      if (f == 0.5 && k < 6) { EXPECT_GT(g.dropped, 0) << "k=" << k; }
      if (f == 4.0) { EXPECT_EQ(g.dropped, 0) << "k=" << k; }
    }
  }
}

TEST(MoeGate, SameSeedSameDrops) {
  Generator gen(5);
  Tensor logits = raw::normal({40, 4}, 0, 1, DType::f32, Device::cpu(), &gen);
  auto route = [&](uint64_t seed, bool rts) {
    GateConfig c = gate_config(4, 1);
    c.capacity_factor = 0.5;
    c.min_capacity = 0;
    c.use_rts = rts;
    c.seed = seed;
    return triples(TopKGate(4, c).route_logits(logits));
  };
  EXPECT_EQ(route(7, true), route(7, true));
  EXPECT_NE(route(7, true), route(8, true));
  // A shared generator: two gates draw consecutive numbers, not the same ones.
  auto shared = std::make_shared<Generator>(7);
  GateConfig cs = gate_config(4, 1);
  cs.capacity_factor = 0.5;
  cs.min_capacity = 0;
  TopKGate a(4, cs, shared), b(4, cs, shared);
  EXPECT_EQ(triples(a.route_logits(logits)), route(7, true));
  EXPECT_NE(triples(b.route_logits(logits)), route(7, true));
  EXPECT_EQ(shared->offset(), 80u);   // one uniform per token per call
  // Without RTS: first-come, i.e. the kept tokens of each expert are its earliest ones.
  GateConfig c = gate_config(4, 1);
  c.capacity_factor = 0.5;
  c.min_capacity = 0;
  c.use_rts = false;
  GateOutput g = TopKGate(4, c).route_logits(logits);
  std::vector<int64_t> first = raw::argmax(logits, 1).to_vector<int64_t>();
  std::vector<int64_t> seen(4, 0);
  std::set<Triple> kept;
  for (const Triple& t : triples(g)) kept.insert(t);
  for (int64_t s = 0; s < 40; ++s) {
    const int64_t e = first[size_t(s)];
    const bool expect_kept = seen[size_t(e)] < g.capacity;
    EXPECT_EQ(kept.count({s, e, seen[size_t(e)]}) == 1, expect_kept) << "token " << s;
    ++seen[size_t(e)];
  }
}

TEST(MoeGate, EvalDrawsNothingAndAcceptsFewerTokensThanMinCapacity) {
  Generator gen(5);
  Tensor logits = raw::normal({40, 4}, 0, 1, DType::f32, Device::cpu(), &gen);
  GateConfig c = gate_config(4, 1);
  c.capacity_factor = c.eval_capacity_factor = 0.5;
  c.min_capacity = 0;
  c.noisy_gate_policy = NoisyGatePolicy::rsample;
  auto shared = std::make_shared<Generator>(7);
  TopKGate gate(4, c, shared);
  gate.eval();
  GateOutput g = gate.route_logits(logits);
  EXPECT_EQ(shared->offset(), 0u);   // no RTS uniforms, no Gumbel noise in eval
  EXPECT_GT(g.dropped, 0);
  c.use_rts = false;                 // eval drops first-come, as training without RTS or noise
  c.noisy_gate_policy = NoisyGatePolicy::none;
  EXPECT_EQ(triples(g), triples(TopKGate(4, c).route_logits(logits)));

  // One token (generation with a KV cache) against min_capacity 4: an error in training,
  // nothing dropped in eval.
  GateConfig c1 = gate_config(4, 2);
  TopKGate one(4, c1);
  Tensor single = from_vector<float>({0.1f, 0.4f, 0.2f, 0.3f}, {1, 4});
  EXPECT_NE(error_of([&] { one.route_logits(single); }).find("1 tokens are fewer than min_capacity=4"),
            std::string::npos);
  one.eval();
  GateOutput g1 = one.route_logits(single);
  EXPECT_EQ(g1.dropped, 0);
  EXPECT_EQ(triples(g1), (std::vector<Triple>{{0, 1, 0}, {0, 3, 0}}));
}

TEST(MoeGate, DroplessNeverDrops) {
  // Every token prefers expert 0: capacity mode would drop most of them.
  Generator gen(9);
  Tensor logits = raw::add(raw::normal({20, 5}, 0, 0.1, DType::f32, Device::cpu(), &gen),
                           from_vector<float>({3, 2, 1, 0, -1}, {5}));
  for (int64_t k : {1, 2, 3}) {
    for (DropPolicy p : {DropPolicy::standard, DropPolicy::position}) {
      if (k == 1 && p != DropPolicy::standard) continue;
      GateConfig c = gate_config(5, k);
      c.drop_tokens = false;
      c.drop_policy = p;
      c.min_capacity = 100;   // irrelevant without dropping
      GateOutput g = TopKGate(4, c).route_logits(logits);
      EXPECT_EQ(g.dropped, 0);
      EXPECT_EQ(g.token.numel(), 20 * k);
      EXPECT_EQ(g.capacity, *std::max_element(g.exp_counts.begin(), g.exp_counts.end()));
    }
  }
}

TEST(MoeGate, NoiseOnlyInTraining) {
  Generator gen(11);
  Tensor x = raw::normal({64, 4}, 0, 1, DType::f32, Device::cpu(), &gen);
  for (NoisyGatePolicy policy : {NoisyGatePolicy::rsample, NoisyGatePolicy::jitter}) {
    GateConfig c = gate_config(4, 1);
    c.drop_tokens = false;
    TopKGate plain(4, c);
    c.noisy_gate_policy = policy;
    TopKGate noisy(4, c);
    noisy.load_state_dict(plain.state_dict());
    raw::mul_(noisy.wg->weight, 0.01);   // near-flat logits, so the noise changes choices
    raw::mul_(plain.wg->weight, 0.01);
    auto decisions = [&](TopKGate& g) {   // (token, expert, slot) and combine weights
      GateOutput o = g.route(x);
      return std::make_pair(triples(o), o.weight.to_vector<float>());
    };
    EXPECT_NE(decisions(noisy), decisions(plain)) << to_string(policy);
    noisy.eval();
    plain.eval();
    EXPECT_EQ(decisions(noisy), decisions(plain)) << to_string(policy);
  }
}

TEST(MoeGate, Top2SecondExpertSamplingOnlyInTraining) {
  Generator gen(13);
  Tensor logits = raw::normal({64, 4}, 0, 1, DType::f32, Device::cpu(), &gen);
  auto second = [&](bool sampling, bool training, uint64_t seed) {
    GateConfig c = gate_config(4, 2);
    c.drop_tokens = false;
    c.top2_2nd_expert_sampling = sampling;
    c.seed = seed;
    TopKGate g(4, c);
    g.train(training);
    GateOutput o = g.route_logits(logits);
    // Slots of expert e: first choices first, so a token's second choice is its other entry.
    std::vector<int64_t> tok = o.token.to_vector<int64_t>(), exp = o.expert.to_vector<int64_t>();
    std::vector<int64_t> first = raw::argmax(logits, 1).to_vector<int64_t>(), sec(64, -1);
    for (size_t i = 0; i < tok.size(); ++i)
      if (exp[i] != first[size_t(tok[i])]) sec[size_t(tok[i])] = exp[i];
    return sec;
  };
  const std::vector<int64_t> plain = second(false, true, 1);
  for (int64_t e : plain) EXPECT_GE(e, 0);   // never the first choice again
  EXPECT_NE(second(true, true, 1), plain);
  EXPECT_EQ(second(true, true, 1), second(true, true, 1));
  EXPECT_EQ(second(true, false, 1), plain);   // eval: deterministic, no noise
}

TEST(MoeGate, InvalidConfigurationsNameTheValues) {
  auto make = [](GateConfig c) { return [c] { TopKGate g(4, c); }; };
  GateConfig c = gate_config(4, 5);
  EXPECT_NE(error_of(make(c)).find("k=5 must be in [1, num_experts=4]"), std::string::npos);
  c = gate_config(0, 1);
  EXPECT_NE(error_of(make(c)).find("num_experts=0"), std::string::npos);
  c = gate_config(4, 1);
  c.capacity_factor = 0;
  EXPECT_NE(error_of(make(c)).find("capacity_factor=0"), std::string::npos);
  c = gate_config(4, 1);
  c.eval_capacity_factor = -1;
  EXPECT_NE(error_of(make(c)).find("eval_capacity_factor=-1"), std::string::npos);
  c = gate_config(4, 1);
  c.min_capacity = -2;
  EXPECT_NE(error_of(make(c)).find("min_capacity=-2"), std::string::npos);
  c = gate_config(4, 2);
  c.noisy_gate_policy = NoisyGatePolicy::rsample;
  EXPECT_NE(error_of(make(c)).find("needs k=1, got k=2"), std::string::npos);
  c = gate_config(4, 1);
  c.drop_policy = DropPolicy::probs;
  EXPECT_NE(error_of(make(c)).find("drop_policy probs needs k ≥ 2"), std::string::npos);
  EXPECT_NE(error_of([] { parse_noisy_gate_policy("Gaussian"); }).find("'Gaussian'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_drop_policy("random"); }).find("'random'"), std::string::npos);
  // Fewer tokens than min_capacity (DeepSpeed asserts; we throw).
  c = gate_config(4, 1);
  c.min_capacity = 8;
  TopKGate g(4, c);
  EXPECT_NE(error_of([&] { g.route(zeros({3, 4})); }).find("3 tokens are fewer than min_capacity=8"),
            std::string::npos);
  EXPECT_NE(error_of([&] { g.route(zeros({3, 5})); }).find("hidden=4"), std::string::npos);
  TopKGate g2(4, gate_config(2, 1));
  EXPECT_NE(error_of([&] { g2.route_logits(from_vector<float>({0, NAN, 1, 2, 3, 4, 5, 6}, {4, 2})); }).find("NaN or inf"),
            std::string::npos);
  // Expert parallelism needs the distributed runtime (tests/dist/ covers it under mpirun).
  MoEConfig mc;
  mc.gate = gate_config(4, 1);
  mc.ep_size = 2;
  auto lin = [] { return std::make_shared<nn::Linear>(4, 4); };
  EXPECT_NE(error_of([&] { MoE m(4, lin, mc); }).find("ep_size=2 needs the distributed runtime"), std::string::npos);
  mc.ep_size = 3;
  EXPECT_NE(error_of([&] { MoE m(4, lin, mc); }).find("num_experts=4 must be a positive multiple of ep_size=3"),
            std::string::npos);
  // Expert factories that return null or different architectures.
  EXPECT_NE(error_of([] { Experts e([] { return std::shared_ptr<nn::Module>(); }, 2, "g"); }).find("returned null for expert 0"),
            std::string::npos);
  int64_t calls = 0;
  auto growing = [&calls] { ++calls; return std::make_shared<nn::Linear>(4, 4 + calls); };
  EXPECT_NE(error_of([&] { Experts e(growing, 2, "g"); }).find("expert 1 built by the factory differs from expert 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] { MoE m(4, lin, mc); }).find("ep_size=3"), std::string::npos);
  MoE ok(4, lin, [] { MoEConfig m; m.gate = gate_config(2, 1); return m; }());
  EXPECT_NE(error_of([&] { ok.forward_moe(zeros({8, 5})); }).find("last dim of hidden=4"), std::string::npos);
}

// ============================================================================ layer

namespace {

constexpr int64_t kM = 6;   // hidden

ExpertFactory mlp_expert() {
  return [] {
    auto s = std::make_shared<nn::Sequential>();
    s->push_back(std::make_shared<nn::Linear>(kM, 2 * kM));
    s->push_back(std::make_shared<nn::Tanh>());
    s->push_back(std::make_shared<nn::Linear>(2 * kM, kM));
    return s;
  };
}

// Experts start as copies; give each parameter distinct values so routing errors show.
void randomise(nn::Module& m, uint64_t seed) {
  Generator gen(seed);
  for (auto& [name, p] : m.named_parameters()) raw::copy_(p, raw::uniform(p.shape(), -0.8, 0.8, p.dtype(), p.device(), &gen));
}

std::shared_ptr<MoE> make_moe(int64_t E, int64_t k, DropPolicy policy, double f, bool drop, bool residual) {
  MoEConfig c;
  c.gate = gate_config(E, k);
  c.gate.capacity_factor = f;
  c.gate.min_capacity = 0;
  c.gate.use_rts = false;
  c.gate.top2_2nd_expert_sampling = false;
  c.gate.drop_policy = policy;
  c.gate.drop_tokens = drop;
  c.gate.z_loss_coef = 0.1;   // exercised by the gradcheck; the dense comparison leaves it out
  c.use_residual = residual;
  auto m = std::make_shared<MoE>(kM, mlp_expert(), c);
  randomise(*m, 1234);
  raw::mul_(m->gate->wg->weight, 3.0);   // decisive routing
  return m;
}

// The dense reference: DeepSpeed's formulation with S×E×C dispatch/combine tensors and cumsum
// locations, written from the published algorithm, sharing the layer's parameters.
struct Dense {
  Tensor out, l_aux;
  int64_t dropped = 0;
};

Dense dense_moe(MoE& moe, const Tensor& x) {
  const GateConfig& gc = moe.config().gate;
  const int64_t E = gc.num_experts, k = gc.k;
  Tensor xs = x.reshape({-1, kM});   // (S, M)
  const int64_t S = xs.size(0);
  const DType dt = x.dtype();
  Tensor logits = linear(xs.to(dt), moe.gate->wg->weight.to(dt));   // (S, E)
  Tensor probs = softmax(logits, -1);                                // (S, E)
  const std::vector<double> P = probs.to_vector<double>(), L = logits.to_vector<double>();
  const bool top2 = k == 2 && gc.drop_policy == DropPolicy::standard;
  auto argmax = [&](const std::vector<double>& v, int64_t s, int64_t skip) {
    int64_t b = -1;
    for (int64_t e = 0; e < E; ++e)
      if (e != skip && (b < 0 || v[size_t(s * E + e)] > v[size_t(s * E + b)])) b = e;
    return b;
  };
  // masks[r] (S, E): one-hot of the r-th choice (k ≤ 2) or the whole top-k mask (k > 2).
  std::vector<std::vector<int>> masks;
  if (k == 1 || top2) {
    for (int64_t r = 0; r < k; ++r) {
      std::vector<int> m(size_t(S * E), 0);
      for (int64_t s = 0; s < S; ++s) {
        const int64_t e1 = argmax(P, s, -1);
        m[size_t(s * E + (r == 0 ? e1 : argmax(L, s, e1)))] = 1;
      }
      masks.push_back(m);
    }
  } else {
    std::vector<int> m(size_t(S * E), 0);
    for (int64_t s = 0; s < S; ++s) {
      std::vector<int64_t> o(static_cast<size_t>(E));
      std::iota(o.begin(), o.end(), 0);
      std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) { return L[size_t(s * E + a)] > L[size_t(s * E + b)]; });
      for (int64_t r = 0; r < k; ++r) m[size_t(s * E + o[size_t(r)])] = 1;
    }
    masks.push_back(m);
  }
  std::vector<int64_t> counts(size_t(E), 0);
  for (auto& m : masks)
    for (int64_t i = 0; i < S * E; ++i) counts[size_t(i % E)] += m[size_t(i)];
  const int64_t C = gc.drop_tokens
                        ? std::max<int64_t>(int64_t(std::ceil(double(k * S) * gc.capacity_factor / double(E))), gc.min_capacity)
                        : *std::max_element(counts.begin(), counts.end());
  // locations = cumsum(mask) − 1 (+ all first choices for the second), kept where < C.
  std::vector<double> kept(size_t(S * E), 0), loc_sec(size_t(S * E * C), 0);
  std::vector<int64_t> base(size_t(E), 0);
  Dense d;
  for (size_t r = 0; r < masks.size(); ++r) {
    std::vector<int>& m = masks[r];
    if (!top2 && k > 1 && gc.drop_policy != DropPolicy::position && gc.drop_tokens) {   // probs
      for (int64_t e = 0; e < E; ++e) {
        std::vector<int64_t> ts;
        for (int64_t s = 0; s < S; ++s) if (m[size_t(s * E + e)]) ts.push_back(s);
        std::stable_sort(ts.begin(), ts.end(), [&](int64_t a, int64_t b) { return P[size_t(a * E + e)] > P[size_t(b * E + e)]; });
        for (size_t j = size_t(C); j < ts.size(); ++j) m[size_t(ts[j] * E + e)] = 0;
      }
    }
    std::vector<int64_t> cum(base);
    for (int64_t s = 0; s < S; ++s)
      for (int64_t e = 0; e < E; ++e) {
        if (!m[size_t(s * E + e)]) continue;
        const int64_t loc = cum[size_t(e)]++;
        if (loc < C) {
          kept[size_t(s * E + e)] = 1;
          loc_sec[size_t((s * E + e) * C + loc)] = 1;
        }
      }
    for (int64_t e = 0; e < E; ++e)
      for (int64_t s = 0; s < S; ++s) base[size_t(e)] += masks[r][size_t(s * E + e)];
  }
  int64_t n_kept = 0;
  for (double v : kept) n_kept += int64_t(v);
  d.dropped = S * k - n_kept;
  Tensor gates = mul(probs, from_doubles(kept, {S, E}, dt));   // (S, E)
  if (k > 1) {
    Tensor denom = sum(gates, {1}, true);   // (S, 1)
    const double eps = dt == DType::f64 ? 2.220446049250313e-16 : 1.1920928955078125e-07;
    gates = div(gates, maximum(denom, full({S, 1}, eps, dt)));
  }
  Tensor locs = from_doubles(loc_sec, {S, E, C}, dt);                  // (S, E, C)
  Tensor combine = mul(gates.unsqueeze(2), locs);                     // (S, E, C)
  // dispatched[e, c, m] = Σ_s dispatch[s, e, c] · x[s, m]               ("sec,sm->ecm")
  Tensor dispatched = sum(mul(locs.unsqueeze(3), xs.reshape({S, 1, 1, kM})), {0});   // (E, C, M)
  // Expert e runs on the n_e occupied slots of its buffer; the C − n_e empty slots get zero
  // output rows. DeepSpeed runs the whole (C, M) buffer, which is the same mathematics (empty
  // slots have zero combine weight), but OpenBLAS's sgemm is not bitwise invariant to the row
  // count, and the k=1 comparison below is bit for bit.
  std::vector<Tensor> ys;
  for (int64_t e = 0; e < E; ++e) {
    int64_t n = 0;
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < C; ++c) n += int64_t(loc_sec[size_t((s * E + e) * C + c)]);
    Tensor buf = dispatched.narrow(0, e, 1).squeeze(0);   // (C, M)
    Tensor ye = n > 0 ? (*moe.experts)[e].forward(buf.narrow(0, 0, n)) : zeros({0, kM}, dt);
    ys.push_back(n < C ? cat({ye, zeros({C - n, kM}, dt)}, 0) : ye);   // (C, M)
  }
  Tensor y = stack(ys, 0);                                             // (E, C, M)
  // out[s, m] = Σ_{e,c} combine[s, e, c] · y[e, c, m]                    ("sec,ecm->sm")
  Tensor out = sum(mul(combine.unsqueeze(3), y.unsqueeze(0)), {1, 2});   // (S, M)
  if (moe.config().use_residual) {
    Tensor a = softmax(moe.coefficient->forward(xs), -1);   // (S, 2)
    out = add(mul(out, a.narrow(1, 0, 1)), mul(moe.mlp->forward(xs), a.narrow(1, 1, 1)));
  }
  d.out = out.reshape(x.shape());
  // ce from the masks before dropping (first choices for k ≤ 2, all for the top-k path).
  std::vector<double> ce(size_t(E), 0);
  const std::vector<int64_t> firsts = [&] {
    std::vector<int64_t> f(size_t(E), 0);
    for (int64_t s = 0; s < S; ++s) ++f[size_t(argmax(P, s, -1))];
    return f;
  }();
  for (int64_t e = 0; e < E; ++e) ce[size_t(e)] = double(k == 1 || top2 ? firsts[size_t(e)] : counts[size_t(e)]) / double(S);
  const double scale = k == 1 || top2 ? double(E) : double(E) / double(k);
  d.l_aux = mul(sum(mul(mean(probs, {0}), from_doubles(ce, {E}, dt))), scale);
  return d;
}

struct Grads {
  std::vector<std::vector<double>> g;
};

// Loss = Σ out·w + l_aux; returns the gradients of x and of every parameter.
Grads grads_of(MoE& moe, const Tensor& x, const Tensor& out, const Tensor& l_aux, const Tensor& w) {
  moe.zero_grad();
  x.impl()->grad.reset();
  add(sum(mul(out, w)), l_aux).backward();
  Grads r;
  r.g.push_back(x.grad().to_vector<double>());
  for (auto& [name, p] : moe.named_parameters())
    r.g.push_back(p.grad().defined() ? p.grad().to_vector<double>() : std::vector<double>(size_t(p.numel()), 0.0));
  return r;
}

}  // namespace

TEST(MoeLayer, MatchesDenseReferenceInOutputAndGradients) {
  struct Case { int64_t k; DropPolicy policy; double f; bool drop; };
  const std::vector<Case> cases = {
      {1, DropPolicy::standard, 0.5, true},   {1, DropPolicy::standard, 1.0, false},
      {2, DropPolicy::standard, 0.5, true},   {2, DropPolicy::standard, 4.0, true},
      {2, DropPolicy::probs, 0.5, true},      {3, DropPolicy::probs, 0.5, true},
      {3, DropPolicy::position, 0.5, true},   {3, DropPolicy::standard, 1.0, false}};
  Generator gen(77);
  Tensor x = raw::normal({2, 9, kM}, 0, 1, DType::f32, Device::cpu(), &gen);   // S = 18
  x.set_requires_grad();
  Tensor w = raw::normal({2, 9, kM}, 0, 1, DType::f32, Device::cpu(), &gen);
  for (const Case& c : cases) {
    for (bool residual : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "k=" << c.k << " policy=" << to_string(c.policy) << " f=" << c.f
                                      << " drop=" << c.drop << " residual=" << residual);
      auto moe = make_moe(4, c.k, c.policy, c.f, c.drop, residual);
      MoEOutput o = moe->forward_moe(x);
      Grads gi = grads_of(*moe, x, o.output, o.l_aux, w);
      Dense d = dense_moe(*moe, x);
      Grads gd = grads_of(*moe, x, d.out, d.l_aux, w);
      EXPECT_EQ(o.routing.dropped, d.dropped);
      if (c.drop && c.f < 1) { EXPECT_GT(o.routing.dropped, 0); }
      std::vector<float> oi = o.output.to_vector<float>(), od = d.out.to_vector<float>();
      ASSERT_EQ(gi.g.size(), gd.g.size());
      if (c.k == 1) {
        EXPECT_EQ(oi, od);
        EXPECT_EQ(o.l_aux.item<float>(), d.l_aux.item<float>());
        for (size_t i = 0; i < gi.g.size(); ++i) EXPECT_EQ(gi.g[i], gd.g[i]) << "gradient " << i;
      } else {
        auto close = [](const std::vector<double>& a, const std::vector<double>& b) {
          double num = 0, den = 0;
          for (size_t i = 0; i < a.size(); ++i) { num = std::max(num, std::abs(a[i] - b[i])); den = std::max(den, std::abs(b[i])); }
          return num <= 1e-6 * std::max(den, 1e-30);
        };
        EXPECT_TRUE(close(std::vector<double>(oi.begin(), oi.end()), std::vector<double>(od.begin(), od.end())));
        EXPECT_NEAR(o.l_aux.item<float>(), d.l_aux.item<float>(), 1e-6);
        for (size_t i = 0; i < gi.g.size(); ++i) EXPECT_TRUE(close(gi.g[i], gd.g[i])) << "gradient " << i;
      }
    }
  }
}

// tests/data/moe/deepspeed_layer_cases.json: DeepSpeed 0.19.8's deepspeed.moe.layer.MoE
// (experts Linear(6, 6)) on a (3, 4, 6) input with given parameters — top-1 keeping every
// token, top-2 dropping and dropless, top-3 dropping, PR-MoE at top-1 and top-2. mox's layer
// with the same parameters gives the same output, l_aux, exp_counts and gradients of
// Σ output·w + l_aux with respect to the input and every parameter (by name), within 1e-5
// relative (+1e-7 absolute, for values near 0): room for other BLAS kernels' rounding.
TEST(MoeLayer, MatchesDeepSpeedInOutputAndGradients) {
  const nlohmann::json cases = deepspeed_cases("deepspeed_layer_cases.json");
  ASSERT_EQ(cases.size(), 6u);
  auto expect_close = [](const std::vector<float>& ours, const std::vector<double>& theirs, const std::string& what) {
    ASSERT_EQ(ours.size(), theirs.size()) << what;
    for (size_t i = 0; i < ours.size(); ++i)
      EXPECT_NEAR(ours[i], theirs[i], 1e-5 * std::abs(theirs[i]) + 1e-7) << what << "[" << i << "]";
  };
  for (const nlohmann::json& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    MoEConfig cfg;
    cfg.gate = gate_config(c["num_experts"], c["k"]);
    cfg.gate.capacity_factor = c["capacity_factor"];
    cfg.gate.min_capacity = c["min_capacity"];
    cfg.gate.drop_tokens = c["drop_tokens"];
    cfg.gate.use_rts = false;
    cfg.gate.top2_2nd_expert_sampling = false;
    cfg.use_residual = c["use_residual"];
    MoE moe(6, [] { return std::make_shared<nn::Linear>(6, 6); }, cfg);
    const nn::NamedTensors params = moe.named_parameters();
    ASSERT_EQ(params.size(), c["params"].size());
    for (const auto& [name, p] : params) {
      ASSERT_TRUE(c["params"].contains(name)) << "DeepSpeed's layer has no parameter " << name;
      raw::copy_(p, from_vector<float>(c["params"][name].get<std::vector<float>>(), p.shape()));
    }
    Tensor x = from_vector<float>(c["x"].get<std::vector<float>>(), {3, 4, 6});
    x.set_requires_grad();
    const Tensor w = from_vector<float>(c["w"].get<std::vector<float>>(), {3, 4, 6});
    const MoEOutput out = moe.forward_moe(x);
    add(sum(mul(out.output, w)), out.l_aux).backward();

    expect_close(out.output.to_vector<float>(), c["output"], "output");
    EXPECT_NEAR(out.l_aux.item<float>(), c["l_aux"].get<double>(), 1e-6);
    EXPECT_EQ(out.exp_counts, c["exp_counts"].get<std::vector<int64_t>>());
    expect_close(x.grad().to_vector<float>(), c["grad_x"], "input gradient");
    for (const auto& [name, p] : params) {
      const std::vector<double> theirs = c["grads"][name];
      // An expert that received no token has no gradient here and a zero one in DeepSpeed.
      expect_close(p.grad().defined() ? p.grad().to_vector<float>() : std::vector<float>(theirs.size(), 0.0f),
                   theirs, name + " gradient");
    }
  }
}

TEST(MoeLayer, GradcheckFloat64WrtInputExpertsAndRouter) {
  for (int64_t k : {1, 2, 3}) {
    for (bool residual : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "k=" << k << " residual=" << residual);
      auto moe = make_moe(3, k, DropPolicy::standard, k == 3 ? 0.75 : 0.5, true, residual);
      moe->to(DType::f64);
      Tensor x = mox::testing::uniform_leaf({5, kM}, 40 + uint64_t(k));
      std::vector<Tensor> inputs = {x};
      for (auto& [name, p] : moe->named_parameters()) inputs.push_back(p);
      auto fn = [&](const std::vector<Tensor>& v) {
        MoEOutput o = moe->forward_moe(v[0]);
        return add(o.output, add(o.l_aux, o.z_loss));
      };
      EXPECT_GT(moe->forward_moe(x).routing.dropped, 0);
      EXPECT_TRUE(mox::testing::gradcheck(fn, inputs));
    }
  }
}

TEST(MoeLayer, DroplessEqualsCapacityModeWhenCapacityIsAmple) {
  Generator gen(21);
  Tensor x = raw::normal({16, kM}, 0, 1, DType::f32, Device::cpu(), &gen);
  for (int64_t k : {1, 2, 3}) {
    auto ample = make_moe(4, k, DropPolicy::standard, 4.0, true, false);   // C = k·S ≥ any load
    auto dropless = make_moe(4, k, DropPolicy::standard, 1.0, false, false);
    MoEOutput a = ample->forward_moe(x), b = dropless->forward_moe(x);
    EXPECT_EQ(a.routing.dropped, 0);
    EXPECT_EQ(b.routing.dropped, 0);
    EXPECT_EQ(a.output.to_vector<float>(), b.output.to_vector<float>()) << "k=" << k;
    EXPECT_EQ(a.exp_counts, b.exp_counts);
  }
}

TEST(MoeLayer, ExpertsStartAsCopiesAndAreMarkedWithTheirGroup) {
  MoEConfig c;
  c.gate = gate_config(3, 1);
  c.use_residual = true;
  auto outer = std::make_shared<nn::Sequential>();
  outer->push_back(std::make_shared<MoE>(kM, mlp_expert(), c));
  std::vector<ExpertParameter> ps = expert_parameters(*outer);
  ASSERT_EQ(ps.size(), 3u * 4u);   // 3 experts × (2 weights + 2 biases)
  EXPECT_EQ(ps[0].name, "0.experts.0.0.weight");
  EXPECT_EQ(ps[0].group, "ep_size_1");
  for (const ExpertParameter& p : ps) EXPECT_EQ(p.name.find("gate"), std::string::npos);
  // Identical initial values (DeepSpeed deep-copies one expert), distinct storage.
  auto& moe = static_cast<MoE&>((*outer)[0]);
  Tensor w0 = (*moe.experts)[0].named_parameters()[0].second, w2 = (*moe.experts)[2].named_parameters()[0].second;
  EXPECT_EQ(w0.to_vector<float>(), w2.to_vector<float>());
  EXPECT_NE(w0.storage(), w2.storage());
  EXPECT_EQ(moe.mlp->named_parameters()[0].second.to_vector<float>(), w0.to_vector<float>());
  // Output keeps the input's shape; forward() keeps the rest of the call in last().
  Tensor x = zeros({2, 3, kM});
  EXPECT_EQ(moe.forward(x).shape(), x.shape());
  EXPECT_EQ(moe.last().exp_counts.size(), 3u);
}

// ============================================================================ optimizer groups, statistics

TEST(MoeParamGroups, ExpertParametersMoveToMarkedGroupsWithTheSameHyperParameters) {
  MoEConfig c;
  c.gate = gate_config(2, 1);
  auto model = std::make_shared<nn::Sequential>();
  model->push_back(std::make_shared<nn::Linear>(kM, kM));
  model->push_back(std::make_shared<MoE>(kM, mlp_expert(), c));
  optim::ParamGroup all = optim::make_group("default", model->named_parameters());
  all.lr = 0.25;
  all.weight_decay = 0.5;
  all.beta1 = 0.8;
  std::vector<optim::ParamGroup> groups = split_moe_param_groups({all}, *model);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].name, "default");
  EXPECT_FALSE(groups[0].moe);
  EXPECT_EQ(groups[1].name, "default_moe_ep_size_1");
  EXPECT_TRUE(groups[1].moe);
  EXPECT_EQ(groups[1].params.size(), 2u * 4u);   // 2 experts × (2 weights + 2 biases)
  EXPECT_EQ(groups[1].param_names[0], "1.experts.0.0.weight");
  for (const optim::ParamGroup& g : groups) {
    EXPECT_EQ(g.lr, 0.25);
    EXPECT_EQ(g.weight_decay, 0.5);
    EXPECT_EQ(g.beta1, 0.8);
  }
  // Nothing lost, nothing duplicated: dense = Linear (2) + gate (1).
  EXPECT_EQ(groups[0].params.size() + groups[1].params.size(), all.params.size());
  EXPECT_EQ(groups[0].params.size(), 3u);
  // An optimizer accepts the split groups.
  EXPECT_NO_THROW(optim::Sgd sgd(groups));
}

TEST(MoeRoutingStats, SumsCountsAndAveragesLossesOverTheWindow) {
  MoEConfig c;
  c.gate = gate_config(4, 1);
  c.gate.min_capacity = 0;
  c.gate.capacity_factor = 0.5;   // C = ceil(8/4·0.5) = 1: drops are likely
  MoE layer(kM, mlp_expert(), c);
  RoutingStats stats;
  Generator gen(7);
  EXPECT_TRUE(stats.records().empty());
  int64_t dropped = 0;
  double l_aux = 0, entropy = 0;
  std::vector<int64_t> counts(4, 0);
  for (int step = 0; step < 3; ++step) {
    layer.forward(raw::normal({8, kM}, 0, 1, DType::f32, Device::cpu(), &gen));
    stats.add({&layer});
    for (size_t e = 0; e < 4; ++e) counts[e] += layer.last().exp_counts[e];
    dropped += layer.last().routing.dropped;
    l_aux += layer.last().l_aux.item<double>();
    entropy += layer.last().routing.entropy;
  }
  std::vector<nlohmann::json> r = stats.records();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["split"], "routing");
  EXPECT_EQ(r[0]["layer"], 0);
  EXPECT_EQ(r[0]["tokens_per_expert"].get<std::vector<int64_t>>(), counts);
  EXPECT_DOUBLE_EQ(r[0]["dropped_fraction"].get<double>(), double(dropped) / 24.0);
  EXPECT_DOUBLE_EQ(r[0]["l_aux"].get<double>(), l_aux / 3);
  EXPECT_DOUBLE_EQ(r[0]["entropy"].get<double>(), entropy / 3);
  EXPECT_GT(r[0]["entropy"].get<double>(), 0.0);
  EXPECT_LE(r[0]["entropy"].get<double>(), std::log(4.0) + 1e-12);
  EXPECT_TRUE(stats.records().empty());   // the window was reset
}
