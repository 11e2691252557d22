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
// Distributed (under scripts/moxrun, W ranks): data parallel over all ranks, and with
// --ep-size p expert parallel — each MoE layer's experts spread over groups of p ranks.
// Every rank builds the same model from the same seed (the experts it does not hold are drawn
// and discarded, model.h), then rank 0's weights are broadcast. Each micro-batch, every rank
// draws the whole global batch of --batch-size blocks from the shared data generator (B
// offsets: cheap) and keeps rows [r·B/W, (r+1)·B/W), so the W ranks together see exactly the
// batch one process would. After backward, dist::GradientReducer averages the gradients (dense
// over the world; experts over their expert-data-parallel group, divided by W), then the global
// norm is clipped (with p > 1 the experts' part of the squared norm is summed over the
// expert-parallel group) and every rank takes the same AdamW step. Rank r > 0 draws dropout
// masks and routing noise from its own stream (the seed moved by r; checkpoints keep every
// rank's stream, so a resume on as many ranks is exact), so a W-rank run differs from the
// one-process run by those draws only; without dropout and noise,
// and with no token dropped (capacity is per rank, as in DeepSpeed), it follows the one-process
// run up to rounding — except the load-balancing l_aux, which each rank computes over its own
// tokens (as DeepSpeed does). Evaluation: every rank runs the same full eval batches (an
// expert-parallel layer needs every rank in every forward). Logged losses, routing statistics
// and tokens/s are over all ranks; rank 0 prints and writes metrics and checkpoints (with
// --ep-size 1 its replica is the model; with p > 1 and MoE layers no checkpoint is written —
// options.cpp refuses --out/--resume).
//
// Devices (--device, choose_device in commands.h): the model (and the teacher) is built, or
// loaded, on the CPU and moved with Module::to(device) before the GradientReducer and the
// optimizer are made, so both hold the device tensors; every batch (x, y) is built on the CPU
// (sampling, this rank's rows) and then moved. Checkpoints are written from any device
// (save_safetensors copies each tensor to the CPU) and --resume loads into the model where it
// is (load_state_dict and the optimizer copy each value onto its parameter's device). The
// bookkeeping collectives (losses, routing records, generator states, clipping's expert norm)
// move small CPU tensors (MPI) whatever the device. With several ranks "auto" stays on the CPU
// (device.cpp says why); an explicit cuda goes ahead: the GradientReducer's collectives then
// move CUDA tensors over NCCL (dist/transport.h), or its first one fails saying why (a build
// without NCCL, two ranks on one GPU).
//
// Mixed precision (--dtype fp16|bf16; optim::MixedPrecision, examples/common/precision.h): the
// model's weights and activations in 16 bits, AdamW on fp32 master weights, routers fp32, the
// losses (CE, l_aux, KD) in f32; fp16 scales the loss and skips a step whose gradients
// overflow on any rank (the LR schedule counts only the steps taken). The distillation teacher
// stays as loaded (f32 or int8): it is frozen, so it has no masters to keep. Checkpoints hold the
// fp32 masters, so generate and eval read them as any other.
//
// What it is not: overlap of gradient reduction with backward, expert-parallel checkpoints.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <optional>
#include <set>

#include "datasets/text.h"
#include "dist/data_parallel.h"
#include "dist/groups.h"
#include "dist/world.h"
#include "examples/common/loss_window.h"
#include "examples/common/metrics.h"
#include "examples/common/precision.h"
#include "examples/llm/checkpoint.h"
#include "examples/llm/commands.h"
#include "moe/gate.h"
#include "moe/param_groups.h"
#include "moe/routing_stats.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/lr_scheduler.h"
#include "tensor/cpu/threads.h"
#include "tensor/ops.h"

namespace mox::llm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kEvalSeedSalt = 0x6576616c;   // "eval": the evaluation batches' generator

// Over the fp32 masters of mixed precision (the parameters themselves with --dtype fp32).
std::unique_ptr<optim::AdamW> make_optimizer(const TrainOptions& o, const Transformer& model,
                                             const optim::MixedPrecision& mp) {
  nn::NamedTensors decay, no_decay;
  for (auto& [name, p] : model.named_parameters()) (p.dim() >= 2 ? decay : no_decay).emplace_back(name, p);
  std::vector<optim::ParamGroup> groups{optim::make_group("decay", decay), optim::make_group("no_decay", no_decay)};
  for (auto& g : groups) {
    g.lr = o.lr;
    g.weight_decay = g.name == "decay" ? o.weight_decay : 0.0;
    g.beta1 = o.beta1;
    g.beta2 = o.beta2;
  }
  return std::make_unique<optim::AdamW>(mp.master_groups(moe::split_moe_param_groups(std::move(groups), model)));
}

Tensor lm_loss(const Tensor& logits, const Tensor& y) {   // logits (B, T, V) in any float dtype, y (B, T)
  const int64_t V = logits.size(2);
  return nn::cross_entropy(logits.to(DType::f32).reshape({-1, V}), y.reshape({-1}));   // in f32
}

// β·T²·KL(p_teacher ‖ p_student) at temperature T, mean over tokens (Hinton et al.).
Tensor kd_loss(const Tensor& student_logits, const Tensor& teacher_logits, double beta, double temp) {
  const int64_t V = student_logits.size(2);
  Tensor s = log_softmax(student_logits.to(DType::f32).reshape({-1, V}) / temp, -1);   // (N, V), in f32
  Tensor log_t = log_softmax(teacher_logits.to(DType::f32).reshape({-1, V}) / temp, -1);   // constant
  Tensor p_t = exp(log_t);
  const double n = double(s.size(0));
  return sum(p_t * (log_t - s)) * (beta * temp * temp / n);
}

// The seed of rank r's model generator (dropout masks, routing noise); rank 0 keeps the run's.
uint64_t rank_seed(uint64_t seed, int rank) { return seed + uint64_t(rank) * 0x9E3779B97F4A7C15ull; }

// This rank's rows [r·B/W, (r+1)·B/W) of a global batch (B divisible by W, options.cpp).
data::TextBatch shard(const data::TextBatch& b, const dist::ProcessGroup& world) {
  if (world.size() == 1) return b;
  const int64_t n = b.x.size(0) / world.size(), first = world.rank() * n;
  return {b.x.narrow(0, first, n).contiguous(), b.y.narrow(0, first, n).contiguous()};   // (B/W, T) each
}

// Clips the gradient norm of the whole model, as clip_grad_norm does in one process. With
// ep_size 1 every rank holds every parameter and the same reduced gradients. With ep_size p > 1
// a rank holds E/p experts of each MoE layer: the experts' part of the squared norm is summed
// over the expert-parallel group (their gradients are equal across the expert-data-parallel
// group after the reduction), as DeepSpeed's clip_grad_norm_ does. The gradients clipped are the
// fp32 masters' (the parameters' own with --dtype fp32).
void clip_gradients(const Transformer& model, const optim::MixedPrecision& mp, double max_norm, int64_t ep_size) {
  if (ep_size == 1 || model.moe_layers().empty()) {
    optim::clip_grad_norm(mp.masters(), max_norm);
    return;
  }
  std::set<std::string> expert_names;
  for (const moe::ExpertParameter& e : moe::expert_parameters(model)) expert_names.insert(e.name);
  std::vector<Tensor> grads;
  double dense_sq = 0, expert_sq = 0;
  for (const optim::MixedPrecision::Weight& w : mp.weights()) {
    Tensor g = w.master.grad();
    if (!g.defined()) continue;
    grads.push_back(g);
    const double sq = raw::sum(raw::unary(UnaryOp::square, raw::to_dtype(g, DType::f64))).item<double>();
    (expert_names.count(w.name) ? expert_sq : dense_sq) += sq;
  }
  Tensor e = from_vector<double>({expert_sq}, {1});
  dist::expert_groups(int(ep_size)).expert_parallel->all_reduce(e);
  const double norm = std::sqrt(dense_sq + e.to_vector<double>()[0]);
  if (!std::isfinite(norm)) return;   // as clip_grad_norm: left to the loss check
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1)
    for (Tensor& g : grads) raw::mul_(g, coef);
}

// Rank 0's routing records become the whole job's: tokens_per_expert and dropped assignments
// summed over the ranks; l_aux, z_loss and entropy (each a mean over a rank's tokens, and the
// ranks hold equal shares) averaged. Collective; every rank holds the same number of records.
void reduce_routing(std::vector<nlohmann::json>& records, dist::ProcessGroup& world) {
  if (world.size() == 1 || records.empty()) return;
  std::vector<double> flat;
  for (const nlohmann::json& r : records) {
    double assigned = 0;
    for (int64_t n : r["tokens_per_expert"].get<std::vector<int64_t>>()) {
      flat.push_back(double(n));
      assigned += double(n);
    }
    flat.push_back(std::round(r["dropped_fraction"].get<double>() * assigned));
    for (const char* k : {"l_aux", "z_loss", "entropy"}) flat.push_back(r[k].get<double>());
  }
  Tensor t = from_vector<double>(flat, {int64_t(flat.size())});
  world.all_reduce(t);
  flat = t.to_vector<double>();
  size_t i = 0;
  const double W = double(world.size());
  for (nlohmann::json& r : records) {
    std::vector<int64_t> tokens(r["tokens_per_expert"].size());
    double assigned = 0;
    for (int64_t& n : tokens) {
      n = std::llround(flat[i++]);
      assigned += double(n);
    }
    r["tokens_per_expert"] = tokens;
    r["dropped_fraction"] = assigned > 0 ? flat[i++] / assigned : (++i, 0.0);
    for (const char* k : {"l_aux", "z_loss", "entropy"}) r[k] = flat[i++] / W;
  }
}

// Mean LM loss over the fixed evaluation batches of a split (eval mode, no grad), on `device`.
double estimate_loss(Transformer& model, const data::TextDataset& ds, data::Split split, const TrainOptions& o,
                     Device device) {
  autograd::NoGradGuard no_grad;
  model.eval();
  Generator gen(o.seed ^ kEvalSeedSalt);
  double total = 0;
  for (int64_t i = 0; i < o.eval_iters; ++i) {
    data::TextBatch b = ds.sample(split, o.batch_size, gen);
    total += lm_loss(model.forward(b.x.to(device)), b.y.to(device)).item<double>();
  }
  model.train();
  return total / double(o.eval_iters);
}

}  // namespace

int run_train(const TrainOptions& opts) {
  TrainOptions o = opts;
  dist::ProcessGroup& world = dist::world();
  const int W = world.size();
  const bool lead = world.rank() == 0;   // prints, writes metrics and checkpoints
  set_num_threads(int(o.threads));
  manual_seed(o.seed);   // the routers' initialisation draws from the default generator
  autograd::set_anomaly_mode(o.detect_anomaly);
  set_attention_kernel(parse_attention_kernel(o.attention));
  const bool distill = !o.teacher.empty();
  std::optional<Loaded> teacher;
  std::shared_ptr<const data::Tokenizer> tokenizer;
  if (distill) {
    teacher = load_llm(o.teacher);   // on the CPU; moved below, once the device is chosen
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
  // The architecture is final here (a teacher's or a checkpoint's): check the expert split
  // again (usage error, exit 2; every rank finds it alike).
  check_expert_parallel(o, o.model.experts_per_layer(), W);
  const bool write_checkpoints = o.ep_size == 1 || !o.model.has_moe();
  // A usage error (an int8 teacher on cuda) is found alike on every rank.
  const RunDevice run_device = choose_device(o.device, W, distill && teacher->quantized ? teacher->path : "");
  const Device device = run_device.device;
  if (distill) teacher->model->to(device);

  auto model_gen = std::make_shared<Generator>(o.seed);
  Generator data_gen(o.seed + 1);
  Transformer model(o.model, model_gen, o.ep_size);
  model.to(device);   // before the reducer and the optimizer take its parameters
  // Same seed, same initial weights on every rank; the broadcast makes it a guarantee (of the
  // f32 weights, which the 16-bit weights and the masters are then made from).
  std::unique_ptr<dist::GradientReducer> reducer;
  if (W > 1) {
    reducer = std::make_unique<dist::GradientReducer>(model);
    reducer->broadcast_parameters();
  }
  optim::MixedPrecision mp(model, examples::compute_dtype(o.dtype), moe::is_router, o.loss_scaler);
  if (reducer && mp.dtype() != DType::f32) reducer = std::make_unique<dist::GradientReducer>(model);   // 16-bit now
  std::unique_ptr<optim::AdamW> optimizer = make_optimizer(o, model, mp);
  int64_t step = 0, skip_eval_at = -1;   // a resumed run has already evaluated its first step
  int64_t skipped = 0;   // fp16 steps skipped on overflow (counted in `step`, not in the LR schedule)
  double best_val = INFINITY;
  bool rank_stream_restored = false;
  if (o.resume) {
    // Into the model and optimizer where they are: the file's CPU tensors are copied onto each
    // parameter's device (Module::load_state_dict, Optimizer::load_state_dict).
    nn::Metadata meta = nn::load_checkpoint(last_path, mp.model_state(), optimizer.get());
    skipped = examples::restore_precision_metadata(meta, last_path, o.dtype, mp);
    step = nn::require_meta_count(meta, "step", last_path);
    best_val = nn::require_meta_number(meta, "best_val_loss", last_path);
    nn::restore_generator(*model_gen, meta, "model_rng", last_path);
    nn::restore_generator(data_gen, meta, "data_rng", last_path);
    // Rank r > 0 continues its own stream when the checkpoint has it (saved by a run of at least
    // r + 1 ranks); otherwise it starts one below, at rank 0's position.
    if (const std::string key = str("model_rng.rank", world.rank()); !lead && meta.count(key)) {
      nn::restore_generator(*model_gen, meta, key, last_path);
      rank_stream_restored = true;
    }
    skip_eval_at = step;
    if (lead) std::printf("resumed from %s at step %lld (best val loss %.4f)\n", last_path.c_str(), (long long)step, best_val);
  }
  // Rank r > 0 draws its dropout masks and routing noise from a stream of its own (the seed
  // moved by r), so the ranks' masks differ; the initialisation above drew from the shared one.
  if (!lead && !rank_stream_restored)
    model_gen->set_state(rank_seed(model_gen->seed(), world.rank()), model_gen->offset());
  if (lead && write_checkpoints) std::filesystem::create_directories(o.out);
  examples::MetricsWriter metrics(lead ? o.metrics : "", /*append=*/o.resume);

  optim::WarmupCosineLrOptions so;
  so.lr = o.lr;
  so.min_lr = o.min_lr;
  so.warmup_iters = o.warmup_iters;
  so.lr_decay_iters = o.lr_decay_iters;
  optim::WarmupCosineLr schedule(so);

  // Parameters of the whole model: with --ep-size p a rank holds E/p experts of each MoE layer.
  int64_t num_params = model.num_parameters();
  if (o.ep_size > 1 && o.model.has_moe()) {
    int64_t local_experts = 0;
    for (const moe::ExpertParameter& e : moe::expert_parameters(model)) local_experts += e.param.numel();
    Tensor n = from_vector<int64_t>({local_experts}, {1});
    dist::expert_groups(int(o.ep_size)).expert_parallel->all_reduce(n);
    num_params += n.to_vector<int64_t>()[0] - local_experts;
  }
  if (lead) {
    std::printf("mox-llm %s: %s, %lld params, %s; %lld train / %lld val tokens; batch %lld x %lld tokens, grad_accum %lld, "
                "%lld iters, %s%s, attention %s, %lld threads%s\n",
                distill ? "distill" : "train", model.repr().c_str(), (long long)num_params,
                ds->tokenizer().describe().c_str(), (long long)ds->size(data::Split::train),
                (long long)ds->size(data::Split::val), (long long)o.batch_size, (long long)o.model.block_size,
                (long long)o.grad_accum, (long long)o.max_iters, run_device.summary.c_str(),
                o.dtype == "fp32" ? "" : (", " + o.dtype + " (fp32 master weights)").c_str(), o.attention.c_str(),
                (long long)o.threads,
                W > 1 ? str(" per rank; ", W, " ranks (", o.batch_size / W, " sequences each), ep_size ", o.ep_size,
                            num_params != model.num_parameters() ? str(" (", model.num_parameters(), " params per rank)") : "")
                            .c_str()
                      : "");
    if (!write_checkpoints)
      std::printf("mox-llm: no checkpoints (expert-parallel checkpoints are not supported yet; --ep-size %lld)\n",
                  (long long)o.ep_size);
    std::fflush(stdout);
  }

  // Every rank's model stream "seed:offset", gathered (collectively) before the checkpoints of
  // an evaluation: experts with dropout draw as many counters as they get tokens, so the
  // ranks' offsets differ and each is saved, for an exact resume on as many ranks.
  auto gather_model_streams = [&] {
    std::vector<std::string> out;
    if (W == 1 || !write_checkpoints) return out;
    const uint64_t mine[2] = {model_gen->seed(), model_gen->offset()};
    int64_t bits[2];
    std::memcpy(bits, mine, sizeof(bits));
    const std::vector<int64_t> all = world.all_gather(from_vector<int64_t>({bits[0], bits[1]}, {1, 2})).to_vector<int64_t>();
    for (int r = 0; r < W; ++r) {
      Generator g;
      uint64_t state[2];
      std::memcpy(state, &all[size_t(2 * r)], sizeof(state));
      g.set_state(state[0], state[1]);
      out.push_back(nn::generator_state(g));
    }
    return out;
  };
  std::vector<std::string> model_streams;
  auto save = [&](const std::string& path) {
    if (!lead || !write_checkpoints) return;   // ep_size 1: rank 0's replica is everyone's
    nn::Metadata meta = base_metadata(model, ds->tokenizer(), false);
    meta["step"] = std::to_string(step);
    meta["best_val_loss"] = str(best_val);
    meta["model_rng"] = nn::generator_state(*model_gen);
    for (size_t r = 1; r < model_streams.size(); ++r) meta[str("model_rng.rank", r)] = model_streams[r];
    meta["data_rng"] = nn::generator_state(data_gen);
    meta["train_options"] = nlohmann::json{{"lr", o.lr}, {"min_lr", o.min_lr}, {"batch_size", o.batch_size},
                                           {"max_iters", o.max_iters}, {"seed", o.seed}, {"distill", distill},
                                           {"world_size", W}, {"device", device.str()}, {"dtype", o.dtype}}
                                .dump();
    examples::save_precision_metadata(meta, o.dtype, mp, skipped);
    nn::save_checkpoint(path, mp.model_state(), optimizer.get(), meta);
  };

  moe::RoutingStats routing;
  const bool has_moe = !model.moe_layers().empty();
  std::vector<int64_t> moe_blocks;   // the block index of each MoE layer, for the routing records
  const std::vector<int64_t> experts = model.config().experts_per_layer();
  for (size_t l = 0; l < experts.size(); ++l)
    if (experts[l] > 1) moe_blocks.push_back(int64_t(l));
  examples::LossWindow window(3);   // CE; coefficient-weighted l_aux + z-loss; KD
  int64_t window_tokens = 0;
  auto window_start = Clock::now();
  const auto run_start = Clock::now();
  for (;; ++step) {
    if ((step % o.eval_interval == 0 || step == o.max_iters) && step != skip_eval_at) {
      const auto eval_start = Clock::now();
      const double train_loss = estimate_loss(model, *ds, data::Split::train, o, device);
      const double val_loss = estimate_loss(model, *ds, data::Split::val, o, device);
      const double secs = std::chrono::duration<double>(Clock::now() - run_start).count();
      if (lead) {
        std::printf("step %lld: train loss %.4f, val loss %.4f (%.0f s)\n", (long long)step, train_loss, val_loss, secs);
        std::fflush(stdout);
      }
      metrics.write({{"split", "val"}, {"step", step}, {"loss", val_loss}, {"train_loss", train_loss},
                     {"elapsed_s", secs}});
      const bool improved = val_loss < best_val;
      if (improved) best_val = val_loss;
      model_streams = gather_model_streams();
      save(last_path);
      if (improved) save(best_path);
      window_start += Clock::now() - eval_start;   // tokens/s counts training time only
    }
    if (step >= o.max_iters) break;

    schedule.apply(*optimizer, step - skipped);
    mp.zero_grad();
    double step_loss = 0, step_aux = 0, step_kd = 0;
    bool finite = true;   // every micro-batch's loss (fp16: an overflow in the forward skips the step)
    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      // The global batch on every rank (B offsets from the shared generator), then this rank's rows.
      const data::TextBatch b = shard(ds->sample(data::Split::train, o.batch_size, data_gen), world);
      const Tensor x = b.x.to(device), y = b.y.to(device);   // (B/W, T) each, on the model's device
      Tensor logits = model.forward(x);   // (B, T, V) in --dtype
      Tensor ce = lm_loss(logits, y);
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
          t_logits = teacher->model->forward(x);
        }
        Tensor kd = kd_loss(logits, t_logits, o.kd_beta, o.kd_temp);
        step_kd += kd.item<double>();
        loss = loss + kd;
      }
      mp.backward(loss, o.grad_accum);   // loss / grad_accum × the fp16 loss scale
      const double l = ce.item<double>();
      MOX_CHECK(std::isfinite(l) || mp.scaler(), "training loss became ", l, " at step ", step,
                " — lower --lr or check the data");
      finite = finite && std::isfinite(l);
      step_loss += l / double(o.grad_accum);
      window_tokens += b.x.numel() * W;   // global
    }
    if (reducer) reducer->reduce();   // average over the ranks: the gradient of the global batch's loss
    mp.grads_to_masters();
    const bool stepped = mp.unscale_or_skip(examples::overflow_anywhere(mp, world));   // false: fp16 overflow
    if (stepped) {
      if (o.grad_clip > 0) clip_gradients(model, mp, o.grad_clip, o.ep_size);
      optimizer->step();
      mp.masters_to_params();
    } else {
      ++skipped;
    }
    MOX_CHECK(finite || !stepped, "training loss became non-finite at step ", step, " with finite gradients",
              " — lower --lr or check the data");
    // A loss not finite here (a skipped step's) is left out of the window's means.
    window.add(finite ? std::vector<double>{step_loss, step_aux / double(o.grad_accum), step_kd / double(o.grad_accum)}
                      : std::vector<double>{});
    if ((step + 1) % o.log_interval == 0 || step + 1 == o.max_iters) {
      const examples::LossWindow::Means losses = window.reduce(world);   // over all ranks
      std::vector<nlohmann::json> routing_records = routing.records();
      reduce_routing(routing_records, world);
      const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double tps = double(window_tokens) / secs;
      nlohmann::json rec = {{"split", "train"}, {"step", step + 1}, {"loss", losses.json(0)},
                            {"lr", optimizer->lr(0)}, {"tokens_per_s", tps}};
      if (has_moe) rec["aux_loss"] = losses.json(1);
      if (distill) rec["kd_loss"] = losses.json(2);
      examples::add_precision_metrics(rec, mp, skipped);
      metrics.write(rec);
      for (nlohmann::json& r : routing_records) {
        r["step"] = step + 1;
        r["block"] = moe_blocks[r["layer"].get<size_t>()];
        metrics.write(r);
      }
      if (lead && ((step + 1) % (o.log_interval * 10) == 0 || step + 1 == o.max_iters)) {
        std::printf("iter %lld: loss %s, lr %.3g, %.0f tokens/s%s\n", (long long)step + 1, losses.text(4).c_str(),
                    optimizer->lr(0), tps, examples::precision_log(mp, skipped).c_str());
        std::fflush(stdout);
      }
      window_tokens = 0;
      window_start = Clock::now();
    }
  }
  if (lead)
    std::printf("done: %lld iterations, best val loss %.4f, %.0f s; %s\n", (long long)step, best_val,
                std::chrono::duration<double>(Clock::now() - run_start).count(),
                write_checkpoints ? ("checkpoints in " + o.out).c_str() : "no checkpoints written");
  return 0;
}

}  // namespace mox::llm
