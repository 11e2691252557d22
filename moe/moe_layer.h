// moe_layer.h — MoE: a TopKGate, Experts and (PR-MoE) a residual MLP, with index-based dispatch.
//
// forward_moe(x): x (..., hidden) is flattened to S tokens; the gate returns the kept
// (token, expert, slot, weight) assignments sorted by expert; each expert runs on its rows
// gathered with index_select, its output is scaled by the combine weights, and all rows are
// index_add-ed back into an (S, hidden) zero tensor. Experts of a recognised type (Linear, Mlp,
// Sequential of Linears and activations; grouped_experts.h) run together instead: one
// index_select of all kept rows, then one grouped GEMM per Linear position. Every step is a differentiable op, so
// backward reaches the input, the expert weights and the router. A token none of whose
// assignments was kept contributes zero (as in DeepSpeed). With use_residual (PR-MoE):
// y = a0·MoE(x) + a1·MLP(x), [a0, a1] = softmax(Linear(hidden, 2)(x)).
//
// Expert parallelism (ep_size = p > 1): the E experts are spread over the p ranks of this
// rank's expert-parallel group (dist/groups.h), E/p each, rank q holding global experts
// [q·E/p, (q+1)·E/p). Each rank routes its own tokens (capacity from its own S, as in
// DeepSpeed), then the kept rows travel to their expert's rank in one all_to_all whose split
// sizes are the exact kept counts (exchanged first), the local experts run, and a second
// all_to_all brings the results back; backward mirrors both. Ranks may hold different token
// counts. Expert weights then receive the gradient of every token of the group routed to them.
//
// What it is not: no dense S×E×C tensors and no capacity padding, in any mode — experts see
// only their kept rows, and the all_to_all sends only those (DeepSpeed pads every expert to C).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/process_group.h"
#include "moe/experts.h"
#include "moe/gate.h"

namespace mox::moe {

struct MoEConfig {
  GateConfig gate;            // num_experts, k, capacity factors, noise, drop policy, ...
  int64_t ep_size = 1;        // expert-parallel size p: experts spread over p ranks (needs dist::init())
  bool use_residual = false;  // PR-MoE
  // Run recognised experts (Linear, Mlp, Sequential of Linears and activations: grouped_experts.h)
  // as grouped GEMMs over all their rows at once; false: always each expert module on its rows
  // (the reference the tests and `mox-workloads moe_layer --per-expert` compare against).
  bool grouped_gemm = true;
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
  // num_experts / ep_size times (+1 for the residual MLP). ep_size > 1 builds the expert
  // groups, a collective: every rank of the world must build its MoE layers in the same order. `gen` is the gate's generator
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
  // Global id of local expert i (ep_rank · E/p + i).
  int64_t global_expert_id(int64_t local) const { return first_expert_ + local; }
  std::shared_ptr<TopKGate> gate;
  std::shared_ptr<Experts> experts;
  std::shared_ptr<nn::Module> mlp;           // residual MLP (use_residual only)
  std::shared_ptr<nn::Linear> coefficient;   // Linear(hidden, 2) (use_residual only)

 private:
  // Runs local expert i on the counts[i] rows of x listed in rows (Σ counts, i64) after those of
  // expert i − 1; returns their outputs in that order (Σ counts, hidden). Grouped when the
  // experts allow it (grouped_experts.h), else module by module.
  Tensor run_local_experts(const Tensor& x, const Tensor& rows, const std::vector<int64_t>& counts);
  // The expert outputs (N, hidden) of the kept assignments, in g's (expert, slot) order:
  // from the tokens xs (S, hidden) when this process holds every expert, or from the kept
  // rows xin (N, hidden) exchanged over the expert-parallel group.
  Tensor experts_forward(const Tensor& xs, const GateOutput& g);
  Tensor experts_forward_parallel(const Tensor& xin, const GateOutput& g);

  MoEConfig cfg_;
  int64_t hidden_;
  int64_t first_expert_ = 0;                    // global id of local expert 0
  std::shared_ptr<dist::ProcessGroup> ep_group_;   // expert-parallel group (ep_size > 1)
  MoEOutput last_;
};

}  // namespace mox::moe
