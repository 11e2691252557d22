// mlp.cpp — see mlp.h.
#include "nn/mlp.h"

namespace mox::nn {

Mlp::Mlp(int64_t n_embd, int64_t hidden, bool bias, double dropout, Generator* gen)
    : n_embd(n_embd), hidden(hidden), dropout_p(dropout), gen_(gen) {
  MOX_CHECK(dropout >= 0 && dropout < 1, "Mlp: dropout=", dropout, " must be in [0, 1)");
  c_fc = register_module("c_fc", std::make_shared<Linear>(n_embd, hidden, bias, gen));
  c_proj = register_module("c_proj", std::make_shared<Linear>(hidden, n_embd, bias, gen));
}

Tensor Mlp::forward(const Tensor& x) {
  // The float c_fc's bias joins the GELU pass; a swapped-in c_fc (QuantizedLinear) runs whole.
  const auto* fc = dynamic_cast<const Linear*>(c_fc.get());
  Tensor h = fc ? bias_gelu(linear(x, fc->weight), fc->bias) : bias_gelu(c_fc->forward(x));   // (..., hidden)
  return dropout(c_proj->forward(h), dropout_p, is_training(), gen_);
}

std::shared_ptr<Module> Mlp::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  std::shared_ptr<Module> old = Module::replace_module(name, m);
  (name == "c_fc" ? c_fc : c_proj) = std::move(m);   // the only children
  return old;
}

std::string Mlp::repr() const {
  return str("Mlp(", n_embd, " → ", hidden, " → ", n_embd, dropout_p > 0 ? str(", dropout=", dropout_p) : std::string(),
             ")");
}

SwiGluMlp::SwiGluMlp(int64_t n_embd, int64_t hidden, bool bias, Generator* gen) : n_embd(n_embd), hidden(hidden) {
  w1 = register_module("w1", std::make_shared<Linear>(n_embd, hidden, bias, gen));
  w2 = register_module("w2", std::make_shared<Linear>(hidden, n_embd, bias, gen));
  w3 = register_module("w3", std::make_shared<Linear>(n_embd, hidden, bias, gen));
}

Tensor SwiGluMlp::forward(const Tensor& x) {
  return w2->forward(silu(w1->forward(x)) * w3->forward(x));   // (..., hidden) → (..., n_embd)
}

std::shared_ptr<Module> SwiGluMlp::replace_module(const std::string& name, std::shared_ptr<Module> m) {
  std::shared_ptr<Module> old = Module::replace_module(name, m);
  (name == "w1" ? w1 : name == "w2" ? w2 : w3) = std::move(m);   // the only children
  return old;
}

std::string SwiGluMlp::repr() const { return str("SwiGluMlp(", n_embd, " → ", hidden, " → ", n_embd, ")"); }

}  // namespace mox::nn
