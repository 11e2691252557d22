// attention.h — CausalSelfAttention (GPT-2 / nanoGPT, optionally with Llama's RoPE) and the
// KV cache it fills during generation.
//
// forward(x (B, T, C)) → (B, T, C): a fused projection "c_attn" (C → 3C) gives q, k, v,
// split into n_head heads of D = C / n_head; with rotary, RoPE turns q and k (positions
// start at 0, or at the cache's length); causal scaled-dot-product attention (one fused
// node, attention dropout inside; without rotary or cache the node takes the packed qkv,
// causal_self_attention_qkv, so its gradient is one buffer); heads merged; output projection "c_proj" (C → C);
// residual dropout. Parameters: c_attn.weight (3C, C), c_attn.bias (3C), c_proj.weight
// (C, C), c_proj.bias (C) — nanoGPT's names; the biases only with bias=true. Linears keep
// PyTorch's default initialisation: GPT-2's N(0, 0.02) (and the scaled c_proj) is the
// model's to apply. The projections are held as Modules (replace_module re-points them),
// so nn::quantize_linears can swap them for QuantizedLinear.
//
// forward(x, cache): generation. x holds the T new tokens at positions cache->length ..
// + T − 1; their keys and values are written into the cache (allocated on first use as
// (B, n_head, block_size, D) zeros, x's dtype and device), the queries attend to every
// cached key up to their own position, and cache->length grows by T. Exceeding block_size
// is an error. Keys and values of earlier calls are constants (no gradient reaches them).
// Not here: grouped-query attention, sliding windows, masks other than causal.
#pragma once
#include <memory>

#include "nn/linear.h"

namespace mox::nn {

// The keys and values one attention layer has seen so far; one cache per layer. Reset by
// setting length to 0 (the buffers are reused, or reallocated when the batch changes).
struct KVCache {
  Tensor k, v;          // (B, n_head, block_size, D); undefined until the first forward
  int64_t length = 0;   // positions filled
};

class CausalSelfAttention : public Module {
 public:
  // `gen` initialises the projections and draws the dropout masks (null: the default generator).
  CausalSelfAttention(int64_t n_embd, int64_t n_head, bool bias = true, double dropout = 0.0,
                      bool rotary = false, int64_t block_size = 1024, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;        // (B, T, C) → (B, T, C), causal
  Tensor forward(const Tensor& x, KVCache* cache);   // the same with a KV cache (null: none)
  std::string repr() const override;
  std::shared_ptr<Module> replace_module(const std::string& name, std::shared_ptr<Module> m) override;

  int64_t n_embd, n_head, block_size;
  double dropout_p;   // attention and residual dropout probability (training only)
  bool rotary;
  std::shared_ptr<Module> c_attn, c_proj;   // Linear(C, 3C), Linear(C, C)

 private:
  Generator* gen_;
};

}  // namespace mox::nn
