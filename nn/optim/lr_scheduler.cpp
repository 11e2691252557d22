// lr_scheduler.cpp — ConstantLr, WarmupLr (DeepSpeed), WarmupCosineLr (nanoGPT), apply().
#include "nn/optim/lr_scheduler.h"

#include <cmath>

namespace mox::optim {

namespace {

void check_step(const char* schedule, int64_t step) {
  MOX_CHECK(step >= 0, schedule, ": step must be >= 0, got ", step);
}

void check_rate(const char* schedule, const char* field, double v) {
  MOX_CHECK(std::isfinite(v) && v >= 0, schedule, ": ", field, " must be a finite value >= 0, got ", v);
}

}  // namespace

void LrSchedule::apply(Optimizer& optimizer, int64_t step) const {
  const double lr = lr_at(step);
  const double base = optimizer.initial_lr(0);
  for (size_t g = 0; g < optimizer.num_groups(); ++g) {
    if (g == 0) {
      optimizer.set_lr(0, lr);
      continue;
    }
    MOX_CHECK(base > 0, "LR schedule: group '", optimizer.groups()[0].name,
              "' was built with lr 0, so the lr ratio of group '", optimizer.groups()[g].name,
              "' to it is undefined; give the first group a non-zero lr");
    optimizer.set_lr(g, lr * (optimizer.initial_lr(g) / base));
  }
}

ConstantLr::ConstantLr(double lr) : lr_(lr) { check_rate("ConstantLr", "lr", lr); }

double ConstantLr::lr_at(int64_t step) const {
  check_step("ConstantLr", step);
  return lr_;
}

WarmupLr::WarmupLr(const WarmupLrOptions& options) : o_(options) {
  check_rate("WarmupLR", "warmup_min_lr", o_.warmup_min_lr);
  check_rate("WarmupLR", "warmup_max_lr", o_.warmup_max_lr);
  MOX_CHECK(o_.warmup_num_steps >= 2, "WarmupLR: warmup_num_steps must be >= 2, got ",
            o_.warmup_num_steps, " (DeepSpeed silently uses 2 for smaller values; set 2)");
  MOX_CHECK(o_.warmup_type == "log" || o_.warmup_type == "linear",
            "WarmupLR: warmup_type must be \"log\" or \"linear\", got \"", o_.warmup_type, "\"");
  log_ = o_.warmup_type == "log";
}

double WarmupLr::lr_at(int64_t step) const {
  check_step("WarmupLR", step);
  double gamma = 1.0;
  if (step < o_.warmup_num_steps)
    gamma = log_ ? (1.0 / std::log(double(o_.warmup_num_steps))) * std::log(double(step + 1))
                 : double(step) / double(o_.warmup_num_steps);   // DeepSpeed's own arithmetic
  return o_.warmup_min_lr + (o_.warmup_max_lr - o_.warmup_min_lr) * gamma;
}

WarmupCosineLr::WarmupCosineLr(const WarmupCosineLrOptions& options) : o_(options) {
  check_rate("WarmupCosineLr", "lr", o_.lr);
  check_rate("WarmupCosineLr", "min_lr", o_.min_lr);
  MOX_CHECK(o_.warmup_iters >= 0, "WarmupCosineLr: warmup_iters must be >= 0, got ", o_.warmup_iters);
  MOX_CHECK(o_.lr_decay_iters > o_.warmup_iters, "WarmupCosineLr: lr_decay_iters (",
            o_.lr_decay_iters, ") must be greater than warmup_iters (", o_.warmup_iters, ")");
}

double WarmupCosineLr::lr_at(int64_t step) const {
  check_step("WarmupCosineLr", step);
  if (step < o_.warmup_iters) return o_.lr * double(step + 1) / double(o_.warmup_iters + 1);
  if (step > o_.lr_decay_iters) return o_.min_lr;
  const double ratio =
      double(step - o_.warmup_iters) / double(o_.lr_decay_iters - o_.warmup_iters);
  const double coeff = 0.5 * (1.0 + std::cos(M_PI * ratio));
  return o_.min_lr + coeff * (o_.lr - o_.min_lr);
}

}  // namespace mox::optim
