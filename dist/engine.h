// engine.h — Engine: DeepSpeed-style training engine over data and expert parallelism.
//
//   dist::init();
//   dist::DsConfig cfg = dist::read_ds_config("ds_config.json");
//   dist::Initialized run = dist::initialize(model, cfg, train_set);   // engine + per-rank loader
//   for (...) {
//     run.loader->next(batch);
//     Tensor loss = loss_fn(run.engine->forward(batch.images), batch.labels);   // this rank's mean
//     run.engine->backward(loss);
//     run.engine->step();   // acts every gradient_accumulation_steps micro-batches
//   }
//
// What step() does at an accumulation boundary, in order: average gradients over the ranks
// (GradientReducer: dense over the world, experts over their expert-data-parallel group ÷ W);
// with fp16/bf16, copy them to the fp32 master weights; with fp16, agree over the world whether
// any gradient overflowed — if so skip the step (parameters unchanged) and let the loss scaler
// halve its scale (DeepSpeed's semantics, nn/optim/loss_scaler.h) — else unscale; clip to
// gradient_clipping by the global norm (expert gradients summed over their expert-parallel
// group, as DeepSpeed); set the learning rate from the WarmupLR schedule; optimizer step;
// with ZeRO stage 1 each rank updates only the parameters it owns (optimizer state sharded
// over the data-parallel ranks, whole tensors balanced by size) and broadcasts them; copy the
// masters back to the model's 16-bit weights; zero the gradients. Every steps_per_print steps
// rank 0 prints the step, lr, loss scale, skipped steps (and with wall_clock_breakdown the
// time spent in forward/backward/reduce/step). The local mechanics of fp16/bf16 — the 16-bit
// model with fp32 routers, the masters, the loss scaler — are optim::MixedPrecision's
// (nn/optim/mixed_precision.h); the engine adds the collectives (the overflow flag's all-reduce).
//
// Checkpoints (save/load) are described in engine_checkpoint.cpp: dense weights once, each
// expert under its global id, optimizer state by parameter, loss scaler, step counters, RNG
// and loader position, a commit marker last; they load under another world size or ep_size.
//
// What it is not: no ZeRO 2/3, no overlap of communication with backward, no pipeline or
// tensor parallelism, no activation checkpointing; the optimizer is built from the config
// (SGD, Adam, AdamW) — a client optimizer object is not accepted.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/dataloader.h"
#include "dist/data_parallel.h"
#include "dist/ds_config.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/mixed_precision.h"
#include "nn/optim/optimizer.h"

namespace mox::dist {

class Engine {
 public:
  // Collective over the world (dist::init() first). `groups` are the optimizer's parameter
  // groups (hyper-parameters from the config fill the fields); empty: one group "default"
  // with every parameter. Expert parameters are moved to groups of their own
  // (moe::split_moe_param_groups), as DeepSpeed requires. Throws on a config the world
  // cannot satisfy (batch identity, ZeRO stage, optimizer missing).
  Engine(std::shared_ptr<nn::Module> model, DsConfig config, std::vector<optim::ParamGroup> groups = {});

  nn::Module& module() { return *model_; }
  Tensor forward(const Tensor& x);
  // Backpropagates this rank's micro-batch loss, scaled by 1/accum (and the fp16 loss scale).
  void backward(const Tensor& loss);
  // Counts the micro-step; at an accumulation boundary runs the update described above.
  // Returns true when parameters changed (false between boundaries and on an overflow skip).
  bool step();
  bool is_gradient_accumulation_boundary() const;

  // The same on every rank, so rank 0's log is everyone's: the fp16 overflow flag is
  // max-reduced over the world before each step, so every rank skips the same steps.
  int64_t global_steps() const { return global_steps_; }   // optimizer steps taken (incl. skipped)
  int64_t micro_steps() const { return micro_steps_; }
  int64_t skipped_steps() const { return skipped_steps_; }
  double lr() const;
  double loss_scale() const { return mp_->loss_scale(); }   // 1 without fp16
  const BatchSizes& batch_sizes() const { return batch_; }
  const DsConfig& config() const { return cfg_; }
  optim::Optimizer& optimizer() { return *optimizer_; }
  // The parameters this rank's optimizer updates (all, or its ZeRO-1 share), by global name.
  std::vector<std::string> owned_parameters() const;

  // The loader the engine feeds (its position goes into checkpoints); set by initialize().
  void attach_loader(data::DataLoader* loader) { loader_ = loader; }

  // Collective. Writes a checkpoint under `dir` (see engine_checkpoint.cpp); `client` is
  // stored beside the engine state and returned by load().
  void save(const std::string& dir, const std::map<std::string, std::string>& client = {});
  // Collective. Restores the newest committed checkpoint under `dir` (written by save()),
  // under this engine's world size and ep sizes. Errors name the file and the key.
  std::map<std::string, std::string> load(const std::string& dir);

 private:
  struct Param {
    std::string name;          // global name: an expert's local index replaced by its global id
    Tensor param;              // the model's parameter
    Tensor master;             // its fp32 master (mp_), the parameter itself when that is f32
    std::string expert_group;  // "" for dense, else "ep_size_<p>"
    std::shared_ptr<ProcessGroup> group;   // where it is replicated: world or expert-data-parallel
    int owner = 0;             // group rank that updates it (ZeRO-1) and writes it to checkpoints
  };

  void build_params();
  void build_optimizer(std::vector<optim::ParamGroup> groups);
  bool overflowed();
  void clip_gradients(double max_norm);
  void broadcast_owned();
  void log_step();

  std::shared_ptr<nn::Module> model_;
  DsConfig cfg_;
  BatchSizes batch_;
  std::shared_ptr<ProcessGroup> world_;
  std::unique_ptr<GradientReducer> reducer_;
  std::vector<Param> params_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::LrSchedule> schedule_;
  // The model in the config's dtype (f32, fp16 or bf16; routers f32), fp32 masters, the fp16
  // loss scaler: the local mechanics of mixed precision; the engine adds the collectives.
  std::unique_ptr<optim::MixedPrecision> mp_;
  data::DataLoader* loader_ = nullptr;
  int64_t micro_steps_ = 0, global_steps_ = 0, skipped_steps_ = 0;
  // wall_clock_breakdown: seconds since the last print
  double t_forward_ = 0, t_backward_ = 0, t_reduce_ = 0, t_step_ = 0;
};

struct Initialized {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<data::DataLoader> loader;   // null when no dataset was given
};

// deepspeed.initialize: builds the Engine and, for an image dataset, this rank's loader of
// micro-batches (shuffled with `loader_options.seed`, sharded over the data-parallel ranks;
// batch size, rank and world size are set here).
Initialized initialize(std::shared_ptr<nn::Module> model, const DsConfig& config,
                       std::shared_ptr<const data::Dataset> training_data = nullptr,
                       data::LoaderOptions loader_options = {}, std::vector<optim::ParamGroup> groups = {});

}  // namespace mox::dist
