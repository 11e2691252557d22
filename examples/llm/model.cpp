// model.cpp — Block and Transformer (see model.h).
#include "examples/llm/model.h"

#include <cmath>

#include "autograd/functions.h"
#include "nn/init.h"
#include "nn/linear.h"
#include "nn/mlp.h"
#include "nn/norm.h"

namespace mox::llm {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// nanoGPT's _init_weights for the Linears of `m`: weights N(0, 0.02), the residual
// projections N(0, 0.02/√(2·n_layer)), biases 0.
void init_linears(nn::Module& m, const ModelConfig& cfg, Generator& gen) {
  const double proj_std = 0.02 / std::sqrt(2.0 * double(cfg.n_layer));
  for (auto& [name, p] : m.named_parameters()) {
    if (p.dim() == 2) nn::init::normal_(p, 0.0, ends_with(name, "c_proj.weight") || ends_with(name, "w2.weight") ? proj_std : 0.02, &gen);
    else if (ends_with(name, "bias")) nn::init::zeros_(p);
  }
}

std::shared_ptr<nn::Module> make_norm(const ModelConfig& cfg) {
  if (cfg.arch == "llama") return std::make_shared<nn::RMSNorm>(cfg.n_embd);
  return std::make_shared<nn::LayerNorm>(cfg.n_embd, 1e-5, cfg.bias);
}

std::shared_ptr<nn::Module> make_mlp(const ModelConfig& cfg, Generator& gen) {
  std::shared_ptr<nn::Module> m;
  if (cfg.arch == "llama") m = std::make_shared<nn::SwiGluMlp>(cfg.n_embd, llama_hidden(cfg.n_embd), cfg.bias, &gen);
  else m = std::make_shared<nn::Mlp>(cfg.n_embd, 4 * cfg.n_embd, cfg.bias, cfg.dropout, &gen);
  init_linears(*m, cfg, gen);
  return m;
}

}  // namespace

Block::Block(const ModelConfig& cfg, int64_t num_experts, std::shared_ptr<Generator> gen, int64_t ep_size)
    : gen_(std::move(gen)) {
  norm_1 = register_module("norm_1", make_norm(cfg));
  attn = register_module("attn", std::make_shared<nn::CausalSelfAttention>(
                                     cfg.n_embd, cfg.n_head, cfg.bias, cfg.dropout, cfg.arch == "llama",
                                     cfg.block_size, gen_.get()));
  init_linears(*attn, cfg, *gen_);
  norm_2 = register_module("norm_2", make_norm(cfg));
  if (num_experts <= 1) {
    mlp = register_module("mlp", make_mlp(cfg, *gen_));
    return;
  }
  moe::MoEConfig mc;
  mc.gate = cfg.gate;
  mc.gate.num_experts = num_experts;
  mc.use_residual = cfg.use_residual;
  mc.ep_size = ep_size;
  Generator* g = gen_.get();
  // moe::MoE calls the factory once per local expert (E / ep_size), then once for the PR-MoE
  // residual MLP. After the last local expert, the experts held by other ranks are built and
  // discarded so that the generator advances as with all E experts here: the rest of the model
  // (later blocks, the residual MLP) then starts as in the one-process model.
  const int64_t local = ep_size >= 1 && num_experts % ep_size == 0 ? num_experts / ep_size : num_experts;
  int64_t calls = 0;
  auto expert = [&cfg, g, &calls, local, num_experts] {
    std::shared_ptr<nn::Module> m = make_mlp(cfg, *g);
    if (++calls == local)
      for (int64_t e = local; e < num_experts; ++e) make_mlp(cfg, *g);
    return m;
  };
  moe = register_module("moe", std::make_shared<moe::MoE>(cfg.n_embd, expert, mc, gen_));
}

Tensor Block::forward(const Tensor& x, nn::KVCache* cache) {   // x (B, T, C)
  Tensor h = x + attn->forward(norm_1->forward(x), cache);
  Tensor n = norm_2->forward(h);
  return h + (moe ? moe->forward(n) : mlp->forward(n));
}

Transformer::Transformer(const ModelConfig& cfg, std::shared_ptr<Generator> gen, int64_t ep_size)
    : cfg_(cfg), gen_(std::move(gen)) {
  cfg_.validate();
  wte = register_module("wte", std::make_shared<nn::Embedding>(cfg.vocab_size, cfg.n_embd, gen_.get()));
  if (cfg.arch == "gpt") wpe = register_module("wpe", std::make_shared<nn::Embedding>(cfg.block_size, cfg.n_embd, gen_.get()));
  h = register_module("h", std::make_shared<nn::ModuleList>());
  for (int64_t experts : cfg_.experts_per_layer()) h->push_back(std::make_shared<Block>(cfg_, experts, gen_, ep_size));
  ln_f = register_module("ln_f", make_norm(cfg_));
  lm_head = register_module("lm_head", std::make_shared<nn::Linear>(wte->weight, /*bias=*/false));
}

std::shared_ptr<nn::Module> Transformer::replace_module(const std::string& name, std::shared_ptr<nn::Module> m) {
  auto old = nn::Module::replace_module(name, m);
  if (name == "lm_head") lm_head = m;
  return old;
}

std::string Transformer::repr() const {
  return str("Transformer(", cfg_.arch, ", layers=", cfg_.n_layer, ", heads=", cfg_.n_head, ", embd=", cfg_.n_embd,
             ", block=", cfg_.block_size, ", vocab=", cfg_.vocab_size, cfg_.has_moe() ? ", MoE" : "", ")");
}

Tensor Transformer::forward(const Tensor& idx, std::vector<nn::KVCache>* caches) {   // idx (B, T)
  MOX_CHECK(idx.dim() == 2, "Transformer: token ids ", describe(idx), " must be (batch, time)");
  const int64_t T = idx.size(1);
  const int64_t start = caches ? (*caches)[0].length : 0;
  MOX_CHECK(!caches || int64_t(caches->size()) == cfg_.n_layer, "Transformer: ", caches ? caches->size() : 0,
            " KV caches given for ", cfg_.n_layer, " layers");
  MOX_CHECK(start + T <= cfg_.block_size, "Transformer: positions ", start, "..", start + T - 1,
            " exceed block_size ", cfg_.block_size, " (crop the context)");
  Tensor x = wte->forward(idx);   // (B, T, C)
  if (wpe) {
    std::vector<int64_t> pos(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = start + t;
    x = x + wpe->forward(from_vector<int64_t>(pos, {T}, idx.device()));   // (T, C) broadcast over B
  }
  x = dropout(x, cfg_.dropout, is_training(), gen_.get());
  for (int64_t l = 0; l < cfg_.n_layer; ++l)
    x = static_cast<Block&>((*h)[size_t(l)]).forward(x, caches ? &(*caches)[size_t(l)] : nullptr);
  return lm_head->forward(ln_f->forward(x));   // (B, T, V)
}

std::vector<const moe::MoE*> Transformer::moe_layers() const {
  std::vector<const moe::MoE*> out;
  for (size_t l = 0; l < h->size(); ++l)
    if (auto& b = static_cast<const Block&>((*h)[l]); b.moe) out.push_back(b.moe.get());
  return out;
}

Tensor Transformer::aux_loss(double moe_loss_coeff) const {
  // In the routers' dtype (moe::TopKGate computes l_aux and z-loss in f32, f64 for an f64
  // model), also when the rest of the model is f16/bf16; on the model's device.
  const DType dt = wte->weight.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor total = zeros({}, dt, wte->weight.device());
  for (const moe::MoE* m : moe_layers()) total = total + m->last().l_aux * moe_loss_coeff + m->last().z_loss;
  return total;
}

}  // namespace mox::llm
