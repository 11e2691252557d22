// options.cpp — the flags of `mox-llm train` and `mox-llm distill`, and the presets.
//
// Flag names follow nanoGPT (training) and Megatron-DeepSpeed (MoE). A preset fills the
// options first; flags given on the command line then override it (main.cpp applies the
// preset before parsing). What it is not: the training loop (train.cpp).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>

#include "examples/common/cli.h"
#include "examples/common/precision.h"
#include "examples/llm/commands.h"
#include "moe/gate.h"
#include "tensor/error.h"

namespace mox::llm {
namespace {

using examples::finite_in;

const CLI::Validator kPositive = finite_in(0, HUGE_VAL, true, "POSITIVE");
const CLI::Validator kNonNegative = finite_in(0, HUGE_VAL, false, "NONNEGATIVE");
const CLI::Validator kPositiveInt = finite_in(1, 1e15, false, "INT >= 1");
const CLI::Validator kUnit = finite_in(0, 0.999999, false, "[0, 1)");

void add_experts_flags(CLI::App& c, TrainOptions& o) {
  c.add_option("--num-experts", o.model.num_experts,
               "experts per MoE layer: one value, or one per MoE layer (pyramid); 1 = dense")
      ->expected(1, 64)->check(kPositiveInt);
  c.add_option("--moe-loss-coeff", o.moe_loss_coeff, "weight of each MoE layer's l_aux in the loss")->check(kNonNegative);
}

void add_moe_flags(CLI::App& c, TrainOptions& o) {
  ModelConfig& m = o.model;
  add_experts_flags(c, o);
  c.add_option("--expert-interval", m.expert_interval, "every n-th layer is an MoE layer")->check(kPositiveInt);
  c.add_option("--top-k", m.gate.k, "experts per token")->check(kPositiveInt);
  c.add_option("--mlp-type", [&m](const std::vector<std::string>& v) { m.use_residual = v[0] == "residual"; return true; },
               "standard | residual (PR-MoE)")
      ->check(CLI::IsMember({"standard", "residual"}));
  c.add_option("--capacity-factor", m.gate.capacity_factor, "expert capacity factor in training")->check(kPositive);
  c.add_option("--eval-capacity-factor", m.gate.eval_capacity_factor, "expert capacity factor in evaluation")
      ->check(kPositive);
  c.add_option("--min-capacity", m.gate.min_capacity, "minimum expert capacity")->check(kNonNegative);
  c.add_option("--router-z-loss-coeff", m.gate.z_loss_coef, "weight of the router z-loss (ST-MoE)")->check(kNonNegative);
  c.add_option("--noisy-gate-policy",
               [&m](const std::vector<std::string>& v) { m.gate.noisy_gate_policy = moe::parse_noisy_gate_policy(v[0]); return true; },
               "None | Jitter | RSample")
      ->check(CLI::IsMember({"None", "Jitter", "RSample"}));
  c.add_flag("--drop-tokens,!--no-drop-tokens", m.gate.drop_tokens, "drop tokens over capacity (default) or run dropless");
}

void add_model_flags(CLI::App& c, TrainOptions& o) {
  ModelConfig& m = o.model;
  c.add_option("--arch", m.arch, "gpt (LayerNorm, GELU, learned positions) | llama (RMSNorm, RoPE, SwiGLU)")
      ->check(CLI::IsMember({"gpt", "llama"}));
  c.add_option("--n-head", m.n_head, "attention heads")->check(kPositiveInt);
  c.add_option("--n-embd", m.n_embd, "model width")->check(kPositiveInt);
  c.add_option("--block-size", m.block_size, "context length in tokens")->check(kPositiveInt);
  c.add_option("--dropout", m.dropout, "dropout probability")->check(kUnit);
  c.add_flag("--bias,!--no-bias", m.bias, "biases in Linears and LayerNorms (default: none, as nanoGPT)");
  add_moe_flags(c, o);
}

void add_training_flags(CLI::App& c, TrainOptions& o) {
  c.add_option("--data", o.data, "corpus file (default $MOX_DATA/tinyshakespeare/input.txt)");
  c.add_option("--tokenizer", o.tokenizer, "auto (characters if valid UTF-8, else bytes) | char | byte")
      ->check(CLI::IsMember({"auto", "char", "byte"}));
  c.add_option("--preset", o.preset, "shakespeare-cpu | shakespeare-gpu (nanoGPT's configs; flags override)")
      ->check(CLI::IsMember({"shakespeare-cpu", "shakespeare-gpu"}));
  c.add_option("--batch-size", o.batch_size,
               "sequences per micro-batch, over all ranks (the global batch: each of W ranks takes batch-size/W)")
      ->check(kPositiveInt);
  c.add_option("--max-iters", o.max_iters, "optimizer steps")->check(kNonNegative);
  c.add_option("--grad-accum", o.grad_accum, "micro-batches per optimizer step")->check(kPositiveInt);
  c.add_option("--lr", o.lr, "peak learning rate")->check(kPositive);
  c.add_option("--min-lr", o.min_lr, "learning rate after the cosine decay")->check(kNonNegative);
  c.add_option("--warmup-iters", o.warmup_iters, "linear warmup steps")->check(kNonNegative);
  c.add_option("--lr-decay-iters", o.lr_decay_iters, "step at which the cosine decay reaches min-lr")->check(kPositiveInt);
  c.add_option("--weight-decay", o.weight_decay, "AdamW weight decay (2-D parameters only)")->check(kNonNegative);
  c.add_option("--beta1", o.beta1, "AdamW beta1")->check(kUnit);
  c.add_option("--beta2", o.beta2, "AdamW beta2")->check(kUnit);
  c.add_option("--grad-clip", o.grad_clip, "clip the global gradient norm (0 = off)")->check(kNonNegative);
  c.add_option("--eval-interval", o.eval_interval, "steps between evaluations and checkpoints")->check(kPositiveInt);
  c.add_option("--eval-iters", o.eval_iters, "batches per loss estimate")->check(kPositiveInt);
  c.add_option("--log-interval", o.log_interval, "steps per train metrics record")->check(kPositiveInt);
  c.add_option("--seed", o.seed, "seed of initialisation, data sampling, dropout and routing noise")->check(kNonNegative);
  c.add_option("--threads", o.threads, "CPU threads per rank (default $OMP_NUM_THREADS when set, else 2)")
      ->check(finite_in(1, 1024, false, "[1, 1024]"));
  add_device_flag(c, o.device);
  c.add_option("--ep-size,--ep-world-size", o.ep_size,
               "expert-parallel size: each MoE layer's experts spread over this many ranks (divides the rank count "
               "and every MoE layer's expert count; start the job with scripts/moxrun)")
      ->check(finite_in(1, 4096, false, "[1, 4096]"));
  c.add_option("--out", o.out, "checkpoint directory (last.safetensors, best.safetensors)");
  c.add_flag("--resume", o.resume,
             "continue from <out>/last.safetensors (its architecture; keep the first run's training flags, only "
             "--max-iters may grow, for a bitwise-identical continuation)");
  c.add_flag("--detect-anomaly", o.detect_anomaly,
             "check every op's output and gradient; the first NaN/inf stops the run naming the op (slower)");
  examples::add_precision_flags(c, o.dtype, o.loss_scaler);
  c.add_option("--attention", o.attention,
               "attention kernel: fused (flash-style, O(T) memory) | materialized (keeps the T x T probabilities; "
               "GEMM-based) | auto (fused on CUDA; on the CPU fused from 512 keys on)")
      ->check(CLI::IsMember({"auto", "fused", "materialized"}));
  c.add_option("--metrics", o.metrics, "write JSON-lines metrics to this file")->check(examples::existing_parent_dir());
}

}  // namespace

void apply_preset(const std::string& name, TrainOptions& o) {
  if (name == "shakespeare-cpu") {   // nanoGPT README, "I only have a macbook"
    o.model.n_layer = 4;
    o.model.n_head = 4;
    o.model.n_embd = 128;
    o.model.block_size = 64;
    o.model.dropout = 0.0;
    o.batch_size = 12;
    o.max_iters = 2000;
    o.lr_decay_iters = 2000;
    o.eval_iters = 20;
  } else if (name == "shakespeare-gpu") {   // nanoGPT config/train_shakespeare_char.py
    o.model.n_layer = 6;
    o.model.n_head = 6;
    o.model.n_embd = 384;
    o.model.block_size = 256;
    o.model.dropout = 0.2;
    o.batch_size = 64;
    o.max_iters = 5000;
    o.lr_decay_iters = 5000;
    o.eval_iters = 200;
  } else {
    MOX_FAIL("--preset '", name, "' is not one of shakespeare-cpu, shakespeare-gpu");
  }
  // Both: nanoGPT's shakespeare_char settings.
  o.lr = 1e-3;
  o.min_lr = 1e-4;
  o.beta2 = 0.99;
  o.warmup_iters = 100;
  o.eval_interval = 250;
}

void check_expert_parallel(const TrainOptions& o, const std::vector<int64_t>& experts_per_layer, int64_t world_size) {
  if (o.ep_size == 1) return;
  if (world_size % o.ep_size != 0)
    throw UsageError(str("--ep-size ", o.ep_size, " must divide the ", world_size, " rank", world_size == 1 ? "" : "s",
                         " of this job (start it with scripts/moxrun --num_gpus N, N a multiple of ", o.ep_size, ")"));
  bool has_moe = false;
  for (size_t l = 0; l < experts_per_layer.size(); ++l) {
    const int64_t e = experts_per_layer[l];
    if (e <= 1) continue;
    has_moe = true;
    if (e % o.ep_size != 0)
      throw UsageError(str("--ep-size ", o.ep_size, " must divide every MoE layer's expert count, but block ", l,
                           " has ", e, " experts (each rank holds the same number of experts)"));
  }
  if (has_moe && (o.out_given || o.resume))
    throw UsageError(str("--out/--resume with --ep-size ", o.ep_size,
                         " > 1: expert-parallel checkpoints are not supported yet by mox-llm (each rank holds different "
                         "experts); leave out --out and --resume (the run then writes no checkpoint) or use --ep-size 1"));
}

void validate_train_options(const TrainOptions& o, bool distill, int64_t world_size) {
  MOX_CHECK(o.lr_decay_iters > o.warmup_iters, "--lr-decay-iters ", o.lr_decay_iters, " must exceed --warmup-iters ",
            o.warmup_iters);
  MOX_CHECK(o.min_lr <= o.lr, "--min-lr ", o.min_lr, " must not exceed --lr ", o.lr);
  if (o.batch_size % world_size != 0)
    throw UsageError(str("--batch-size ", o.batch_size, " (the global batch) must be divisible by the ", world_size,
                         " ranks of this job"));
  if (world_size % o.ep_size != 0) check_expert_parallel(o, {}, world_size);   // throws naming both numbers
  if (distill) return;   // the student's architecture comes from the teacher, checked when it is built
  ModelConfig m = o.model;
  m.vocab_size = 1;   // known once the corpus is read
  m.validate();
  for (int64_t e : m.experts_per_layer()) {
    if (e <= 1) continue;
    moe::GateConfig g = m.gate;
    g.num_experts = e;
    moe::TopKGate check(1, g);   // throws on k > E, RSample with k ≥ 2, ...
  }
  // run_train checks again with the architecture it builds (a resumed run's comes from the checkpoint).
  check_expert_parallel(o, m.experts_per_layer(), world_size);
}

void add_train_command(CLI::App& app, TrainOptions& o) {
  CLI::App* c = app.add_subcommand("train", "train a GPT/Llama-style (MoE) language model on a text file");
  c->option_defaults()->always_capture_default();
  c->add_option("--n-layer", o.model.n_layer, "transformer blocks")->check(kPositiveInt);
  add_model_flags(*c, o);
  add_training_flags(*c, o);
}

void add_distill_command(CLI::App& app, TrainOptions& o) {
  CLI::App* c = app.add_subcommand(
      "distill",
      "Mixture-of-Students: train a shallower student with CE + moe-loss + kd-beta*T^2*KL(teacher||student), "
      "dropping the KD term after --kd-stop-iter (staged KD)");
  c->option_defaults()->always_capture_default();
  c->add_option("--teacher", o.teacher, "the trained teacher's checkpoint (file or training directory)")->required();
  c->add_option("--student-layers", o.model.n_layer, "the student's transformer blocks")->check(kPositiveInt)->required();
  c->add_option("--kd-beta", o.kd_beta, "weight of the distillation term")->check(kNonNegative);
  c->add_option("--kd-temp", o.kd_temp, "distillation temperature")->check(kPositive);
  c->add_option("--kd-stop-iter", o.kd_stop_iter, "step after which the KD term is dropped (-1: never)")
      ->check(finite_in(-1, 1e15, false, ">= -1"));
  // The student is the teacher's architecture: only its depth and experts are chosen here.
  add_experts_flags(*c, o);
  add_training_flags(*c, o);
}

}  // namespace mox::llm
