// attention.cpp — see attention.h.
#include "nn/attention.h"

#include <utility>

namespace mox::nn {

namespace {
// Writes k, v (B, H, T, D) into the cache at positions cache.length .. + T − 1 and returns
// every cached key and value (B, H, length + T, D); the new ones keep their graph.
std::pair<Tensor, Tensor> append_to_cache(KVCache& cache, const Tensor& k, const Tensor& v, int64_t block_size) {
  const int64_t T = k.size(2), start = cache.length;
  const Shape full{k.size(0), k.size(1), block_size, k.size(3)};
  auto fits = [&](const Tensor& buf) {
    return buf.defined() && buf.shape() == full && buf.dtype() == k.dtype() && buf.device() == k.device();
  };
  if (start == 0 && !(fits(cache.k) && fits(cache.v))) {
    cache.k = zeros(full, k.dtype(), k.device());
    cache.v = zeros(full, k.dtype(), k.device());
  }
  MOX_CHECK(fits(cache.k) && fits(cache.v), "CausalSelfAttention: the KV cache holds ",
            cache.k.defined() ? describe(cache.k) : std::string("no tensors"), " with length ", start,
            " but this input needs ", full, " ", k.dtype(), " on ", k.device(),
            " (use one cache per layer; set length to 0 to start a new batch)");
  raw::copy_(raw::narrow(cache.k, 2, start, T), k);
  raw::copy_(raw::narrow(cache.v, 2, start, T), v);
  cache.length = start + T;
  auto all = [&](const Tensor& buf, const Tensor& fresh) {
    if (!autograd::needs_grad(fresh)) return raw::narrow(buf, 2, 0, start + T);
    return start == 0 ? fresh : cat({raw::narrow(buf, 2, 0, start), fresh}, 2);
  };
  return {all(cache.k, k), all(cache.v, v)};
}
}  // namespace

CausalSelfAttention::CausalSelfAttention(int64_t n_embd, int64_t n_head, bool bias, double dropout, bool rotary,
                                         int64_t block_size, Generator* gen)
    : n_embd(n_embd), n_head(n_head), block_size(block_size), dropout_p(dropout), rotary(rotary), gen_(gen) {
  MOX_CHECK(n_embd > 0 && n_head > 0 && n_embd % n_head == 0, "CausalSelfAttention: n_embd=", n_embd,
            " must be a positive multiple of n_head=", n_head);
  MOX_CHECK(!rotary || (n_embd / n_head) % 2 == 0, "CausalSelfAttention: rotary embedding needs an even head dim, ",
            "got n_embd / n_head = ", n_embd, " / ", n_head, " = ", n_embd / n_head);
  MOX_CHECK(block_size > 0, "CausalSelfAttention: block_size=", block_size, " must be positive");
  MOX_CHECK(dropout >= 0 && dropout < 1, "CausalSelfAttention: dropout=", dropout, " must be in [0, 1)");
  c_attn = register_module("c_attn", std::make_shared<Linear>(n_embd, 3 * n_embd, bias, gen));
  c_proj = register_module("c_proj", std::make_shared<Linear>(n_embd, n_embd, bias, gen));
}

Tensor CausalSelfAttention::forward(const Tensor& x) { return forward(x, nullptr); }

Tensor CausalSelfAttention::forward(const Tensor& x, KVCache* cache) {
  MOX_CHECK(x.dim() == 3 && x.size(1) > 0 && x.size(2) == n_embd, "CausalSelfAttention: input ", describe(x),
            " must be (B, T, ", n_embd, ") with T ≥ 1");
  const int64_t B = x.size(0), T = x.size(1), C = n_embd, H = n_head, D = C / H;
  const int64_t start = cache ? cache->length : 0;
  MOX_CHECK(start + T <= block_size, "CausalSelfAttention: ", T, " positions", cache ? str(" after the ", start,
            " in the KV cache") : std::string(), " exceed block_size=", block_size,
            cache ? " (start a new cache by setting its length to 0, or crop the context)" : "");
  Tensor qkv = c_attn->forward(x);   // (B, T, 3C)
  const double p = is_training() ? dropout_p : 0.0;
  Tensor y;   // (B, H, T, D)
  if (!rotary && !cache) {
    y = causal_self_attention_qkv(qkv, H, std::nullopt, p, gen_);   // one node: one (B, T, 3C) gradient
  } else {
    auto head_view = [&](int64_t i) { return qkv.narrow(2, i * C, C).view({B, T, H, D}).transpose(1, 2); };
    Tensor q = head_view(0), k = head_view(1), v = head_view(2);   // (B, H, T, D)
    if (rotary) {
      q = apply_rotary(q, start);
      k = apply_rotary(k, start);
    }
    if (cache) std::tie(k, v) = append_to_cache(*cache, k, v, block_size);   // (B, H, start + T, D)
    y = scaled_dot_product_attention(q, k, v, /*causal=*/true, std::nullopt, p, gen_);
  }
  y = y.transpose(1, 2).reshape({B, T, C});   // (B, T, C)
  return mox::dropout(c_proj->forward(y), dropout_p, is_training(), gen_);
}

std::shared_ptr<Module> CausalSelfAttention::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  std::shared_ptr<Module> old = Module::replace_module(name, m);
  (name == "c_attn" ? c_attn : c_proj) = std::move(m);   // the only children
  return old;
}

std::string CausalSelfAttention::repr() const {
  return str("CausalSelfAttention(n_embd=", n_embd, ", n_head=", n_head, ", block_size=", block_size,
             rotary ? ", rotary" : "", dropout_p > 0 ? str(", dropout=", dropout_p) : std::string(), ")");
}

}  // namespace mox::nn
