// mlp.h — the feed-forward blocks of a transformer: Mlp (GPT-2) and SwiGluMlp (Llama).
//
// Mlp(n_embd, hidden, bias, dropout): c_fc (n_embd → hidden), GELU with the tanh
// approximation (GPT-2's "gelu_new", PyTorch's approximate="tanh"; c_fc's bias is added
// inside the fused bias_gelu), c_proj (hidden → n_embd), dropout in training.
// SwiGluMlp(n_embd, hidden, bias): w2(silu(w1·x) ⊙ w3·x) with w1, w3 (n_embd → hidden) and
// w2 (hidden → n_embd), Llama's names, no dropout; the caller picks hidden (Llama: a
// multiple of 256 near 8/3·n_embd). Both map (..., n_embd) → (..., n_embd), so either
// serves as an expert of moe::MoE:
//   moe::MoE(C, [&] { return std::make_shared<nn::SwiGluMlp>(C, 4 * C); }, cfg)
// Linears keep PyTorch's default initialisation (see attention.h) and are held as Modules
// (replace_module re-points them), so nn::quantize_linears can swap them.
#pragma once
#include <memory>

#include "nn/linear.h"

namespace mox::nn {

class Mlp : public Module {
 public:
  // `gen` initialises the Linears and draws the dropout masks (null: the default generator).
  Mlp(int64_t n_embd, int64_t hidden, bool bias = true, double dropout = 0.0, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;   // (..., n_embd) → (..., n_embd)
  std::string repr() const override;
  std::shared_ptr<Module> replace_module(const std::string& name, std::shared_ptr<Module> m) override;

  int64_t n_embd, hidden;
  double dropout_p;
  std::shared_ptr<Module> c_fc, c_proj;   // Linear(n_embd, hidden), Linear(hidden, n_embd)
  Generator* generator() const { return gen_; }   // the dropout masks' (null: the default generator)

 private:
  Generator* gen_;
};

class SwiGluMlp : public Module {
 public:
  SwiGluMlp(int64_t n_embd, int64_t hidden, bool bias = false, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;   // (..., n_embd) → (..., n_embd)
  std::string repr() const override;
  std::shared_ptr<Module> replace_module(const std::string& name, std::shared_ptr<Module> m) override;

  int64_t n_embd, hidden;
  std::shared_ptr<Module> w1, w2, w3;   // Linear(n_embd, hidden), Linear(hidden, n_embd), Linear(n_embd, hidden)
};

}  // namespace mox::nn
