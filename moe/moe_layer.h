// moe_layer.h — MoE: a TopKGate, Experts and (PR-MoE) a residual MLP, with index-based dispatch.
//
// forward_moe(x): x (..., hidden) is flattened to S tokens; the gate returns the kept
// (token, expert, slot, weight) assignments sorted by expert; each expert runs on its rows
// gathered with index_select, its output is scaled by the combine weights, and all rows are
// index_add-ed back into an (S, hidden) zero tensor. Every step is a differentiable op, so
// backward reaches the input, the expert weights and the router. A token none of whose
// assignments was kept contributes zero (as in DeepSpeed). With use_residual (PR-MoE):
// y = a0·MoE(x) + a1·MLP(x), [a0, a1] = softmax(Linear(hidden, 2)(x)).
//
// What it is not: no dense S×E×C tensors, no capacity padding (experts see only their kept
// rows), no expert parallelism yet — ep_size > 1 is an error until dist/ provides the
// process groups.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "moe/experts.h"
#include "moe/gate.h"

namespace mox::moe {

struct MoEConfig {
  GateConfig gate;            // num_experts, k, capacity factors, noise, drop policy, ...
  int64_t ep_size = 1;        // expert-parallel world size (only 1 until the distributed issue)
  bool use_residual = false;  // PR-MoE
};

struct MoEOutput {
  Tensor output;                     // the input's shape and dtype
  Tensor l_aux;                      // () load-balancing loss (gate's dtype)
  Tensor z_loss;                     // () router z-loss, already times z_loss_coef
  std::vector<int64_t> exp_counts;   // (E) assignments per expert before dropping; sums to S·k
  GateOutput routing;                // the full routing of this batch (capacity, drops, ...)
};

class MoE : public nn::Module {
 public:
  // `expert` builds one expert mapping (n, hidden) → (n, hidden); it is called
  // num_experts / ep_size times (+1 for the residual MLP). `gen` is the gate's generator
  // (RTS, Gumbel, jitter draws); null: the gate owns one seeded with cfg.gate.seed — give
  // each layer of a model its own seed, or share one generator, so that layers do not draw
  // the same numbers. Throws on invalid configurations.
  MoE(int64_t hidden, const ExpertFactory& expert, const MoEConfig& cfg,
      std::shared_ptr<Generator> gen = nullptr);

  MoEOutput forward_moe(const Tensor& x);
  // forward_moe(x).output (for Sequential); the rest of that call is kept in last().
  Tensor forward(const Tensor& x) override;
  const MoEOutput& last() const { return last_; }
  std::string repr() const override;

  const MoEConfig& config() const { return cfg_; }
  std::shared_ptr<TopKGate> gate;
  std::shared_ptr<Experts> experts;
  std::shared_ptr<nn::Module> mlp;           // residual MLP (use_residual only)
  std::shared_ptr<nn::Linear> coefficient;   // Linear(hidden, 2) (use_residual only)

 private:
  MoEConfig cfg_;
  int64_t hidden_;
  MoEOutput last_;
};

}  // namespace mox::moe
