// ds_config.h — DeepSpeed's JSON training configuration, read strictly.
//
// The keys mox supports (DeepSpeed names and defaults):
//   train_batch_size, train_micro_batch_size_per_gpu, gradient_accumulation_steps
//                                   (train = micro × accumulation × data-parallel size; any two
//                                    determine the third, resolve_batch_sizes checks the identity)
//   steps_per_print (10), gradient_clipping (0 = off), wall_clock_breakdown (false)
//   optimizer {type, params}        SGD {lr, momentum, weight_decay}; Adam / AdamW {lr, betas,
//                                   eps, weight_decay} ("Adam" is AdamW unless params.adam_w_mode
//                                   is false, as DeepSpeed); type is case-insensitive
//   scheduler {type, params}        WarmupLR {warmup_min_lr (0), warmup_max_lr (0.001),
//                                   warmup_num_steps (1000), warmup_type ("log" | "linear")}
//   fp16 {enabled, loss_scale, initial_scale_power, loss_scale_window, hysteresis,
//         consecutive_hysteresis, min_loss_scale}     (optim::LossScalerConfig)
//   bf16 {enabled}
//   zero_optimization {stage}       0 or 1
// Unknown keys at any level are errors naming the key (with the nearest valid key when it
// looks like a typo) — DeepSpeed silently ignores unknown top-level keys; duplicate keys, which
// JSON parsers silently resolve to the last one, are errors too. Every value is type- and
// range-checked; messages name the source file and the dotted key.
//
// What it is not: DeepSpeed's whole schema (no ZeRO 2/3, offload, activation checkpointing,
// curriculum, ...); it builds nothing — dist/engine.h and the examples turn it into objects.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nn/optim/loss_scaler.h"

namespace mox::dist {

struct DsOptimizer {
  std::string type = "adamw";    // "sgd" | "adam" (L2 in the gradient) | "adamw"
  std::optional<double> lr;      // absent: the scheduler's peak, else 1e-3
  std::optional<double> momentum;       // SGD; absent: 0
  std::optional<double> weight_decay;   // absent: 0
  std::optional<double> beta1, beta2, eps;   // Adam/AdamW; absent: 0.9, 0.999, 1e-8
};

struct DsScheduler {   // WarmupLR; absent values take DeepSpeed's defaults (in brackets)
  std::optional<double> warmup_min_lr;         // [0]
  std::optional<double> warmup_max_lr;         // [0.001]
  std::optional<int64_t> warmup_num_steps;     // [1000]
  std::optional<std::string> warmup_type;      // ["log"]
};

struct DsConfig {
  std::string source;   // the file (or "<text>"), for messages
  std::optional<int64_t> train_batch_size, train_micro_batch_size_per_gpu, gradient_accumulation_steps;
  std::optional<int64_t> steps_per_print;       // absent: 10
  std::optional<double> gradient_clipping;      // absent: 0 (off)
  bool wall_clock_breakdown = false;
  std::optional<DsOptimizer> optimizer;
  std::optional<DsScheduler> scheduler;
  bool fp16 = false;
  optim::LossScalerConfig loss_scaler;          // fp16's block (used when fp16)
  bool bf16 = false;
  int zero_stage = 0;
};

// Parses DeepSpeed JSON text; `source` names it in messages. Throws mox::Error as above.
DsConfig parse_ds_config(const std::string& text, const std::string& source);
// Reads and parses a file (an unreadable file is an error naming it).
DsConfig read_ds_config(const std::string& path);

struct BatchSizes {
  int64_t train = 0;    // samples per optimizer step, all ranks together
  int64_t micro = 0;    // samples per forward/backward on one rank
  int64_t accum = 1;    // micro-batches per optimizer step
};
// DeepSpeed's identity train = micro × accum × dp_size: fills in what is missing (accum
// defaults to 1; with only train given, micro = train / dp_size) and throws naming all four
// numbers when they do not fit.
BatchSizes resolve_batch_sizes(const DsConfig& cfg, int64_t dp_size);

// "did you mean" helper shared with the examples' own flag/key checks: the entry of
// `allowed` nearest to `key` when it is a plausible typo, else "".
std::string nearest_name(const std::string& key, const std::vector<std::string>& allowed);

}  // namespace mox::dist
