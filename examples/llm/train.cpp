// train.cpp — `mox-llm train` and `mox-llm distill`: nanoGPT's training loop for the
// Transformer, with MoE auxiliary losses, routing statistics, exact resume and (distill)
// Mixture-of-Students knowledge distillation from a frozen teacher.
//
// One iteration: the LR of nanoGPT's schedule (linear warmup, cosine to min_lr at
// lr_decay_iters), grad_accum micro-batches of random blocks (each: CE + moe_loss_coeff·Σ
// l_aux + z-loss [+ β·T²·KL(teacher‖student) while distilling], divided by grad_accum,
// backward), gradient clipping, AdamW step (weight decay on ≥2-D parameters only, as
// nanoGPT; expert parameters in their own groups). Every eval_interval iterations (0
// included, and at max_iters) the train and val losses are estimated on eval_iters fixed
// batches (the same batches at every evaluation, drawn from their own generator, so the
// estimate is comparable across steps and never perturbs training), and <out>/last and, on a
// new best val loss, <out>/best are written. --resume continues from <out>/last with the
// optimizer, both generators, the step and the best loss restored: the continued run's
// losses are bitwise those of an uninterrupted run.
//
// What it is not: distributed (the engine of the distributed issue), mixed precision.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "datasets/text.h"
#include "examples/common/metrics.h"
#include "examples/llm/checkpoint.h"
#include "examples/llm/commands.h"
#include "moe/param_groups.h"
#include "moe/routing_stats.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/lr_scheduler.h"
#include "tensor/cpu/threads.h"

namespace mox::llm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kEvalSeedSalt = 0x6576616c;   // "eval": the evaluation batches' generator

std::unique_ptr<optim::AdamW> make_optimizer(const TrainOptions& o, const Transformer& model) {
  nn::NamedTensors decay, no_decay;
  for (auto& [name, p] : model.named_parameters()) (p.dim() >= 2 ? decay : no_decay).emplace_back(name, p);
  std::vector<optim::ParamGroup> groups{optim::make_group("decay", decay), optim::make_group("no_decay", no_decay)};
  for (auto& g : groups) {
    g.lr = o.lr;
    g.weight_decay = g.name == "decay" ? o.weight_decay : 0.0;
    g.beta1 = o.beta1;
    g.beta2 = o.beta2;
  }
  return std::make_unique<optim::AdamW>(moe::split_moe_param_groups(std::move(groups), model));
}

Tensor lm_loss(const Tensor& logits, const Tensor& y) {   // logits (B, T, V), y (B, T)
  const int64_t V = logits.size(2);
  return nn::cross_entropy(logits.reshape({-1, V}), y.reshape({-1}));
}

// β·T²·KL(p_teacher ‖ p_student) at temperature T, mean over tokens (Hinton et al.).
Tensor kd_loss(const Tensor& student_logits, const Tensor& teacher_logits, double beta, double temp) {
  const int64_t V = student_logits.size(2);
  Tensor s = log_softmax(student_logits.reshape({-1, V}) / temp, -1);   // (N, V)
  Tensor log_t = log_softmax(teacher_logits.reshape({-1, V}) / temp, -1);   // constant
  Tensor p_t = exp(log_t);
  const double n = double(s.size(0));
  return sum(p_t * (log_t - s)) * (beta * temp * temp / n);
}

// Mean LM loss over the fixed evaluation batches of a split (eval mode, no grad).
double estimate_loss(Transformer& model, const data::TextDataset& ds, data::Split split, const TrainOptions& o) {
  autograd::NoGradGuard no_grad;
  model.eval();
  Generator gen(o.seed ^ kEvalSeedSalt);
  double total = 0;
  for (int64_t i = 0; i < o.eval_iters; ++i) {
    data::TextBatch b = ds.sample(split, o.batch_size, gen);
    total += lm_loss(model.forward(b.x), b.y).item<double>();
  }
  model.train();
  return total / double(o.eval_iters);
}

}  // namespace

int run_train(const TrainOptions& opts) {
  TrainOptions o = opts;
  set_num_threads(int(o.threads));
  manual_seed(o.seed);   // the routers' initialisation draws from the default generator
  autograd::set_anomaly_mode(o.detect_anomaly);
  const bool distill = !o.teacher.empty();
  std::optional<Loaded> teacher;
  std::shared_ptr<const data::Tokenizer> tokenizer;
  if (distill) {
    teacher = load_llm(o.teacher);
    teacher->model->eval();   // frozen; eval routing draws no random numbers
    tokenizer = teacher->tokenizer;
    // The student is the teacher's architecture with --student-layers blocks and, unless
    // --num-experts is given, the teacher's experts (a pyramid list cut to the student's depth).
    ModelConfig student = teacher->config;
    student.n_layer = o.model.n_layer;
    if (o.student_experts_given) student.num_experts = o.model.num_experts;
    else if (student.num_experts.size() > 1)
      student.num_experts.resize(size_t(std::max<int64_t>(student.n_layer / student.expert_interval, 1)));
    student.expert_interval = std::min(student.expert_interval, student.n_layer);
    o.model = student;
  }
  const std::string last_path = o.out + "/last.safetensors", best_path = o.out + "/best.safetensors";
  if (o.resume) {
    const nn::Metadata resumed = nn::read_checkpoint_metadata(resolve_checkpoint(last_path));
    tokenizer = data::tokenizer_from_json(nn::require_meta(resumed, "tokenizer", last_path));
    o.model = ModelConfig::from_json(nn::require_meta(resumed, "config", last_path));
  }
  std::unique_ptr<data::TextDataset> ds =
      tokenizer ? std::make_unique<data::TextDataset>(o.data, tokenizer, o.model.block_size)
                : std::make_unique<data::TextDataset>(o.data, o.model.block_size, 0.9, data::parse_tokenizer_kind(o.tokenizer));
  o.model.vocab_size = ds->tokenizer().vocab_size();

  auto model_gen = std::make_shared<Generator>(o.seed);
  Generator data_gen(o.seed + 1);
  Transformer model(o.model, model_gen);
  std::unique_ptr<optim::AdamW> optimizer = make_optimizer(o, model);
  int64_t step = 0, skip_eval_at = -1;   // a resumed run has already evaluated its first step
  double best_val = INFINITY;
  if (o.resume) {
    nn::Metadata meta = nn::load_checkpoint(last_path, model, optimizer.get());
    step = nn::require_meta_count(meta, "step", last_path);
    best_val = nn::require_meta_number(meta, "best_val_loss", last_path);
    nn::restore_generator(*model_gen, meta, "model_rng", last_path);
    nn::restore_generator(data_gen, meta, "data_rng", last_path);
    skip_eval_at = step;
    std::printf("resumed from %s at step %lld (best val loss %.4f)\n", last_path.c_str(), (long long)step, best_val);
  }
  std::filesystem::create_directories(o.out);
  examples::MetricsWriter metrics(o.metrics, /*append=*/o.resume);

  optim::WarmupCosineLrOptions so;
  so.lr = o.lr;
  so.min_lr = o.min_lr;
  so.warmup_iters = o.warmup_iters;
  so.lr_decay_iters = o.lr_decay_iters;
  optim::WarmupCosineLr schedule(so);

  std::printf("mox-llm %s: %s, %lld params, %s; %lld train / %lld val tokens; batch %lld x %lld tokens, grad_accum %lld, "
              "%lld iters, %lld threads\n",
              distill ? "distill" : "train", model.repr().c_str(), (long long)model.num_parameters(),
              ds->tokenizer().describe().c_str(), (long long)ds->size(data::Split::train),
              (long long)ds->size(data::Split::val), (long long)o.batch_size, (long long)o.model.block_size,
              (long long)o.grad_accum, (long long)o.max_iters, (long long)o.threads);
  std::fflush(stdout);

  auto save = [&](const std::string& path) {
    nn::Metadata meta = base_metadata(model, ds->tokenizer(), false);
    meta["step"] = std::to_string(step);
    meta["best_val_loss"] = str(best_val);
    meta["model_rng"] = nn::generator_state(*model_gen);
    meta["data_rng"] = nn::generator_state(data_gen);
    meta["train_options"] = nlohmann::json{{"lr", o.lr}, {"min_lr", o.min_lr}, {"batch_size", o.batch_size},
                                           {"max_iters", o.max_iters}, {"seed", o.seed}, {"distill", distill}}
                                .dump();
    nn::save_checkpoint(path, model, optimizer.get(), meta);
  };

  moe::RoutingStats routing;
  const bool has_moe = !model.moe_layers().empty();
  std::vector<int64_t> moe_blocks;   // the block index of each MoE layer, for the routing records
  const std::vector<int64_t> experts = model.config().experts_per_layer();
  for (size_t l = 0; l < experts.size(); ++l)
    if (experts[l] > 1) moe_blocks.push_back(int64_t(l));
  double window_loss = 0, window_aux = 0, window_kd = 0;
  int64_t window_steps = 0, window_tokens = 0;
  auto window_start = Clock::now();
  const auto run_start = Clock::now();
  for (;; ++step) {
    if ((step % o.eval_interval == 0 || step == o.max_iters) && step != skip_eval_at) {
      const auto eval_start = Clock::now();
      const double train_loss = estimate_loss(model, *ds, data::Split::train, o);
      const double val_loss = estimate_loss(model, *ds, data::Split::val, o);
      const double secs = std::chrono::duration<double>(Clock::now() - run_start).count();
      std::printf("step %lld: train loss %.4f, val loss %.4f (%.0f s)\n", (long long)step, train_loss, val_loss, secs);
      std::fflush(stdout);
      metrics.write({{"split", "val"}, {"step", step}, {"loss", val_loss}, {"train_loss", train_loss},
                     {"elapsed_s", secs}});
      const bool improved = val_loss < best_val;
      if (improved) best_val = val_loss;
      save(last_path);
      if (improved) save(best_path);
      window_start += Clock::now() - eval_start;   // tokens/s counts training time only
    }
    if (step >= o.max_iters) break;

    schedule.apply(*optimizer, step);
    optimizer->zero_grad();
    double step_loss = 0, step_aux = 0, step_kd = 0;
    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      data::TextBatch b = ds->sample(data::Split::train, o.batch_size, data_gen);
      Tensor logits = model.forward(b.x);   // (B, T, V)
      Tensor ce = lm_loss(logits, b.y);
      Tensor loss = ce;
      if (has_moe) {
        Tensor aux = model.aux_loss(o.moe_loss_coeff);
        loss = loss + aux;
        step_aux += aux.item<double>();
        routing.add(model.moe_layers());
      }
      if (distill && (o.kd_stop_iter < 0 || step < o.kd_stop_iter)) {
        Tensor t_logits;
        {
          autograd::NoGradGuard no_grad;
          t_logits = teacher->model->forward(b.x);
        }
        Tensor kd = kd_loss(logits, t_logits, o.kd_beta, o.kd_temp);
        step_kd += kd.item<double>();
        loss = loss + kd;
      }
      (loss / double(o.grad_accum)).backward();
      const double l = ce.item<double>();
      MOX_CHECK(std::isfinite(l), "training loss became ", l, " at step ", step, " — lower --lr or check the data");
      step_loss += l / double(o.grad_accum);
      window_tokens += b.x.numel();
    }
    if (o.grad_clip > 0) optim::clip_grad_norm(model.parameters(), o.grad_clip);
    optimizer->step();
    window_loss += step_loss;
    window_aux += step_aux / double(o.grad_accum);
    window_kd += step_kd / double(o.grad_accum);
    ++window_steps;
    if ((step + 1) % o.log_interval == 0 || step + 1 == o.max_iters) {
      const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double tps = double(window_tokens) / secs;
      nlohmann::json rec = {{"split", "train"}, {"step", step + 1}, {"loss", window_loss / double(window_steps)},
                            {"lr", optimizer->lr(0)}, {"tokens_per_s", tps}};
      if (has_moe) rec["aux_loss"] = window_aux / double(window_steps);
      if (distill) rec["kd_loss"] = window_kd / double(window_steps);
      metrics.write(rec);
      for (nlohmann::json& r : routing.records()) {
        r["step"] = step + 1;
        r["block"] = moe_blocks[r["layer"].get<size_t>()];
        metrics.write(r);
      }
      if ((step + 1) % (o.log_interval * 10) == 0 || step + 1 == o.max_iters) {
        std::printf("iter %lld: loss %.4f, lr %.3g, %.0f tokens/s\n", (long long)step + 1,
                    window_loss / double(window_steps), optimizer->lr(0), tps);
        std::fflush(stdout);
      }
      window_loss = window_aux = window_kd = 0;
      window_steps = window_tokens = 0;
      window_start = Clock::now();
    }
  }
  std::printf("done: %lld iterations, best val loss %.4f, %.0f s; checkpoints in %s\n", (long long)step, best_val,
              std::chrono::duration<double>(Clock::now() - run_start).count(), o.out.c_str());
  return 0;
}

}  // namespace mox::llm
