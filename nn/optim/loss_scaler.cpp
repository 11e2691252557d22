// loss_scaler.cpp — LossScaler: config checks, DeepSpeed's update rule, the gradient finite
// check and unscale (raw ops on the gradients' device), exact text state.
#include "nn/optim/loss_scaler.h"

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "nn/optim/state_text.h"
#include "tensor/ops.h"

namespace mox::optim {

namespace {

constexpr double kScaleFactor = 2;   // DeepSpeed's scale_factor; the fp16 config has no key for it

const char* const kKeys[] = {"cur_scale", "cur_iter", "last_overflow_iter", "cur_hysteresis"};

}  // namespace

LossScaler::LossScaler(const LossScalerConfig& cfg) : cfg_(cfg) {
  MOX_CHECK(std::isfinite(cfg.loss_scale) && cfg.loss_scale >= 0,
            "loss scaler: loss_scale must be 0 (dynamic scaling) or a finite value > 0 (a static "
            "scale), got ", cfg.loss_scale);
  MOX_CHECK(cfg.loss_scale_window >= 1, "loss scaler: loss_scale_window must be >= 1, got ",
            cfg.loss_scale_window);
  MOX_CHECK(cfg.hysteresis >= 1, "loss scaler: hysteresis must be >= 1 (1 = halve on every "
            "overflow), got ", cfg.hysteresis);
  MOX_CHECK(std::isfinite(cfg.min_loss_scale) && cfg.min_loss_scale > 0,
            "loss scaler: min_loss_scale must be a finite value > 0, got ", cfg.min_loss_scale);
  dynamic_ = cfg.loss_scale == 0;
  if (dynamic_) {
    // 2^p is a finite, normal double for p in [-1022, 1023].
    MOX_CHECK(cfg.initial_scale_power >= -1022 && cfg.initial_scale_power <= 1023,
              "loss scaler: initial_scale_power must be in [-1022, 1023] (the scale 2^power must "
              "be a finite double), got ", cfg.initial_scale_power);
    cur_scale_ = std::ldexp(1.0, cfg.initial_scale_power);
    MOX_CHECK(cur_scale_ >= cfg.min_loss_scale, "loss scaler: the initial scale 2^",
              cfg.initial_scale_power, " = ", cur_scale_, " is below min_loss_scale ",
              cfg.min_loss_scale, "; raise initial_scale_power or lower min_loss_scale");
  } else {
    cur_scale_ = cfg.loss_scale;
  }
  cur_hysteresis_ = cfg.hysteresis;
}

bool LossScaler::grads_finite(const std::vector<Tensor>& params) {
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (g.defined() && !raw::all_finite(g)) return false;
  }
  return true;
}

void LossScaler::unscale(const std::vector<Tensor>& params) const {
  std::unordered_map<const TensorImpl*, size_t> seen;   // grad → index of its first param
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    if (!g.defined()) continue;
    auto [it, fresh] = seen.emplace(g.impl(), i);
    MOX_CHECK(fresh, "loss scaler: unscale: params[", it->second, "] and params[", i,
              "] share one gradient tensor, which would be divided by the scale twice; pass "
              "each parameter once");
    MOX_CHECK(is_floating(g.dtype()), "loss scaler: unscale: params[", i, "] has a gradient of ",
              describe(g), ", expected a floating dtype");
  }
  if (cur_scale_ == 1) return;   // x / 1 == x: skip the passes
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    if (g.is_contiguous())
      backend(g.device()).binary_scalar(BinaryOp::div, g, cur_scale_, false, g);
    else
      raw::copy_(g, raw::binary_scalar(BinaryOp::div, g, cur_scale_));
  }
}

void LossScaler::update(bool overflow) {
  if (!dynamic_) {
    if (overflow) last_overflow_iter_ = cur_iter_;
    ++cur_iter_;
    return;
  }
  // DeepSpeed's DynamicLossScaler.update_scale, branch for branch.
  if (overflow) {
    if (cfg_.hysteresis == 1 || cur_hysteresis_ == 1) {
      MOX_CHECK(cur_scale_ != cfg_.min_loss_scale,
                "loss scaler: the gradients overflowed at iteration ", cur_iter_,
                " with the loss scale already at its minimum (scale ", cur_scale_,
                " = min_loss_scale ", cfg_.min_loss_scale,
                "), so it cannot be decreased any further (DeepSpeed stops the run here too). "
                "Non-finite gradients even at the smallest scale usually mean the run diverged: "
                "lower the learning rate, enable gradient clipping, look for a bad batch, or lower "
                "min_loss_scale; or train in bf16/f32");
      cur_scale_ = std::max(cur_scale_ / kScaleFactor, cfg_.min_loss_scale);
    } else {
      --cur_hysteresis_;
    }
    last_overflow_iter_ = cur_iter_;
  } else {
    const bool grow = (cur_iter_ - last_overflow_iter_) % cfg_.loss_scale_window == 0;
    MOX_CHECK(!grow || cur_scale_ <= DBL_MAX / kScaleFactor,
              "loss scaler: growing the loss scale ", cur_scale_, " at iteration ", cur_iter_,
              " would make it infinite: the gradients never overflow, even at this scale. Check "
              "that the loss reaches the parameters (all-zero gradients never overflow), or use "
              "a static loss_scale");
    if (cfg_.consecutive_hysteresis) cur_hysteresis_ = cfg_.hysteresis;
    if (grow) {
      if (!cfg_.consecutive_hysteresis) cur_hysteresis_ = cfg_.hysteresis;
      cur_scale_ *= kScaleFactor;
    }
  }
  ++cur_iter_;
}

std::map<std::string, std::string> LossScaler::state() const {
  return {{"cur_scale", exact_text(cur_scale_)},
          {"cur_iter", std::to_string(cur_iter_)},
          {"last_overflow_iter", std::to_string(last_overflow_iter_)},
          {"cur_hysteresis", std::to_string(cur_hysteresis_)}};
}

void LossScaler::load_state(const std::map<std::string, std::string>& state) {
  for (const auto& [key, value] : state) {
    bool known = false;
    for (const char* k : kKeys) known = known || key == k;
    MOX_CHECK(known, "loss scaler state: unexpected key '", key,
              "'; expected cur_scale, cur_iter, last_overflow_iter and cur_hysteresis");
  }
  auto text = [&](const char* key) -> const std::string& {
    auto it = state.find(key);
    MOX_CHECK(it != state.end(), "loss scaler state: missing key '", key, "'");
    return it->second;
  };
  const double scale = parse_state_double("loss scaler state", "cur_scale", text("cur_scale"));
  const int64_t iter = parse_state_int("loss scaler state", "cur_iter", text("cur_iter"), INT64_MIN, "an integer");
  const int64_t last = parse_state_int("loss scaler state", "last_overflow_iter", text("last_overflow_iter"), INT64_MIN, "an integer");
  const int64_t hyst = parse_state_int("loss scaler state", "cur_hysteresis", text("cur_hysteresis"), INT64_MIN, "an integer");

  MOX_CHECK(std::isfinite(scale) && scale > 0, "loss scaler state: key 'cur_scale' holds ", scale,
            ", expected a finite value > 0");
  if (dynamic_)
    MOX_CHECK(scale >= cfg_.min_loss_scale, "loss scaler state: key 'cur_scale' holds ", scale,
              ", below this run's min_loss_scale ", cfg_.min_loss_scale,
              "; resume with the min_loss_scale the checkpoint was trained with");
  else
    MOX_CHECK(scale == cfg_.loss_scale, "loss scaler state: key 'cur_scale' holds ",
              exact_text(scale), " but this run has the static loss_scale ",
              exact_text(cfg_.loss_scale),
              "; resume with the loss_scale (0 for dynamic) the checkpoint was trained with");
  MOX_CHECK(iter >= 0, "loss scaler state: key 'cur_iter' holds ", iter, ", expected >= 0");
  MOX_CHECK(last >= -1 && last < iter, "loss scaler state: key 'last_overflow_iter' holds ", last,
            ", expected -1 (none yet) or an iteration below cur_iter ", iter);
  MOX_CHECK(hyst >= 1 && hyst <= cfg_.hysteresis, "loss scaler state: key 'cur_hysteresis' holds ",
            hyst, ", expected a value in [1, hysteresis = ", cfg_.hysteresis,
            "]; resume with the hysteresis the checkpoint was trained with");

  cur_scale_ = scale;
  cur_iter_ = iter;
  last_overflow_iter_ = last;
  cur_hysteresis_ = int(hyst);
}

}  // namespace mox::optim
