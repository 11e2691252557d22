// options.cpp — CLI11 parsing for mox-cifar10; every value validated, usage errors exit 2.
#include "examples/cifar10/options.h"

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "examples/cifar10/ds_config.h"
#include "examples/common/cli.h"
#include "examples/common/device.h"
#include "examples/common/precision.h"
#include "tensor/error.h"

namespace mox::cifar10 {

namespace {
std::string default_data_dir() {
  if (const char* root = std::getenv("MOX_DATA"); root && *root) return std::string(root) + "/cifar10";
  return "data/cifar10";
}

using examples::finite_in;

const CLI::Validator kPositive = finite_in(0, HUGE_VAL, true, "POSITIVE");
const CLI::Validator kNonNegative = finite_in(0, HUGE_VAL, false, "NONNEGATIVE");
}  // namespace

Options parse_options(int argc, char** argv, int64_t world_size, int rank) {
  Options o;
  o.data = default_data_dir();
  CLI::App app{"mox-cifar10: train the DeepSpeed/PyTorch tutorial CIFAR-10 Net on the CPU"};
  app.option_defaults()->always_capture_default();
  app.add_option("--data", o.data, "CIFAR-10 binary directory (default $MOX_DATA/cifar10, else data/cifar10)");
  app.add_option("--epochs", o.epochs, "training epochs")->check(kPositive);
  app.add_option("--batch-size", o.batch_size, "training batch size (global: split over the ranks)")->check(kPositive);
  app.add_option("--max-steps", o.max_steps,
                 "stop after this many optimizer steps in all, mid-epoch if need be, writing --save there (0: run "
                 "every epoch); --resume continues from that point exactly")
      ->check(kNonNegative);
  app.add_option("--test-batch-size", o.test_batch_size, "evaluation batch size (0: the training batch size, as the tutorial)")
      ->check(kNonNegative);
  app.add_option("--optimizer", o.optimizer, "sgd | adam | adamw")->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  app.add_option("--lr", o.lr, "learning rate")->check(kPositive);
  app.add_option("--momentum", o.momentum, "SGD momentum")->check(finite_in(0.0, 0.999999, false, "[0, 0.999999]"));
  app.add_option("--weight-decay", o.weight_decay, "weight decay (AdamW: decoupled)")->check(kNonNegative);
  app.add_option("--beta1", o.beta1, "Adam/AdamW beta1")->check(finite_in(0.0, 0.999999, false, "[0, 0.999999]"));
  app.add_option("--beta2", o.beta2, "Adam/AdamW beta2")->check(finite_in(0.0, 0.999999, false, "[0, 0.999999]"));
  app.add_option("--eps", o.eps, "Adam/AdamW epsilon")->check(kPositive);
  app.add_option("--grad-clip", o.grad_clip, "clip the global gradient L2 norm to this (0: off)")->check(kNonNegative);
  app.add_option("--schedule", o.schedule, "LR schedule: constant | cosine (warmup, then cosine to 0) | warmup (DeepSpeed WarmupLR)")
      ->check(CLI::IsMember({"constant", "cosine", "warmup"}));
  app.add_option("--warmup-steps", o.warmup_steps, "warmup steps of the cosine/warmup schedules")->check(kNonNegative);
  app.add_flag("--augment", o.augment, "random crop (padding 4) and horizontal flip while training");
  app.add_option("--seed", o.seed, "seed of initialisation, shuffling and augmentation")->check(kNonNegative);
  app.add_option("--log-interval", o.log_interval, "steps between loss reports")->check(kPositive);
  app.add_option("--device", o.device, "cpu, cuda, cuda:0 or auto (cuda when a GPU is visible, else cpu)")
      ->check(examples::device_validator());
  app.add_option("--threads", o.threads, "CPU threads per rank (OpenMP and OpenBLAS; default $OMP_NUM_THREADS, else 2)")->check(finite_in(1, 1024, false, "[1, 1024]"));
  app.add_option("--metrics", o.metrics, "write JSON-lines metrics to this file")->check(examples::existing_parent_dir());
  app.add_option("--save", o.save, "write a checkpoint (safetensors) here after every epoch")
      ->check(examples::existing_parent_dir());
  app.add_option("--resume", o.resume, "continue training from this checkpoint")->check(CLI::ExistingFile);
  app.add_flag("--moe", o.moe, "replace fc3 by MoE layers (one per --num-experts entry) and a new fc4");
  app.add_option("--num-experts", o.num_experts, "experts of each MoE layer, e.g. 2 4 (a pyramid)")
      ->expected(1, 64)->check(CLI::PositiveNumber);
  app.add_option("--top-k", o.top_k, "experts per token")->check(finite_in(1, 64, false, "[1, 64]"));
  app.add_option("--ep-world-size", o.ep_world_size, "expert-parallel world size: experts spread over this many ranks (divides the rank count)")
      ->check(finite_in(1, 4096, false, "[1, 4096]"));
  app.add_option("--noisy-gate-policy", o.noisy_gate_policy, "None | Jitter | RSample")
      ->check(CLI::IsMember({"None", "Jitter", "RSample"}));
  app.add_option("--mlp-type", o.mlp_type, "standard | residual (PR-MoE)")->check(CLI::IsMember({"standard", "residual"}));
  app.add_option("--min-capacity", o.min_capacity, "minimum expert capacity")->check(kNonNegative);
  app.add_option("--capacity-factor", o.capacity_factor, "capacity factor in training")->check(kPositive);
  app.add_option("--eval-capacity-factor", o.eval_capacity_factor, "capacity factor in evaluation")->check(kPositive);
  app.add_option("--aux-loss-coef", o.aux_loss_coef, "weight of the MoE load-balancing loss added to the loss")->check(kNonNegative);
  app.add_flag("--moe-param-group", o.moe_param_group, "put expert parameters in their own optimizer group");
  examples::add_precision_flags(app, o.dtype, o.loss_scaler);
  app.add_flag("--detect-anomaly", o.detect_anomaly,
               "check every op's output and gradient; the first NaN/inf stops the run naming the op (slower)");
  app.add_option("--config", o.config,
                 "DeepSpeed-style JSON: train_batch_size, steps_per_print, gradient_clipping, optimizer, scheduler")
      ->check(CLI::ExistingFile);
  examples::last_value_wins(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    std::exit(0);
  } catch (const CLI::ParseError& e) {
    std::cerr << "mox-cifar10: " << e.what() << "\nRun with --help for usage.\n";
    std::exit(2);
  }
  if (!o.config.empty()) {
    try {
      apply_ds_config(o.config, o, [&](const std::string& flag) { return app.count(flag) > 0; });
      if (rank == 0)
        std::printf("mox-cifar10: config %s: batch %lld, %s lr %g (momentum %g, betas %g %g, eps %g, weight decay %g), "
                    "schedule %s (warmup %lld steps from %g, %s), gradient clipping %g, log every %lld steps\n",
                    o.config.c_str(), (long long)o.batch_size, o.optimizer.c_str(), o.lr, o.momentum, o.beta1, o.beta2,
                    o.eps, o.weight_decay, o.schedule.c_str(), (long long)o.warmup_steps, o.warmup_min_lr,
                    o.warmup_type.c_str(), o.grad_clip, (long long)o.log_interval);
      std::fflush(stdout);
    } catch (const std::exception& e) {
      std::cerr << "mox-cifar10: " << e.what() << "\n";
      std::exit(2);
    }
  }
  if (o.test_batch_size == 0) o.test_batch_size = o.batch_size;
  o.world_size = world_size;
  auto usage_error = [](const std::string& msg) {
    std::cerr << "mox-cifar10: " << msg << "\nRun with --help for usage.\n";
    std::exit(2);
  };
  if (o.batch_size % world_size != 0)
    usage_error(mox::str("--batch-size ", o.batch_size, " (the global batch) must be divisible by the ", world_size,
                    " ranks of this job"));
  const int64_t rank_batch = o.batch_size / world_size;
  if (o.moe && rank_batch < o.min_capacity)
    usage_error(mox::str("--batch-size ", o.batch_size, world_size > 1 ? mox::str(" over ", world_size, " ranks (", rank_batch, " per rank)") : std::string(),
                    " is smaller than --min-capacity ", o.min_capacity,
                    ": every MoE batch would hold fewer tokens than the capacity floor; raise --batch-size or lower "
                    "--min-capacity"));
  if (world_size % o.ep_world_size != 0)
    usage_error(mox::str("--ep-world-size ", o.ep_world_size, " must divide the ", world_size,
                    " ranks of this job (start it with scripts/moxrun --num_gpus N)"));
  for (int64_t e : o.num_experts)
    if (o.moe && e % o.ep_world_size != 0)
      usage_error(mox::str("--num-experts ", e, " is not a multiple of --ep-world-size ", o.ep_world_size,
                      " (each rank holds the same number of experts)"));
  if (world_size > 1 && o.ep_world_size > 1 && (!o.save.empty() || !o.resume.empty()))
    usage_error(mox::str("--save/--resume with --ep-world-size ", o.ep_world_size,
                    " > 1 are not supported yet (each rank holds different experts; the distributed engine's "
                    "checkpoints will save them); use --ep-world-size 1"));
  if (const std::string e = examples::check_precision_flags(app, o.dtype, o.loss_scaler); !e.empty()) usage_error(e);
  if (o.schedule == "warmup" && o.warmup_steps < 2) {
    std::cerr << "mox-cifar10: --schedule warmup needs --warmup-steps of at least 2, got " << o.warmup_steps
              << "\nRun with --help for usage.\n";
    std::exit(2);
  }
  for (int64_t e : o.num_experts)
    if (o.top_k > e) {
      std::cerr << "mox-cifar10: --top-k " << o.top_k << " exceeds --num-experts " << e << "\n";
      std::exit(2);
    }
  return o;
}

}  // namespace mox::cifar10
