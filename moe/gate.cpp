// gate.cpp — TopKGate: router, routing decisions (host loops), combine weights, l_aux, z-loss.
// The formulas and the deviations from DeepSpeed are written down in moe/README.md.
#include "moe/gate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace mox::moe {

NoisyGatePolicy parse_noisy_gate_policy(const std::string& name) {
  if (name == "none" || name == "None") return NoisyGatePolicy::none;
  if (name == "jitter" || name == "Jitter") return NoisyGatePolicy::jitter;
  if (name == "rsample" || name == "RSample") return NoisyGatePolicy::rsample;
  MOX_FAIL("noisy_gate_policy '", name, "' is not one of None, Jitter, RSample");
}

DropPolicy parse_drop_policy(const std::string& name) {
  if (name == "standard") return DropPolicy::standard;
  if (name == "probs") return DropPolicy::probs;
  if (name == "position") return DropPolicy::position;
  MOX_FAIL("drop_policy '", name, "' is not one of standard, probs, position");
}

const char* to_string(NoisyGatePolicy p) {
  switch (p) {
    case NoisyGatePolicy::none: return "None";
    case NoisyGatePolicy::jitter: return "Jitter";
    case NoisyGatePolicy::rsample: return "RSample";
  }
  return "?";
}

const char* to_string(DropPolicy p) {
  switch (p) {
    case DropPolicy::standard: return "standard";
    case DropPolicy::probs: return "probs";
    case DropPolicy::position: return "position";
  }
  return "?";
}

TopKGate::TopKGate(int64_t hidden, const GateConfig& cfg, std::shared_ptr<Generator> gen)
    : cfg_(cfg), hidden_(hidden), gen_(gen ? std::move(gen) : std::make_shared<Generator>(cfg.seed)) {
  const int64_t E = cfg.num_experts, k = cfg.k;
  MOX_CHECK(hidden >= 1, "TopKGate: hidden=", hidden, " must be at least 1");
  MOX_CHECK(E >= 1, "TopKGate: num_experts=", E, " must be at least 1");
  MOX_CHECK(k >= 1 && k <= E, "TopKGate: k=", k, " must be in [1, num_experts=", E, "]");
  MOX_CHECK(std::isfinite(cfg.capacity_factor) && cfg.capacity_factor > 0,
            "TopKGate: capacity_factor=", cfg.capacity_factor, " must be a positive number");
  MOX_CHECK(std::isfinite(cfg.eval_capacity_factor) && cfg.eval_capacity_factor > 0,
            "TopKGate: eval_capacity_factor=", cfg.eval_capacity_factor, " must be a positive number");
  MOX_CHECK(cfg.min_capacity >= 0, "TopKGate: min_capacity=", cfg.min_capacity, " must be ≥ 0");
  MOX_CHECK(std::isfinite(cfg.z_loss_coef) && cfg.z_loss_coef >= 0, "TopKGate: z_loss_coef=",
            cfg.z_loss_coef, " must be ≥ 0");
  MOX_CHECK(cfg.noisy_gate_policy != NoisyGatePolicy::rsample || k == 1,
            "TopKGate: noisy_gate_policy RSample perturbs the top-1 selection and needs k=1, got k=", k,
            " (k=2 samples its second expert with top2_2nd_expert_sampling)");
  MOX_CHECK(cfg.drop_policy == DropPolicy::standard || k >= 2, "TopKGate: drop_policy ",
            moe::to_string(cfg.drop_policy), " needs k ≥ 2, got k=1 (top-1 drops by use_rts)");
  wg = register_module("wg", std::make_shared<nn::Linear>(hidden, E, /*bias=*/false));
}

std::string TopKGate::repr() const {
  return str("TopKGate(hidden=", hidden_, ", experts=", cfg_.num_experts, ", k=", cfg_.k, ")");
}

int64_t TopKGate::capacity(int64_t num_tokens) const {
  const double f = is_training() ? cfg_.capacity_factor : cfg_.eval_capacity_factor;
  // k·S is exact, so an integral k·S·f/E is never pushed up by rounding.
  const double c = std::ceil(double(cfg_.k * num_tokens) * f / double(cfg_.num_experts));
  return std::max(int64_t(c), cfg_.min_capacity);
}

GateOutput TopKGate::route(const Tensor& x) {
  MOX_CHECK(x.dim() == 2 && x.size(1) == hidden_, "TopKGate: input ", describe(x),
            " must be (tokens, hidden=", hidden_, ")");
  MOX_CHECK(is_floating(x.dtype()), "TopKGate: input ", describe(x), " must be floating point");
  const DType ct = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor xin = x.to(ct);   // (S, hidden)
  if (cfg_.noisy_gate_policy == NoisyGatePolicy::jitter && is_training())
    xin = mul(xin, raw::uniform(xin.shape(), 1.0 - 1e-2, 1.0 + 1e-2, ct, xin.device(), gen_.get()));
  return route_logits(linear(xin, wg->weight.to(ct)));   // (S, E)
}

GateOutput TopKGate::route_logits(const Tensor& logits) {
  const int64_t E = cfg_.num_experts, k = cfg_.k;
  MOX_CHECK(logits.dim() == 2 && logits.size(1) == E, "TopKGate: logits ", describe(logits),
            " must be (tokens, num_experts=", E, ")");
  MOX_CHECK(logits.dtype() == DType::f32 || logits.dtype() == DType::f64, "TopKGate: logits ",
            describe(logits), " must be f32 or f64");
  const int64_t S = logits.size(0);
  MOX_CHECK(S > 0, "TopKGate: no tokens to route (logits ", describe(logits), ")");
  const bool training = is_training();
  // In eval (inference decodes one token at a time) C ≥ S simply means nothing is dropped.
  MOX_CHECK(!cfg_.drop_tokens || !training || S >= cfg_.min_capacity, "TopKGate: ", S,
            " tokens are fewer than min_capacity=", cfg_.min_capacity,
            ", so the capacity would exceed the batch; lower min_capacity or route more tokens");
  MOX_CHECK(raw::all_finite(logits), "TopKGate: the router logits ", describe(logits),
            " contain NaN or inf (diverged input or router weights); no routing is defined");
  const bool top2 = k == 2 && cfg_.drop_policy == DropPolicy::standard;   // GShard/DeepSpeed top-2
  const DropPolicy policy = k > 2 && cfg_.drop_policy == DropPolicy::standard ? DropPolicy::probs
                                                                              : cfg_.drop_policy;

  Tensor probs = softmax(logits, -1);   // (S, E)
  const std::vector<double> L = logits.to_vector<double>(), P = probs.to_vector<double>();
  auto argmax_row = [&](const std::vector<double>& v, int64_t s, int64_t skip) {
    int64_t best = -1;
    for (int64_t e = 0; e < E; ++e)
      if (e != skip && (best < 0 || v[size_t(s * E + e)] > v[size_t(s * E + best)])) best = e;
    return best;
  };
  auto gumbel_scores = [&]() {   // logits + Gumbel noise, (S, E)
    std::vector<double> g = raw::gumbel({S, E}, DType::f64, Device::cpu(), gen_.get()).to_vector<double>();
    for (size_t i = 0; i < g.size(); ++i) g[i] += L[i];
    return g;
  };

  // ---- choices: choice[s·k + r] is the r-th expert of token s ----
  std::vector<int64_t> choice(size_t(S * k));
  if (k == 1) {
    const bool noisy = cfg_.noisy_gate_policy == NoisyGatePolicy::rsample && training;
    const std::vector<double> score = noisy ? gumbel_scores() : P;
    for (int64_t s = 0; s < S; ++s) choice[size_t(s)] = argmax_row(score, s, -1);
  } else if (top2) {
    const bool sample = cfg_.top2_2nd_expert_sampling && training;
    const std::vector<double> score = sample ? gumbel_scores() : L;
    for (int64_t s = 0; s < S; ++s) {
      choice[size_t(2 * s)] = argmax_row(P, s, -1);
      choice[size_t(2 * s + 1)] = argmax_row(score, s, choice[size_t(2 * s)]);
    }
  } else {   // top-k by logit, ties to the lower expert index (as raw::topk)
    std::vector<int64_t> order(static_cast<size_t>(E));
    for (int64_t s = 0; s < S; ++s) {
      std::iota(order.begin(), order.end(), 0);
      const double* row = L.data() + s * E;
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      std::copy(order.begin(), order.begin() + k, choice.begin() + s * k);
    }
  }

  GateOutput out;
  out.exp_counts.assign(size_t(E), 0);
  for (int64_t c : choice) ++out.exp_counts[size_t(c)];
  out.capacity = cfg_.drop_tokens ? capacity(S)
                                  : *std::max_element(out.exp_counts.begin(), out.exp_counts.end());

  // ---- per-expert queues in arrival order, then the kept prefix/selection ----
  std::vector<std::vector<int64_t>> queue(static_cast<size_t>(E));   // tokens
  if (top2) {
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t s = 0; s < S; ++s) queue[size_t(choice[size_t(2 * s + r)])].push_back(s);
  } else {
    for (int64_t s = 0; s < S; ++s)
      for (int64_t r = 0; r < k; ++r) queue[size_t(choice[size_t(s * k + r)])].push_back(s);
  }
  std::vector<double> draw;   // RTS: one uniform per token, drawn on every training call when enabled
  const bool rts = k == 1 && cfg_.use_rts && cfg_.drop_tokens && training;   // eval: first-come
  if (rts) draw = raw::uniform({S}, 0.0, 1.0, DType::f64, Device::cpu(), gen_.get()).to_vector<double>();
  const int64_t C = out.capacity;
  std::vector<int64_t> tok, exp, slot, flat;
  out.kept_per_expert.assign(size_t(E), 0);
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t>& q = queue[size_t(e)];
    if (cfg_.drop_tokens && int64_t(q.size()) > C) {
      // Keep the C best by a score (larger first, ties to the earlier token), in token order.
      auto keep_best = [&](auto score) {
        std::stable_sort(q.begin(), q.end(), [&](int64_t a, int64_t b) { return score(a) > score(b); });
        q.resize(size_t(C));
        std::sort(q.begin(), q.end());
      };
      if (rts) keep_best([&](int64_t s) { return draw[size_t(s)]; });
      else if (k >= 2 && !top2 && policy == DropPolicy::probs)
        keep_best([&](int64_t s) { return P[size_t(s * E + e)]; });
      else q.resize(size_t(C));   // first-come: k=1 without RTS, top-2, position
    }
    for (size_t j = 0; j < q.size(); ++j) {
      tok.push_back(q[j]);
      exp.push_back(e);
      slot.push_back(int64_t(j));
      flat.push_back(q[j] * E + e);
    }
    out.kept_per_expert[size_t(e)] = int64_t(q.size());
  }
  const int64_t N = int64_t(tok.size());
  out.dropped = S * k - N;
  std::vector<bool> kept_token(size_t(S), false);
  for (int64_t s : tok) kept_token[size_t(s)] = true;
  out.dropped_tokens = std::count(kept_token.begin(), kept_token.end(), false);
  // Decisions are made on the host; the index lists live where the logits do.
  const Device dev = logits.device();
  out.token = from_vector<int64_t>(tok, {N}, dev);
  out.expert = from_vector<int64_t>(exp, {N}, dev);
  out.slot = from_vector<int64_t>(slot, {N}, dev);

  // ---- combine weights: the raw probability (k=1) or renormalised over the kept experts ----
  const DType dt = logits.dtype();
  Tensor p = index_select(probs.reshape({S * E}), 0, from_vector<int64_t>(flat, {N}, dev));   // (N)
  if (k == 1) {
    out.weight = p;
  } else {
    Tensor denom = index_add(zeros({S}, dt, dev), 0, out.token, p);   // (S)
    const double eps = dt == DType::f64 ? std::numeric_limits<double>::epsilon()
                                        : double(std::numeric_limits<float>::epsilon());
    out.weight = div(p, maximum(index_select(denom, 0, out.token), full({N}, eps, dt, dev)));
  }

  // ---- losses ----
  // ce_e: fraction of tokens whose first choice (k ≤ 2) or any choice (k > 2 and the top-k
  // path at k=2) is e, before dropping.
  std::vector<double> ce(size_t(E), 0.0);
  const bool first_only = k == 1 || top2;
  for (int64_t s = 0; s < S; ++s)
    for (int64_t r = 0; r < (first_only ? 1 : k); ++r) ce[size_t(choice[size_t(s * k + r)])] += 1.0;
  for (double& c : ce) c /= double(S);
  Tensor me = mean(probs, {0});   // (E)
  const double scale = first_only ? double(E) : double(E) / double(k);
  out.l_aux = mul(sum(mul(me, from_doubles(ce, {E}, dt, dev))), scale);
  Tensor z = mean(square(logsumexp(logits, 1)));   // ()
  out.z_loss_unscaled = z.item<double>();
  out.z_loss = mul(z, cfg_.z_loss_coef);
  double entropy = 0;
  for (double pe : P)
    if (pe > 0) entropy -= pe * std::log(pe);
  out.entropy = entropy / double(S);
  return out;
}

bool is_router(const nn::Module& m) { return dynamic_cast<const TopKGate*>(&m) != nullptr; }

}  // namespace mox::moe
