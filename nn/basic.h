// basic.h — stateless layers: activations, Flatten, Dropout.
#pragma once
#include "nn/module.h"

namespace mox::nn {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string repr() const override { return "ReLU()"; }
};

class GELU : public Module {
 public:
  explicit GELU(bool tanh_approximation = false) : tanh_approximation(tanh_approximation) {}
  Tensor forward(const Tensor& x) override { return gelu(x, tanh_approximation); }
  std::string repr() const override { return tanh_approximation ? "GELU(tanh)" : "GELU()"; }
  bool tanh_approximation;
};

class SiLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return silu(x); }
  std::string repr() const override { return "SiLU()"; }
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string repr() const override { return "Tanh()"; }
};

// Flattens dims start_dim..end_dim into one (default: everything but the batch dim).
class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1) : start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) override { return x.flatten(start_dim, end_dim); }
  std::string repr() const override { return str("Flatten(", start_dim, ", ", end_dim, ")"); }
  int64_t start_dim, end_dim;
};

// Inverted dropout in training mode, identity in eval mode. Draws from `gen` (the default
// generator when null), so a seeded run is reproducible.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr) : p(p), gen(gen) {
    MOX_CHECK(p >= 0 && p < 1, "Dropout: p=", p, " must be in [0, 1)");
  }
  Tensor forward(const Tensor& x) override { return dropout(x, p, is_training(), gen); }
  std::string repr() const override { return str("Dropout(p=", p, ")"); }
  double p;
  Generator* gen;
};

}  // namespace mox::nn
