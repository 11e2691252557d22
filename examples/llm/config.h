// config.h — the architecture of mox-llm's decoder-only transformer, saved with every checkpoint.
//
// arch "gpt" (GPT-2 / nanoGPT): learned position embeddings, LayerNorm, GELU MLP of 4·C.
// arch "llama" (Llama / Mixtral): no position embedding but RoPE in attention, RMSNorm,
// SwiGLU MLP of hidden llama_hidden(C). Both tie the output head to the token embedding.
//
// MoE placement follows Megatron-DeepSpeed: with expert_interval n, the 1-based layers n,
// 2n, 3n, ... are MoE candidates; the i-th candidate gets num_experts[i] experts (a single
// value applies to all of them: one entry, or a pyramid list with one entry per candidate),
// and a candidate with 1 expert stays a dense MLP. Every MoE layer's expert is the arch's MLP.
//
// What it is not: training hyper-parameters (those live in the train options).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "moe/gate.h"

namespace mox::llm {

struct ModelConfig {
  static constexpr int64_t kMaxLayers = 4096;   // validate()'s bound on n_layer (GPT-3 has 96)
  std::string arch = "gpt";   // gpt | llama
  int64_t vocab_size = 0;
  int64_t n_layer = 4, n_head = 4, n_embd = 128, block_size = 64;
  double dropout = 0.0;
  bool bias = false;           // biases in Linears and LayerNorms (nanoGPT's option)
  // MoE (Megatron-DeepSpeed flags)
  std::vector<int64_t> num_experts{1};
  int64_t expert_interval = 2;
  bool use_residual = false;   // --mlp-type residual (PR-MoE)
  moe::GateConfig gate;        // k, capacity factors, min_capacity, noise, drop_tokens (num_experts set per layer)

  // Experts of each layer (1 = dense MLP), n_layer entries. Throws when a num_experts list
  // does not have one entry per MoE candidate layer.
  std::vector<int64_t> experts_per_layer() const;
  bool has_moe() const;
  // Throws mox::Error naming the field and the expected range.
  void validate() const;
  std::string to_json() const;
  static ModelConfig from_json(const std::string& text);   // errors name the key
};

// Llama's SwiGLU width for model width C: 2/3 of 4·C, rounded up to a multiple of 32.
int64_t llama_hidden(int64_t n_embd);

}  // namespace mox::llm
