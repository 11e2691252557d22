// grouped_experts.h — the local experts of an MoE layer as grouped GEMMs, when their type allows.
//
// The generic path runs each expert module on its own rows: E GEMM chains, E graph nodes per
// Linear, an index_select and its backward (a zero-filled (S, M) gradient) per expert, a cat
// of the outputs, and E kernel launches on CUDA. When every local expert is a module
// recognised here, all of them run at once on the kept rows stacked in expert order: each
// Linear position becomes one grouped_linear over the experts' own weights and biases
// (parameters and gradients stay the experts' tensors), and the stateless row-wise modules
// between them run once over all rows. Recognised, by exact type (a subclass may compute
// something else; a QuantizedLinear swapped in by nn::quantize_linears is not a Linear):
//   nn::Linear
//   nn::Mlp with nn::Linear c_fc and c_proj: grouped c_fc (bias included) → GPT-2 GELU
//     (bias_gelu without a bias) → grouped c_proj → dropout
//   nn::Sequential of nn::Linear, nn::ReLU, nn::GELU, nn::SiLU, nn::Tanh and nn::Dropout
// with every expert the same in structure, activation settings and training mode, and at most
// one dropout (p and generator shared by all experts): one draw over all rows then gives each
// row the mask it gets when the experts run one after another, the generator's counters being
// consecutive. Results equal the generic path's up to rounding: bit for bit on the CPU for
// Linear and Sequential experts and an Mlp without bias, except the input's gradient (a token's k
// contributions are summed in another order); an Mlp's c_fc bias enters the GEMM's sum instead
// of the GELU pass, so an Mlp with bias agrees to rounding.
// What it is not: SwiGluMlp (two branches multiplied), quantized or arbitrary experts — those
// run per expert (moe_layer.cpp) — and no activation checkpointing (mox has none).
#pragma once
#include <functional>
#include <optional>
#include <vector>

#include "moe/experts.h"

namespace mox::moe {

class GroupedExperts {
 public:
  // The grouped form of `experts`, or nullopt when some expert is not recognised (see above).
  // Cheap (type checks on E modules); call it per forward, since experts may be swapped or
  // switched between train and eval at any time.
  static std::optional<GroupedExperts> recognise(const Experts& experts);

  // x (N, M) holds counts[i] rows of local expert i after those of expert i − 1 (Σ = N) →
  // (N, M') in the same order, differentiable w.r.t. x and every expert parameter.
  Tensor forward(const Tensor& x, const std::vector<int64_t>& counts) const;

 private:
  struct Step {
    std::vector<Tensor> weights, biases;            // a Linear position: expert i's weight (and bias)
    std::function<Tensor(const Tensor&)> rowwise;   // or a row-wise function over all rows
  };
  std::vector<Step> steps_;
};

}  // namespace mox::moe
