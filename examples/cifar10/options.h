// options.h — the command line of mox-cifar10 and its validation.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/optim/loss_scaler.h"

namespace mox::cifar10 {

struct Options {
  std::string data;              // CIFAR-10 binary directory
  int64_t epochs = 2;
  int64_t max_steps = 0;         // stop after this many steps in all (0: every epoch); saves mid-epoch
  int64_t batch_size = 4;
  int64_t test_batch_size = 0;  // 0: the training batch size (as the tutorial's test loader)
  std::string optimizer = "sgd"; // sgd | adam | adamw
  double lr = 0.001;
  double momentum = 0.9;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;   // Adam / AdamW
  double grad_clip = 0.0;        // max global gradient L2 norm; 0 = no clipping
  std::string schedule = "constant";   // constant | cosine | warmup
  int64_t warmup_steps = 0;
  double warmup_min_lr = 0.0;    // warmup schedule: start value
  std::string warmup_type = "log";   // warmup schedule: log | linear (DeepSpeed WarmupLR)
  bool augment = false;          // random crop (pad 4) + horizontal flip
  uint64_t seed = 1;
  int64_t log_interval = 2000;
  std::string device = "auto";   // cpu | cuda | cuda:0 | auto (examples/common/device.h)
  int64_t threads = 0;            // 0: $OMP_NUM_THREADS when set (moxrun sets it per rank), else 2
  std::string metrics;           // JSON-lines file
  std::string save;              // checkpoint written after every epoch
  std::string resume;            // checkpoint to continue from
  // MoE (DeepSpeed's cifar10_deepspeed.py flags)
  bool moe = false;
  std::vector<int64_t> num_experts{1};   // one MoE layer per entry
  int64_t top_k = 1;
  int64_t ep_world_size = 1;
  std::string noisy_gate_policy = "None";   // None | Jitter | RSample
  std::string mlp_type = "standard";        // standard | residual (PR-MoE)
  int64_t min_capacity = 4;      // DeepSpeed MoE's default (its CIFAR script's flag says 0)
  double capacity_factor = 1.0;
  double eval_capacity_factor = 1.0;
  double aux_loss_coef = 0.01;   // l_aux of every MoE layer is added to the loss with this weight
  bool moe_param_group = false;  // expert parameters in their own optimizer group
  std::string config;            // DeepSpeed-style JSON (examples/cifar10/ds_config.h)
  bool detect_anomaly = false;   // autograd anomaly mode: the first NaN/inf names its op
  std::string dtype = "fp32";    // fp32 | fp16 | bf16 (examples/common/precision.h)
  optim::LossScalerConfig loss_scaler;   // fp16: DeepSpeed's dynamic loss scaler defaults
  // Ranks of the job (from dist::init); --batch-size is the global batch, each rank trains on
  // batch_size / world_size images per step, as DeepSpeed's train_batch_size.
  int64_t world_size = 1;
};

// Parses argv for a job of `world_size` ranks, as rank `rank` (rank 0 prints what a --config
// file set). On --help prints usage and exits 0; on a bad flag or value (including a batch or
// expert count the ranks cannot split) prints the problem and exits 2.
Options parse_options(int argc, char** argv, int64_t world_size = 1, int rank = 0);

}  // namespace mox::cifar10
