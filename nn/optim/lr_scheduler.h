// lr_scheduler.h — learning-rate schedules: a pure function of the step, applied to an optimizer.
//
// A schedule is `lr_at(step)` for a 0-based optimizer step; `apply(opt, step)` writes it into
// every group before that step. The first group gets lr_at(step) itself; every other group
// keeps the ratio of its initial lr to the first group's initial lr (so an "experts at half
// lr" group stays at half). The schedule holds no state: the caller stores the step
// (checkpoints keep it beside the optimizer state).
//
// Schedules: ConstantLr; WarmupLr (DeepSpeed's WarmupLR, log or linear warmup);
// WarmupCosineLr (nanoGPT's get_lr: linear warmup, cosine decay to min_lr).
// Not here: schedules driven by a metric (ReduceLROnPlateau) or by epochs.
#pragma once
#include <cstdint>
#include <string>

#include "nn/optim/optimizer.h"

namespace mox::optim {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  // The lr at 0-based step `step` (throws when step < 0).
  virtual double lr_at(int64_t step) const = 0;
  // Set every group's lr for `step` (see the file comment for the per-group ratio).
  void apply(Optimizer& optimizer, int64_t step) const;
};

class ConstantLr final : public LrSchedule {
 public:
  explicit ConstantLr(double lr);
  double lr_at(int64_t step) const override;

 private:
  double lr_;
};

// DeepSpeed's WarmupLR (deepspeed/runtime/lr_schedules.py), with step = its
// last_batch_iteration. While step < warmup_num_steps:
//   log:    lr = min + (max - min) · log(step + 1) / log(warmup_num_steps)
//   linear: lr = min + (max - min) · step / warmup_num_steps
// and lr = max afterwards. So log reaches max at step warmup_num_steps-1, linear at
// warmup_num_steps. (DeepSpeed silently raises warmup_num_steps below 2 to 2 and falls back
// to "log" for an unknown warmup_type; mox rejects both. DeepSpeed calls scheduler.step()
// after each optimizer step, so there optimizer step k ≥ 1 runs with lr_at(k-1) and step 0
// with the optimizer's configured lr.)
struct WarmupLrOptions {
  double warmup_min_lr = 0;
  double warmup_max_lr = 1e-3;
  int64_t warmup_num_steps = 1000;
  std::string warmup_type = "log";   // "log" or "linear"
};

class WarmupLr final : public LrSchedule {
 public:
  explicit WarmupLr(const WarmupLrOptions& options);
  double lr_at(int64_t step) const override;

 private:
  WarmupLrOptions o_;
  bool log_;
};

// nanoGPT's get_lr(it) (train.py):
//   it < warmup_iters:   lr · (it + 1) / (warmup_iters + 1)
//   it > lr_decay_iters: min_lr
//   otherwise:           min_lr + ½(1 + cos(π·r))·(lr - min_lr),
//                        r = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
struct WarmupCosineLrOptions {
  double lr = 6e-4;
  double min_lr = 6e-5;
  int64_t warmup_iters = 2000;
  int64_t lr_decay_iters = 600000;
};

class WarmupCosineLr final : public LrSchedule {
 public:
  explicit WarmupCosineLr(const WarmupCosineLrOptions& options);
  double lr_at(int64_t step) const override;

 private:
  WarmupCosineLrOptions o_;
};

}  // namespace mox::optim
