// ds_config.h — --config FILE: a DeepSpeed-style JSON configuration for mox-cifar10.
//
// Supported keys (anything else is an error naming the key and, for a likely typo, the key
// meant, so a typo never passes silently):
//   train_batch_size                  → --batch-size (the global batch, split over the ranks)
//   steps_per_print                   → --log-interval
//   gradient_clipping                 → --grad-clip (global L2 norm; 0 = off)
//   optimizer {type, params}          type SGD | Adam | AdamW (case-insensitive, as DeepSpeed);
//                                     params lr, momentum (SGD), betas [b1, b2], eps, weight_decay;
//                                     "Adam" is AdamW as in DeepSpeed (decoupled weight decay)
//                                     unless params.adam_w_mode is false
//   scheduler {type, params}          type WarmupLR; params warmup_min_lr, warmup_max_lr (default
//                                     0.001, as DeepSpeed), warmup_num_steps (default 1000),
//                                     warmup_type ("log" | "linear")
//   fp16 {enabled, loss_scale, initial_scale_power, loss_scale_window, hysteresis,
//         consecutive_hysteresis, min_loss_scale}  → --dtype fp16 with that loss scaler
//   bf16 {enabled}                    → --dtype bf16
// A setting given both in the file and as an explicit flag is an error naming both: the run
// must not depend on which one silently wins.
//
// The file is read by dist::parse_ds_config (strict: unknown and duplicate keys are errors).
// What it is not: what the example does not do — train_micro_batch_size_per_gpu,
// gradient_accumulation_steps, ZeRO and wall_clock_breakdown are errors saying so
// (dist/engine.h supports them).
#pragma once
#include <functional>
#include <string>

#include "examples/cifar10/options.h"

namespace mox::cifar10 {

// Reads `path` into `o`. `flag_given("--lr")` tells whether that flag was on the command line.
// Throws mox::Error naming the file and the key on a missing file, invalid JSON, an unknown
// key, a value of the wrong type or range, or a conflict with an explicit flag.
void apply_ds_config(const std::string& path, Options& o, const std::function<bool(const std::string&)>& flag_given);
// The same from the file's text; `path` only names the source in messages (fuzz/fuzz_ds_config.cpp).
void apply_ds_config_text(const std::string& text, const std::string& path, Options& o,
                          const std::function<bool(const std::string&)>& flag_given);

}  // namespace mox::cifar10
