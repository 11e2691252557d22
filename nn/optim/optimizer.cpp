// optimizer.cpp — the Optimizer base: group checks, the step loop, zero_grad, state save/load.
#include "nn/optim/optimizer.h"

#include "nn/optim/state_text.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <unordered_set>

namespace mox::optim {


ParamGroup make_group(const std::string& name, const NamedTensors& params) {
  ParamGroup g;
  g.name = name;
  for (const auto& [pname, t] : params) {
    g.param_names.push_back(pname);
    g.params.push_back(t);
  }
  return g;
}

void check_lr(const ParamGroup& group) {
  MOX_CHECK(std::isfinite(group.lr) && group.lr >= 0, "optimizer group '", group.name,
            "': lr must be a finite value >= 0, got ", group.lr);
}

void check_non_negative(const ParamGroup& group, const char* field, double value) {
  MOX_CHECK(std::isfinite(value) && value >= 0, "optimizer group '", group.name, "': ", field,
            " must be a finite value >= 0, got ", value);
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  MOX_CHECK(!groups_.empty(), "optimizer: no parameter groups given");
  std::set<std::string> group_names;
  std::unordered_set<const TensorImpl*> seen;
  for (ParamGroup& g : groups_) {
    MOX_CHECK(!g.name.empty() && g.name.find('.') == std::string::npos,
              "optimizer: group name '", g.name,
              "' must be non-empty and contain no '.' (it prefixes the state-dict keys)");
    MOX_CHECK(group_names.insert(g.name).second, "optimizer: two groups are named '", g.name, "'");
    if (g.param_names.empty())
      for (size_t i = 0; i < g.params.size(); ++i) g.param_names.push_back(std::to_string(i));
    MOX_CHECK(g.param_names.size() == g.params.size(), "optimizer group '", g.name, "': ",
              g.params.size(), " params but ", g.param_names.size(), " param_names");
    std::set<std::string> names;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      const std::string& pn = g.param_names[i];
      MOX_CHECK(!pn.empty(), "optimizer group '", g.name, "': param ", i, " has an empty name");
      MOX_CHECK(names.insert(pn).second, "optimizer group '", g.name, "': two params are named '",
                pn, "'");
      MOX_CHECK(p.defined(), "optimizer group '", g.name, "' param '", pn, "' is undefined");
      MOX_CHECK(p.is_leaf(), "optimizer group '", g.name, "' param '", pn,
                "' is not a leaf tensor (it was computed by an op); optimize the leaves a module "
                "registers");
      MOX_CHECK(is_floating(p.dtype()) && p.is_contiguous(), "optimizer group '", g.name,
                "' param '", pn, "' is ", describe(p),
                "; optimizers update contiguous floating-point tensors");
      MOX_CHECK(seen.insert(p.impl()).second, "optimizer group '", g.name, "' param '", pn,
                "' already appears in this optimizer (each param belongs to one group)");
    }
    initial_lrs_.push_back(g.lr);
    state_.emplace_back(g.params.size());
  }
}

std::string Optimizer::where(size_t group, size_t param) const {
  return str("group '", groups_[group].name, "' param '", groups_[group].param_names[param], "'");
}

void Optimizer::step() {
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      MOX_CHECK(grad.shape() == p.shape() && grad.dtype() == p.dtype() &&
                    grad.device() == p.device(),
                name(), " step: ", where(gi, i), " is ", describe(p), " on ", p.device(),
                " but its grad is ", describe(grad), " on ", grad.device());
      if (!grad.is_contiguous()) grad = raw::contiguous(grad);
      ParamState& s = state_[gi][i];
      if (s.buffers.empty())
        for (size_t k = 0, n = state_names(g).size(); k < n; ++k) s.buffers.push_back(zeros_like(p));
      ++s.step;
      update(g, p, grad, s);
    }
  }
}

void Optimizer::zero_grad() {
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params) {
      Tensor grad = p.grad();
      if (grad.defined()) raw::fill_(grad, 0.0);
    }
}

double Optimizer::lr(size_t group) const {
  MOX_CHECK(group < groups_.size(), "optimizer: group index ", group, " out of range (",
            groups_.size(), " groups)");
  return groups_[group].lr;
}

double Optimizer::initial_lr(size_t group) const {
  MOX_CHECK(group < groups_.size(), "optimizer: group index ", group, " out of range (",
            groups_.size(), " groups)");
  return initial_lrs_[group];
}

void Optimizer::set_lr(size_t group, double lr) {
  MOX_CHECK(group < groups_.size(), "optimizer: group index ", group, " out of range (",
            groups_.size(), " groups)");
  MOX_CHECK(std::isfinite(lr) && lr >= 0, "optimizer group '", groups_[group].name,
            "': lr must be a finite value >= 0, got ", lr);
  groups_[group].lr = lr;
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState out;
  out.meta["optimizer"] = name();
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    out.meta[g.name + ".lr"] = exact_text(g.lr);
    const std::vector<std::string> names = state_names(g);
    for (size_t i = 0; i < g.params.size(); ++i) {
      const ParamState& s = state_[gi][i];
      if (s.step == 0) continue;
      const std::string prefix = g.name + "." + g.param_names[i] + ".";
      out.meta[prefix + "step"] = std::to_string(s.step);
      for (size_t k = 0; k < names.size(); ++k) out.tensors.emplace_back(prefix + names[k], s.buffers[k]);
    }
  }
  return out;
}

void Optimizer::load_state_dict(const OptimizerState& state) {
  std::map<std::string, const Tensor*> tensors;
  for (const auto& [key, t] : state.tensors)
    MOX_CHECK(tensors.emplace(key, &t).second, "optimizer state: key '", key, "' appears twice");
  std::set<std::string> used_meta, used_tensors;

  auto kind = state.meta.find("optimizer");
  MOX_CHECK(kind != state.meta.end(), "optimizer state: missing key 'optimizer'");
  MOX_CHECK(kind->second == name(), "optimizer state: saved by '", kind->second,
            "', cannot be loaded into '", name(), "'");
  used_meta.insert("optimizer");

  // Pass 1: validate everything and collect what to apply.
  struct Planned {
    size_t group, param;
    int64_t step;                          // 0: reset
    std::vector<const Tensor*> buffers;    // one per state name when step > 0
  };
  std::vector<Planned> plan;
  std::vector<double> lrs;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const std::string lr_key = g.name + ".lr";
    auto lr_it = state.meta.find(lr_key);
    MOX_CHECK(lr_it != state.meta.end(), "optimizer state: missing key '", lr_key, "'");
    double lr = parse_state_double("optimizer state", lr_key, lr_it->second);
    MOX_CHECK(std::isfinite(lr) && lr >= 0, "optimizer state: key '", lr_key, "' holds lr ", lr,
              ", expected a finite value >= 0");
    lrs.push_back(lr);
    used_meta.insert(lr_key);
    const std::vector<std::string> names = state_names(g);
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      const std::string prefix = g.name + "." + g.param_names[i] + ".";
      Planned entry{gi, i, 0, {}};
      auto step_it = state.meta.find(prefix + "step");
      if (step_it != state.meta.end()) {
        entry.step = parse_state_int("optimizer state", step_it->first, step_it->second, 1, "a step count >= 1");
        used_meta.insert(step_it->first);
        for (const std::string& n : names) {
          const std::string key = prefix + n;
          auto t = tensors.find(key);
          MOX_CHECK(t != tensors.end(), "optimizer state: missing key '", key, "' (", where(gi, i),
                    " has a step count but no ", n, ")");
          const Tensor& v = *t->second;
          MOX_CHECK(v.defined() && v.shape() == p.shape() && v.dtype() == p.dtype(),
                    "optimizer state: key '", key, "' is ",
                    v.defined() ? describe(v) : std::string("undefined"), " but the param is ",
                    describe(p));
          entry.buffers.push_back(t->second);
          used_tensors.insert(key);
        }
      }
      plan.push_back(std::move(entry));
    }
  }
  for (const auto& [key, value] : state.meta)
    MOX_CHECK(used_meta.count(key), "optimizer state: unexpected key '", key,
              "' (no such group or param in this ", name(), " optimizer)");
  for (const auto& [key, t] : tensors)
    MOX_CHECK(used_tensors.count(key), "optimizer state: unexpected key '", key,
              "' (no such group, param or buffer in this ", name(), " optimizer)");

  // Pass 2: apply.
  for (size_t gi = 0; gi < groups_.size(); ++gi) groups_[gi].lr = lrs[gi];
  for (const Planned& e : plan) {
    ParamState& s = state_[e.group][e.param];
    s.step = e.step;
    if (e.step == 0) {
      s.buffers.clear();   // reallocated as zeros on the next update
      continue;
    }
    const Tensor& p = groups_[e.group].params[e.param];
    if (s.buffers.empty())
      for (size_t k = 0; k < e.buffers.size(); ++k) s.buffers.push_back(empty_like(p));
    for (size_t k = 0; k < e.buffers.size(); ++k) raw::copy_(s.buffers[k], *e.buffers[k]);
  }
}

}  // namespace mox::optim
