// mixed_precision.cpp — MixedPrecision: model conversion with fp32 masters, the gradient and
// weight copies between them, and the f16 loss-scaler step (see mixed_precision.h).
#include "nn/optim/mixed_precision.h"

#include <map>
#include <unordered_map>
#include <unordered_set>

#include "tensor/ops.h"

namespace mox::optim {

MixedPrecision::MixedPrecision(nn::Module& model, DType dtype, const KeepF32& keep_f32, const LossScalerConfig& scaler)
    : model_(model), dtype_(dtype) {
  MOX_CHECK(dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16, "mixed precision: dtype ", dtype,
            " is not one of f32, f16, bf16");
  // The tensors of the modules kept in f32, with their children's: never converted, so never
  // rounded (frozen parameters and buffers have no master to restore them from).
  std::unordered_set<const TensorImpl*> kept;
  if (keep_f32)
    for (const auto& [name, m] : model.named_modules())
      if (keep_f32(*m))
        for (const auto& [tensor_name, t] : m->state_dict()) kept.insert(t.impl());
  for (const auto& [name, t] : model.named_parameters()) {
    if (!t.requires_grad()) continue;
    MOX_CHECK(dtype == DType::f32 || t.dtype() == DType::f32, "mixed precision: parameter '", name, "' is ",
              describe(t), "; build the model in f32 — the ", dtype,
              " weights and their fp32 masters are made from it");
    const bool converted = dtype != DType::f32 && !kept.count(t.impl());
    weights_.push_back({name, t, converted ? raw::clone(t) : t});   // one left in f32 is its own master
  }
  if (dtype == DType::f32) return;
  if (dtype == DType::f16) scaler_ = std::make_unique<LossScaler>(scaler);   // validates before the model changes
  model.to(dtype, [&](const Tensor& t) { return kept.count(t.impl()) > 0; });
}

std::vector<Tensor> MixedPrecision::masters() const {
  std::vector<Tensor> out;
  for (const Weight& w : weights_) out.push_back(w.master);
  return out;
}

Tensor MixedPrecision::master(const Tensor& param) const {
  for (const Weight& w : weights_)
    if (w.param.is_same(param)) return w.master;
  MOX_FAIL("mixed precision: ", describe(param), " is not a trainable parameter of the model");
}

std::vector<ParamGroup> MixedPrecision::master_groups(std::vector<ParamGroup> groups) const {
  std::unordered_map<const TensorImpl*, const Weight*> by_param;
  for (const Weight& w : weights_) by_param[w.param.impl()] = &w;
  for (ParamGroup& g : groups)
    for (size_t i = 0; i < g.params.size(); ++i) {
      auto it = by_param.find(g.params[i].impl());
      MOX_CHECK(it != by_param.end(), "mixed precision: optimizer group '", g.name, "' param ",
                i < g.param_names.size() ? "'" + g.param_names[i] + "'" : std::to_string(i),
                " is not a trainable parameter of the model");
      g.params[i] = it->second->master;
    }
  return groups;
}

void MixedPrecision::zero_grad() {
  model_.zero_grad();
  for (Weight& w : weights_)
    if (!w.master.is_same(w.param)) w.master.set_grad(Tensor());
}

void MixedPrecision::backward(const Tensor& loss, int64_t accumulation_steps) {
  MOX_CHECK(loss.defined() && loss.numel() == 1, "mixed precision: backward needs a single loss value, got ",
            loss.defined() ? describe(loss) : std::string("an undefined tensor"));
  MOX_CHECK(accumulation_steps >= 1, "mixed precision: accumulation_steps must be >= 1, got ", accumulation_steps);
  Tensor l = loss.to(loss.dtype() == DType::f64 ? DType::f64 : DType::f32);
  if (accumulation_steps != 1) l = l / double(accumulation_steps);
  if (loss_scale() != 1) l = l * loss_scale();
  l.backward();
}

void MixedPrecision::grads_to_masters() {
  for (Weight& w : weights_) {
    if (w.master.is_same(w.param)) continue;
    const Tensor g = w.param.grad();
    w.master.set_grad(g.defined() ? raw::to_dtype(g, DType::f32) : Tensor());
  }
}

bool MixedPrecision::overflowed() const { return scaler_ && !LossScaler::grads_finite(masters()); }

bool MixedPrecision::unscale_or_skip(bool overflow) {
  if (!scaler_) {
    MOX_CHECK(!overflow, "mixed precision: an overflow was reported for a ", dtype_,
              " run, which has no loss scaler (only f16 skips steps)");
    return true;
  }
  if (overflow) {
    scaler_->update(true);   // throws at the minimum scale
    return false;
  }
  scaler_->unscale(masters());
  scaler_->update(false);
  return true;
}

void MixedPrecision::masters_to_params() {
  for (Weight& w : weights_)
    if (!w.master.is_same(w.param)) raw::copy_(w.param, w.master);
}

nn::NamedTensors MixedPrecision::state_dict() const {
  std::unordered_map<const TensorImpl*, const Weight*> by_param;
  for (const Weight& w : weights_) by_param[w.param.impl()] = &w;
  nn::NamedTensors out = model_.state_dict();
  for (auto& [name, t] : out)
    if (auto it = by_param.find(t.impl()); it != by_param.end()) t = it->second->master;
  return out;
}

void MixedPrecision::load_state_dict(const nn::NamedTensors& state) {
  nn::load_named_tensors(state_dict(), state);
  masters_to_params();
}

nn::ModelState MixedPrecision::model_state() {
  return {[this] { return state_dict(); }, [this](const nn::NamedTensors& s) { load_state_dict(s); }};
}

}  // namespace mox::optim
