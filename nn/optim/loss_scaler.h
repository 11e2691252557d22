// loss_scaler.h — loss scaling for fp16 training: DeepSpeed's dynamic loss scaler (and its
// static scale) as device-independent bookkeeping, plus the two gradient passes it needs.
//
// The semantics are DeepSpeed's `fp16` config section and its DynamicLossScaler.update_scale
// (deepspeed/runtime/fp16/loss_scaler.py, the scaler of the ZeRO optimizers), step for step:
//   loss_scale 0 = dynamic, > 0 = a static scale; the dynamic scale starts at
//   2^initial_scale_power. On an overflow the step is skipped and, once `hysteresis`
//   overflows have been absorbed, the scale halves (never below min_loss_scale; an overflow
//   with the scale already at the minimum is an error, as DeepSpeed's raise_error_at_min_scale).
//   The scale doubles whenever (cur_iter - last_overflow_iter) % loss_scale_window == 0 on a
//   clean step. consecutive_hysteresis refills the hysteresis on every clean step instead of
//   only when the scale grows.
//
// One training step, as the engine drives it:
//   backward of loss·scale()  →  overflow = !grads_finite(params)  (OR-ed over the ranks)
//   →  if !overflow: unscale(params), clip, optimizer step  →  update(overflow)
// unscale() uses the scale the loss was multiplied by, so it comes before update() (DeepSpeed
// calls update first and, on a step where the scale grows, unscales by the new, doubled scale;
// that defect is not reproduced — docs/DECISIONS.md).
//
// Not here: fp16 model conversion, fp32 master weights, multiplying the loss, the all-reduce
// of the overflow flag, logging — the training engine (and the CUDA backend) own those. No
// FP16_Optimizer variant either: DeepSpeed's non-ZeRO FP16_Optimizer has its own, different
// rule (no hysteresis, silent clamp at the minimum); this is the DynamicLossScaler one.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mox::optim {

// DeepSpeed's `fp16` config keys and defaults (scale_factor is DeepSpeed's fixed 2).
struct LossScalerConfig {
  double loss_scale = 0;            // 0: dynamic; > 0: static scale
  int initial_scale_power = 16;     // dynamic: first scale 2^power
  int64_t loss_scale_window = 1000;
  int hysteresis = 2;
  bool consecutive_hysteresis = false;
  double min_loss_scale = 1;
};

class LossScaler {
 public:
  // Validates the config; errors name the field and its value. loss_scale must be 0 or a
  // finite value > 0; loss_scale_window and hysteresis >= 1; min_loss_scale finite and > 0;
  // for a dynamic scaler 2^initial_scale_power must be a finite double >= min_loss_scale.
  explicit LossScaler(const LossScalerConfig& cfg);

  // The current scale: multiply the loss by it before backward.
  double scale() const { return cur_scale_; }
  bool dynamic() const { return dynamic_; }
  const LossScalerConfig& config() const { return cfg_; }

  // True when every defined gradient of `params` is finite (undefined grads are skipped).
  // One reduction per gradient, on the gradient's device.
  static bool grads_finite(const std::vector<Tensor>& params);
  // Divide every defined gradient by scale() in place (a correctly rounded division: exact for
  // the power-of-two scales of the dynamic scaler). Call it after grads_finite(params) said
  // true and before update(). A gradient tensor shared by two params is an error (it would be
  // divided twice).
  void unscale(const std::vector<Tensor>& params) const;

  // Record one optimizer step's outcome; on overflow the caller skips the step. Dynamic:
  // DeepSpeed's rule (above); throws mox::Error, leaving the state untouched, on an overflow
  // with the scale already at min_loss_scale, or when growing would make the scale infinite.
  // Static: the scale never changes, an overflow only means the step is skipped.
  void update(bool overflow);
  // Steps recorded so far (DeepSpeed's cur_iter).
  int64_t iteration() const { return cur_iter_; }

  // Exact save/restore for checkpoints: "cur_scale" (17 significant digits), "cur_iter",
  // "last_overflow_iter", "cur_hysteresis", as text. load_state is strict and all-or-nothing:
  // a missing, unknown, unparsable or out-of-range key throws naming the key, and the scaler
  // is then unchanged. A static scaler only loads the scale it was configured with.
  std::map<std::string, std::string> state() const;
  void load_state(const std::map<std::string, std::string>& state);

 private:
  LossScalerConfig cfg_;
  bool dynamic_ = true;
  double cur_scale_ = 1;
  int64_t cur_iter_ = 0;
  int64_t last_overflow_iter_ = -1;
  int cur_hysteresis_ = 1;
};

}  // namespace mox::optim
