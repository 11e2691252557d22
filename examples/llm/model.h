// model.h — mox-llm's decoder-only transformer: GPT-2 (nanoGPT) or Llama/Mixtral style, with
// MoE MLPs where the config puts them.
//
// forward(idx (B, T) i64) → logits (B, T, V). Blocks are pre-norm:
//   x = x + attn(norm_1(x));  x = x + mlp_or_moe(norm_2(x))
// gpt: wte + wpe, LayerNorm, GELU Mlp(C, 4C); llama: wte only, RMSNorm, RoPE, SwiGluMlp.
// The head lm_head shares wte's weight (weight tying). Initialisation is nanoGPT's:
// Linear weights and embeddings N(0, 0.02), the residual projections (attn.c_proj,
// mlp.c_proj / w2) N(0, 0.02/√(2·n_layer)), biases 0, norm scales 1; the experts of an MoE
// layer start as copies of one such MLP (DeepSpeed deep-copies the expert). The router
// weights keep their PyTorch-default init.
//
// Devices: the model runs where Module::to(device) put it; idx must be there too (the position
// ids and the KV caches follow idx / the keys). MoE layers run there too: moe::TopKGate makes
// its routing decisions on the host and puts the index lists on the logits' device.
//
// Generation: forward(idx, caches) with one nn::KVCache per layer; positions continue from
// the caches' length. After a forward, moe_layers() give each MoE layer's last() routing
// and aux_loss() sums their l_aux (and z-loss).
//
// Expert parallelism (ep_size p > 1, after dist::init()): each MoE layer holds E/p of its
// experts on this rank (moe::MoE). Initialisation draws from `gen` exactly as the one-process
// model does — the experts held elsewhere are built and discarded — so every parameter a rank
// holds starts with its value in the p = 1 model of the same seed.
//
// What it is not: a training loop (train.cpp), a sampler (generate.cpp).
#pragma once
#include <memory>
#include <vector>

#include "examples/llm/config.h"
#include "moe/moe_layer.h"
#include "nn/attention.h"
#include "nn/container.h"
#include "nn/embedding.h"

namespace mox::llm {

class Block : public nn::Module {
 public:
  Block(const ModelConfig& cfg, int64_t num_experts, std::shared_ptr<Generator> gen, int64_t ep_size = 1);
  Tensor forward(const Tensor& x) override { return forward(x, nullptr); }
  Tensor forward(const Tensor& x, nn::KVCache* cache);   // (B, T, C) → (B, T, C)
  std::string repr() const override { return moe ? "Block(MoE)" : "Block"; }

  std::shared_ptr<nn::Module> norm_1, norm_2;
  std::shared_ptr<nn::CausalSelfAttention> attn;
  std::shared_ptr<nn::Module> mlp;   // dense MLP, or null when moe is set
  std::shared_ptr<moe::MoE> moe;

 private:
  std::shared_ptr<Generator> gen_;
};

class Transformer : public nn::Module {
 public:
  // gen: initialisation now, then dropout masks and the gates' draws (RTS, noise) in training.
  // ep_size: expert-parallel size of the MoE layers (not part of the config: a run setting).
  Transformer(const ModelConfig& cfg, std::shared_ptr<Generator> gen, int64_t ep_size = 1);
  Tensor forward(const Tensor& idx) override { return forward(idx, nullptr); }
  // idx (B, T) i64 → logits (B, T, V). caches: n_layer caches, or null for a plain forward.
  Tensor forward(const Tensor& idx, std::vector<nn::KVCache>* caches);
  std::string repr() const override;
  std::shared_ptr<nn::Module> replace_module(const std::string& name, std::shared_ptr<nn::Module> m) override;

  const ModelConfig& config() const { return cfg_; }
  std::vector<const moe::MoE*> moe_layers() const;
  // Σ over MoE layers of l_aux and z-loss of the last forward; a () zero when there is none.
  Tensor aux_loss(double moe_loss_coeff) const;
  Generator& generator() { return *gen_; }

  std::shared_ptr<nn::Embedding> wte, wpe;   // wpe: gpt only
  std::shared_ptr<nn::ModuleList> h;
  std::shared_ptr<nn::Module> ln_f;
  std::shared_ptr<nn::Module> lm_head;       // Linear sharing wte.weight (a QuantizedLinear after quantize)

 private:
  ModelConfig cfg_;
  std::shared_ptr<Generator> gen_;
};

}  // namespace mox::llm
