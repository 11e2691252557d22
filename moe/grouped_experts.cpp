// grouped_experts.cpp — recognising Linear / Mlp / Sequential experts and running them as
// grouped_linear steps (see grouped_experts.h).
#include "moe/grouped_experts.h"

#include <typeinfo>

#include "nn/basic.h"
#include "nn/container.h"
#include "nn/mlp.h"

namespace mox::moe {

namespace {
template <typename T> T* exactly(nn::Module& m) { return typeid(m) == typeid(T) ? static_cast<T*>(&m) : nullptr; }
template <typename T> const T* exactly(const nn::Module& m) {
  return typeid(m) == typeid(T) ? static_cast<const T*>(&m) : nullptr;
}

bool is_rowwise(const nn::Module& m) {
  return exactly<nn::ReLU>(m) || exactly<nn::GELU>(m) || exactly<nn::SiLU>(m) || exactly<nn::Tanh>(m) ||
         exactly<nn::Dropout>(m);
}

// What one expert computes, as a list of positions: a Linear, or a row-wise module.
struct Layout {
  std::vector<const nn::Linear*> linears;   // per position; null at a row-wise position
  std::vector<nn::Module*> rowwise;         // per position; null at a Linear position
  const nn::Mlp* mlp = nullptr;             // an Mlp: positions c_fc, c_proj, GELU/dropout implied
};

std::optional<Layout> layout_of(nn::Module& m) {
  Layout l;
  if (const auto* lin = exactly<nn::Linear>(m)) {
    l.linears = {lin};
    l.rowwise = {nullptr};
    return l;
  }
  if (const auto* mlp = exactly<nn::Mlp>(m)) {
    const auto* fc = exactly<nn::Linear>(*mlp->c_fc);
    const auto* proj = exactly<nn::Linear>(*mlp->c_proj);
    if (!fc || !proj) return std::nullopt;
    l.linears = {fc, proj};
    l.rowwise = {nullptr, nullptr};
    l.mlp = mlp;
    return l;
  }
  if (const auto* seq = exactly<nn::Sequential>(m)) {
    int dropouts = 0;
    for (size_t i = 0; i < seq->size(); ++i) {
      nn::Module& c = (*seq)[i];
      if (const auto* lin = exactly<nn::Linear>(c)) {
        l.linears.push_back(lin);
        l.rowwise.push_back(nullptr);
      } else if (is_rowwise(c)) {
        dropouts += exactly<nn::Dropout>(c) != nullptr;
        l.linears.push_back(nullptr);
        l.rowwise.push_back(&c);
      } else {
        return std::nullopt;
      }
    }
    if (dropouts <= 1) return l;
  }
  return std::nullopt;
}

// Row-wise modules of two experts compute the same function: same type and settings (repr),
// same mode, and a dropout draws from the same generator.
bool same_rowwise(const nn::Module& a, const nn::Module& b) {
  if (typeid(a) != typeid(b) || a.repr() != b.repr() || a.is_training() != b.is_training()) return false;
  const auto* da = exactly<nn::Dropout>(a);
  return !da || da->gen == static_cast<const nn::Dropout&>(b).gen;
}

bool same_mlp(const nn::Mlp& a, const nn::Mlp& b) {
  return a.dropout_p == b.dropout_p && a.generator() == b.generator() && a.is_training() == b.is_training();
}
}  // namespace

std::optional<GroupedExperts> GroupedExperts::recognise(const Experts& experts) {
  std::vector<Layout> layouts;
  for (int64_t i = 0; i < experts.size(); ++i) {
    std::optional<Layout> l = layout_of(experts[i]);
    if (!l) return std::nullopt;
    const Layout& first = layouts.empty() ? *l : layouts[0];
    if (l->linears.size() != first.linears.size() || bool(l->mlp) != bool(first.mlp)) return std::nullopt;
    if (l->mlp && !same_mlp(*l->mlp, *first.mlp)) return std::nullopt;
    for (size_t p = 0; p < l->linears.size(); ++p) {
      if (bool(l->linears[p]) != bool(first.linears[p])) return std::nullopt;
      if (l->linears[p] && l->linears[p]->bias.defined() != first.linears[p]->bias.defined()) return std::nullopt;
      if (l->rowwise[p] && !same_rowwise(*l->rowwise[p], *first.rowwise[p])) return std::nullopt;
    }
    layouts.push_back(std::move(*l));
  }

  GroupedExperts out;
  const Layout& first = layouts[0];
  for (size_t p = 0; p < first.linears.size(); ++p) {
    Step s;
    if (first.linears[p]) {
      for (const Layout& l : layouts) {
        s.weights.push_back(l.linears[p]->weight);
        if (l.linears[p]->bias.defined()) s.biases.push_back(l.linears[p]->bias);
      }
    } else {
      nn::Module* m = first.rowwise[p];   // stateless: the same function for every expert
      s.rowwise = [m](const Tensor& h) { return m->forward(h); };
    }
    out.steps_.push_back(std::move(s));
    if (first.mlp && p == 0) {   // Mlp: GPT-2's GELU between c_fc and c_proj
      Step gelu;
      gelu.rowwise = [](const Tensor& h) { return bias_gelu(h); };
      out.steps_.push_back(std::move(gelu));
    }
  }
  if (first.mlp && first.mlp->dropout_p > 0) {
    Step drop;
    drop.rowwise = [p = first.mlp->dropout_p, training = first.mlp->is_training(),
                    gen = first.mlp->generator()](const Tensor& h) { return dropout(h, p, training, gen); };
    out.steps_.push_back(std::move(drop));
  }
  return out;
}

Tensor GroupedExperts::forward(const Tensor& x, const std::vector<int64_t>& counts) const {
  Tensor h = x;   // (N, M)
  for (const Step& s : steps_) h = s.rowwise ? s.rowwise(h) : grouped_linear(h, counts, s.weights, s.biases);
  return h;
}

}  // namespace mox::moe
