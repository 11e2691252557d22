// ds_config.cpp — apply_ds_config (see ds_config.h): dist::parse_ds_config, then the keys
// mox-cifar10 uses mapped onto its options, each checked against an explicit flag.
#include "examples/cifar10/ds_config.h"

#include <fstream>
#include <optional>
#include <sstream>

#include "dist/ds_config.h"
#include "tensor/error.h"

namespace mox::cifar10 {
namespace {

struct Mapper {
  const std::string& path;
  const std::function<bool(const std::string&)>& flag_given;
  void no_conflict(const std::string& key, const std::string& flag) const {
    MOX_CHECK(!flag_given(flag), "config '", path, "': '", key, "' and the flag ", flag, " both set this; remove one");
  }
  void unsupported(bool present, const std::string& key, const std::string& why) const {
    MOX_CHECK(!present, "config '", path, "': '", key, "' is not supported by mox-cifar10 (", why, ")");
  }
  // The file's value, where it has one, into the option the flag would set.
  template <typename V, typename O>
  void take(const std::optional<V>& value, const std::string& key, const std::string& flag, O& option) const {
    if (!value) return;
    no_conflict(key, flag);
    option = *value;
  }
};

void apply_optimizer(const Mapper& m, const dist::DsOptimizer& opt, Options& o) {
  m.no_conflict("optimizer.type", "--optimizer");
  o.optimizer = opt.type;
  m.take(opt.lr, "optimizer.params.lr", "--lr", o.lr);
  m.take(opt.momentum, "optimizer.params.momentum", "--momentum", o.momentum);
  m.take(opt.weight_decay, "optimizer.params.weight_decay", "--weight-decay", o.weight_decay);
  if (opt.beta1) {
    m.no_conflict("optimizer.params.betas", "--beta1");
    m.no_conflict("optimizer.params.betas", "--beta2");
    o.beta1 = *opt.beta1;
    o.beta2 = *opt.beta2;
  }
  m.take(opt.eps, "optimizer.params.eps", "--eps", o.eps);
}

void apply_scheduler(const Mapper& m, const dist::DsScheduler& s, bool lr_in_file, Options& o) {
  m.no_conflict("scheduler", "--schedule");
  o.schedule = "warmup";
  if (s.warmup_min_lr) o.warmup_min_lr = *s.warmup_min_lr;
  // The schedule's peak is the learning rate: one number, wherever it is written.
  // DeepSpeed's WarmupLR peaks at 0.001 when warmup_max_lr is absent, whatever the optimizer's lr.
  m.no_conflict("scheduler.params.warmup_max_lr", "--lr");
  const double max_lr = s.warmup_max_lr.value_or(0.001);
  MOX_CHECK(!lr_in_file || max_lr == o.lr, "config '", m.path, "': scheduler.params.warmup_max_lr = ", max_lr,
            s.warmup_max_lr ? "" : " (DeepSpeed's default)", " differs from optimizer.params.lr = ", o.lr,
            "; the warmup ends at the learning rate, make them equal");
  o.lr = max_lr;
  if (s.warmup_num_steps) {
    m.no_conflict("scheduler.params.warmup_num_steps", "--warmup-steps");
    o.warmup_steps = *s.warmup_num_steps;
  } else if (!m.flag_given("--warmup-steps")) {
    o.warmup_steps = 1000;   // DeepSpeed's WarmupLR default
  }
  if (s.warmup_type) o.warmup_type = *s.warmup_type;
}

}  // namespace

void apply_ds_config(const std::string& path, Options& o, const std::function<bool(const std::string&)>& flag_given) {
  std::ifstream in(path, std::ios::binary);
  MOX_CHECK(in.good(), "config '", path, "': cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  apply_ds_config_text(text.str(), path, o, flag_given);
}

void apply_ds_config_text(const std::string& text, const std::string& path, Options& o,
                          const std::function<bool(const std::string&)>& flag_given) {
  const dist::DsConfig c = dist::parse_ds_config(text, path);
  const Mapper m{path, flag_given};
  m.unsupported(c.train_micro_batch_size_per_gpu.has_value(), "train_micro_batch_size_per_gpu",
                "train_batch_size is the global batch, split evenly over the ranks");
  m.unsupported(c.gradient_accumulation_steps.has_value(), "gradient_accumulation_steps",
                "one micro-batch per step; the distributed engine, dist/engine.h, accumulates");
  if (c.fp16 || c.bf16) {   // dist::parse_ds_config refuses both at once
    const std::string key = c.fp16 ? "fp16" : "bf16";
    m.no_conflict(key, "--dtype");
    for (const char* flag : {"--initial-scale-power", "--loss-scale-window", "--hysteresis", "--min-loss-scale"})
      if (c.fp16) m.no_conflict(key, flag);
    o.dtype = key;
    if (c.fp16) o.loss_scaler = c.loss_scaler;
  }
  m.unsupported(c.zero_stage != 0, "zero_optimization", "no ZeRO in this example; dist/engine.h has stage 1");
  m.unsupported(c.wall_clock_breakdown, "wall_clock_breakdown", "it prints images/s instead");
  m.take(c.train_batch_size, "train_batch_size", "--batch-size", o.batch_size);
  m.take(c.steps_per_print, "steps_per_print", "--log-interval", o.log_interval);
  m.take(c.gradient_clipping, "gradient_clipping", "--grad-clip", o.grad_clip);
  if (c.optimizer) apply_optimizer(m, *c.optimizer, o);
  if (c.scheduler) apply_scheduler(m, *c.scheduler, c.optimizer && c.optimizer->lr.has_value(), o);
}

}  // namespace mox::cifar10
