// gate.h — TopKGate: the MoE router with DeepSpeed's TopKGate semantics, index-based output.
//
// The gate maps tokens x (S, hidden) to logits (S, E) with a bias-free router Linear computed
// in fp32 (f64 stays f64, for gradchecks), picks k experts per token, applies the capacity
// C = max(ceil(k·S/E·f), min_capacity) and reports the *kept* assignments as index lists
// (token, expert, slot, weight), sorted by (expert, slot). The weights are differentiable
// with respect to the logits, so the MoE layer's backward reaches the router through them and
// through l_aux. Routing rules, l_aux formulas and every deviation from DeepSpeed are in
// moe/README.md.
//
// What it is not: it builds no dense S×E×C dispatch/combine tensors, moves no tokens (that is
// moe_layer.h) and talks to no process group (expert parallelism is the distributed issue's).
// Routing decisions (argmax/top-k, capacity, drop order) are host loops over S·E values.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/linear.h"

namespace mox::moe {

// Noise on the routing decision, in training mode only (DeepSpeed's noisy_gate_policy).
enum class NoisyGatePolicy {
  none,
  jitter,    // the gate's copy of the input is multiplied by U[1-1e-2, 1+1e-2]
  rsample,   // top-1 selection on logits + Gumbel noise (k=1 only)
};

// Which routed tokens an over-full expert keeps.
enum class DropPolicy {
  standard,   // DeepSpeed TopKGate's rule for this k: k=1 first-come or RTS (use_rts);
              // k=2 second choices queue behind all first choices; k>2 as `probs`
  probs,      // k≥2: per expert, the C routed tokens with the highest router probability
  position,   // k≥2: per expert, the first C routed tokens in token order
};

// "none" | "jitter" | "rsample" (also DeepSpeed's spellings None, Jitter, RSample).
NoisyGatePolicy parse_noisy_gate_policy(const std::string& name);
DropPolicy parse_drop_policy(const std::string& name);   // "standard" | "probs" | "position"
const char* to_string(NoisyGatePolicy p);
const char* to_string(DropPolicy p);

struct GateConfig {
  int64_t num_experts = 1;               // E
  int64_t k = 1;                         // experts per token, 1 ≤ k ≤ E
  double capacity_factor = 1.0;          // f in training
  double eval_capacity_factor = 1.0;     // f in eval
  int64_t min_capacity = 4;              // lower bound of C (DeepSpeed's MoE default)
  NoisyGatePolicy noisy_gate_policy = NoisyGatePolicy::none;
  bool drop_tokens = true;               // false: dropless, C = the largest expert load
  bool use_rts = true;                   // k=1: random token selection when dropping
  bool top2_2nd_expert_sampling = true;  // k=2: Gumbel noise on the second choice (training)
  DropPolicy drop_policy = DropPolicy::standard;
  double z_loss_coef = 0.0;              // router z-loss coefficient (ST-MoE)
  uint64_t seed = 0;                     // seed of the gate's own generator
};

// The routing of one batch. N = number of kept assignments; entries sorted by (expert, slot).
struct GateOutput {
  Tensor token;    // (N) i64: the token of each kept assignment
  Tensor expert;   // (N) i64: its expert
  Tensor slot;     // (N) i64: its position in the expert's buffer, 0 ≤ slot < capacity
  Tensor weight;   // (N) combine weight, logits' dtype, differentiable w.r.t. the logits
  std::vector<int64_t> kept_per_expert;   // (E) kept assignments per expert (sums to N)
  std::vector<int64_t> exp_counts;        // (E) routed assignments per expert, before dropping
  Tensor l_aux;    // () load-balancing loss, differentiable
  Tensor z_loss;   // () z_loss_coef · mean_s logsumexp(logits_s)², differentiable
  double z_loss_unscaled = 0;   // mean_s logsumexp(logits_s)², for routing statistics
  double entropy = 0;           // mean_s −Σ_e p log p (nats): ln E = uniform router, 0 = one-hot
  int64_t capacity = 0;         // C used for this batch
  int64_t dropped = 0;          // dropped assignments (S·k − N)
  int64_t dropped_tokens = 0;   // tokens none of whose assignments was kept
};

class TopKGate : public nn::Module {
 public:
  // `gen` null: the gate owns a Generator seeded with cfg.seed. Throws mox::Error naming the
  // values of an invalid configuration.
  TopKGate(int64_t hidden, const GateConfig& cfg, std::shared_ptr<Generator> gen = nullptr);

  // x (S, hidden) → routing. The router runs in fp32 (f64 when x is f64).
  GateOutput route(const Tensor& x);
  // The same from precomputed logits (S, E), f32 or f64: what route() does after the router.
  GateOutput route_logits(const Tensor& logits);
  // C for S tokens in the current mode (training: capacity_factor, eval: eval_capacity_factor).
  int64_t capacity(int64_t num_tokens) const;

  const GateConfig& config() const { return cfg_; }
  Generator& generator() { return *gen_; }
  std::string repr() const override;

  std::shared_ptr<nn::Linear> wg;   // router: Linear(hidden, E, bias=false)

 private:
  GateConfig cfg_;
  int64_t hidden_;
  std::shared_ptr<Generator> gen_;
};

// True for a TopKGate: the modules mixed-precision training keeps in fp32 (DeepSpeed's fp32
// router), for optim::MixedPrecision's keep_f32.
bool is_router(const nn::Module& m);

}  // namespace mox::moe
