// main.cpp — mox-cifar10: trains the tutorial Net on CIFAR-10 and reports test accuracy
// overall and per class, as the PyTorch tutorial does. See README.md for recipes.
//
// Distributed (under scripts/moxrun): data parallel over all ranks — each rank trains on its
// shard of every global batch and the gradients are averaged (dist::GradientReducer) — and,
// with --ep-world-size p, expert parallel: the MoE experts are spread over groups of p ranks.
// Rank 0 prints and writes metrics; losses shown are averaged over the ranks. Every rank
// evaluates the whole test set (expert-parallel layers need every rank in every forward).
//
// --dtype fp16|bf16 (optim::MixedPrecision, examples/common/precision.h): the Net's weights,
// inputs and activations in 16 bits, the optimizer on fp32 master weights, routers and the
// loss in f32; fp16 skips the steps whose gradients overflow (the loss scaler's), and the LR
// schedule counts only the steps taken. Checkpoints hold the fp32 masters.
//
// Exit codes: 0 success, 1 runtime error (missing data, corrupt checkpoint, non-finite
// loss), 2 usage error.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <algorithm>
#include <memory>

#include "datasets/cifar10.h"
#include "datasets/dataloader.h"
#include "dist/data_parallel.h"
#include "dist/world.h"
#include "examples/cifar10/net.h"
#include "examples/cifar10/options.h"
#include "examples/common/device.h"
#include "examples/common/loss_window.h"
#include "examples/common/metrics.h"
#include "examples/common/precision.h"
#include "examples/common/ranks.h"
#include "moe/gate.h"
#include "moe/param_groups.h"
#include "moe/routing_stats.h"
#include "nn/checkpoint.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/sgd.h"
#include "tensor/cpu/threads.h"

namespace mox::cifar10 {
namespace {

using Clock = std::chrono::steady_clock;

// One group "default"; with --moe-param-group the expert parameters move to groups of their
// own marked moe (DeepSpeed's split_params_into_different_moe_groups_for_optimizer).
std::vector<optim::ParamGroup> make_param_groups(const Options& o, const nn::Module& model) {
  std::vector<optim::ParamGroup> groups{optim::make_group("default", model.named_parameters())};
  groups[0].lr = o.lr;
  groups[0].weight_decay = o.weight_decay;
  groups[0].momentum = o.optimizer == "sgd" ? o.momentum : 0.0;
  groups[0].beta1 = o.beta1;
  groups[0].beta2 = o.beta2;
  groups[0].eps = o.eps;
  return o.moe_param_group ? moe::split_moe_param_groups(std::move(groups), model) : groups;
}

// Over the fp32 masters of mixed precision (the parameters themselves with --dtype fp32).
std::unique_ptr<optim::Optimizer> make_optimizer(const Options& o, const nn::Module& model,
                                                 const optim::MixedPrecision& mp) {
  std::vector<optim::ParamGroup> groups = mp.master_groups(make_param_groups(o, model));
  if (o.optimizer == "sgd") return std::make_unique<optim::Sgd>(std::move(groups));
  if (o.optimizer == "adam") return std::make_unique<optim::Adam>(std::move(groups));
  return std::make_unique<optim::AdamW>(std::move(groups));
}

std::unique_ptr<MoeOptions> make_moe_options(const Options& o) {
  if (!o.moe) return nullptr;
  auto m = std::make_unique<MoeOptions>();
  m->num_experts = o.num_experts;
  m->gate.k = o.top_k;
  m->gate.capacity_factor = o.capacity_factor;
  m->gate.eval_capacity_factor = o.eval_capacity_factor;
  m->gate.min_capacity = o.min_capacity;
  m->gate.noisy_gate_policy = moe::parse_noisy_gate_policy(o.noisy_gate_policy);
  m->gate.seed = o.seed;
  m->ep_size = o.ep_world_size;
  m->use_residual = o.mlp_type == "residual";
  return m;
}

std::unique_ptr<optim::LrSchedule> make_schedule(const Options& o, int64_t total_steps) {
  if (o.schedule == "cosine") {
    optim::WarmupCosineLrOptions c;
    c.lr = o.lr;
    c.min_lr = 0;
    c.warmup_iters = o.warmup_steps;
    c.lr_decay_iters = total_steps;
    return std::make_unique<optim::WarmupCosineLr>(c);
  }
  if (o.schedule == "warmup") {
    optim::WarmupLrOptions w;
    w.warmup_min_lr = o.warmup_min_lr;
    w.warmup_max_lr = o.lr;
    w.warmup_type = o.warmup_type;
    w.warmup_num_steps = o.warmup_steps;   // ≥ 2, checked with the flags
    return std::make_unique<optim::WarmupLr>(w);
  }
  return std::make_unique<optim::ConstantLr>(o.lr);
}

struct Accuracy {
  double overall = 0;
  std::vector<double> per_class;
};

Accuracy evaluate(Net& model, data::DataLoader& loader, int64_t num_classes, Device device, DType dtype) {
  autograd::NoGradGuard no_grad;
  model.eval();
  std::vector<int64_t> correct(size_t(num_classes), 0), total(size_t(num_classes), 0);
  loader.start_epoch(0);
  data::Batch b;
  while (loader.next(b)) {
    std::vector<int64_t> pred = argmax(model.forward(b.images.to(device).to(dtype)), 1).to_vector<int64_t>();
    std::vector<int64_t> label = b.labels.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) {
      total[size_t(label[i])] += 1;
      correct[size_t(label[i])] += pred[i] == label[i];
    }
  }
  model.train();
  Accuracy acc;
  int64_t c_sum = 0, t_sum = 0;
  for (int64_t c = 0; c < num_classes; ++c) {
    acc.per_class.push_back(total[size_t(c)] ? double(correct[size_t(c)]) / double(total[size_t(c)]) : 0.0);
    c_sum += correct[size_t(c)];
    t_sum += total[size_t(c)];
  }
  acc.overall = t_sum ? double(c_sum) / double(t_sum) : 0.0;
  return acc;
}

int run(const Options& o) {
  dist::ProcessGroup& world = dist::world();
  const bool lead = world.rank() == 0;   // prints, writes metrics and checkpoints
  const int64_t threads = examples::thread_count(o.threads, o.threads > 0);
  set_num_threads(int(threads));
  autograd::set_anomaly_mode(o.detect_anomaly);

  auto train_set = std::make_shared<data::Cifar10>(o.data, true);
  auto test_set = std::make_shared<data::Cifar10>(o.data, false);
  const std::vector<std::string> classes = train_set->class_names();

  data::LoaderOptions lo;
  lo.batch_size = o.batch_size / o.world_size;   // this rank's share of the global batch
  lo.rank = world.rank();
  lo.world_size = world.size();
  lo.shuffle = true;
  lo.seed = o.seed;
  lo.normalize = {{0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}};   // the tutorial's transform
  if (o.augment) lo.augment = {4, true};
  // In training the MoE gate refuses a batch with fewer tokens than min_capacity (the
  // capacity would exceed the batch); a last partial batch that small is dropped, and said.
  if (const int64_t rest = (train_set->size() + o.world_size - 1) / o.world_size % lo.batch_size;
      o.moe && rest != 0 && rest < o.min_capacity) {
    lo.drop_last = true;
    if (lead) std::printf("mox-cifar10: dropping the last %lld training images of each epoch (fewer than --min-capacity %lld)\n",
                (long long)rest, (long long)o.min_capacity);
  }
  data::DataLoader train_loader(train_set, lo);
  data::LoaderOptions to = lo;
  to.batch_size = o.test_batch_size;
  to.rank = 0;   // every rank evaluates the whole test set
  to.world_size = 1;
  to.shuffle = false;
  to.augment = {};
  data::DataLoader test_loader(test_set, to);

  manual_seed(o.seed);
  std::unique_ptr<MoeOptions> moe_options = make_moe_options(o);
  Net model(moe_options.get());
  const Device device = examples::resolve_device(o.device, world.size());
  model.to(device);
  // Same seed, same initial weights on every rank; the broadcast makes it a guarantee (of the
  // f32 weights, which the 16-bit weights and the masters are then made from).
  std::unique_ptr<dist::GradientReducer> reducer;
  if (world.size() > 1) {
    reducer = std::make_unique<dist::GradientReducer>(model);
    reducer->broadcast_parameters();
  }
  optim::MixedPrecision mp(model, examples::compute_dtype(o.dtype), moe::is_router, o.loss_scaler);
  if (reducer && mp.dtype() != DType::f32) reducer = std::make_unique<dist::GradientReducer>(model);   // 16-bit now
  std::unique_ptr<optim::Optimizer> optimizer = make_optimizer(o, model, mp);
  const int64_t steps_per_epoch = train_loader.batches_per_epoch();
  std::unique_ptr<optim::LrSchedule> schedule = make_schedule(o, o.epochs * steps_per_epoch);

  int64_t first_epoch = 0, first_batch = 0, step = 0;
  int64_t skipped = 0;   // fp16 steps skipped on overflow (counted in `step`, not in the LR schedule)
  if (!o.resume.empty()) {
    nn::Metadata meta = nn::load_checkpoint(o.resume, mp.model_state(), optimizer.get());
    skipped = examples::restore_precision_metadata(meta, o.resume, o.dtype, mp);
    first_epoch = nn::require_meta_count(meta, "epoch", o.resume);
    step = nn::require_meta_count(meta, "step", o.resume);
    if (meta.count("batch")) first_batch = nn::require_meta_count(meta, "batch", o.resume);   // mid-epoch
    for (size_t l = 0; l < model.num_moe_layers(); ++l)   // RTS and noise continue where they stopped
      nn::restore_generator(model.layer(l).gate->generator(), meta, "moe_rng." + std::to_string(l), o.resume);
    if (lead) std::printf("resumed from %s: %lld epochs and %lld batches done, step %lld\n", o.resume.c_str(),
                (long long)first_epoch, (long long)first_batch, (long long)step);
  }
  examples::MetricsWriter metrics(lead ? o.metrics : "", /*append=*/!o.resume.empty());
  if (lead)
    std::printf("mox-cifar10: %lld train / %lld test images, batch %lld, %s lr %g, %s%s, %lld threads, %lld params%s\n",
                (long long)train_set->size(), (long long)test_set->size(), (long long)o.batch_size, o.optimizer.c_str(),
                o.lr, examples::device_summary(device, o.device, world.size()).c_str(),
                o.dtype == "fp32" ? "" : (", " + o.dtype + " (fp32 master weights)").c_str(), (long long)threads,
                (long long)model.num_parameters(),
                world.size() > 1 ? str(", ", world.size(), " ranks (", lo.batch_size, " images each), ep_size ",
                                       o.ep_world_size).c_str()
                                 : "");

  // epochs: epochs completed; batch: batches done in the next one (a --max-steps stop).
  auto save = [&](int64_t epochs, int64_t batch) {
    nn::Metadata meta{{"epoch", std::to_string(epochs)}, {"batch", std::to_string(batch)},
                      {"step", std::to_string(step)}, {"seed", std::to_string(o.seed)}, {"example", "cifar10"}};
    for (size_t l = 0; l < model.num_moe_layers(); ++l)
      meta["moe_rng." + std::to_string(l)] = nn::generator_state(model.layer(l).gate->generator());
    examples::save_precision_metadata(meta, o.dtype, mp, skipped);
    if (!lead) return;   // data parallel only (options.cpp): rank 0's replica is everyone's
    nn::save_checkpoint(o.save, mp.model_state(), optimizer.get(), meta);
    std::printf("saved checkpoint %s\n", o.save.c_str());
  };
  for (int64_t epoch = first_epoch; epoch < o.epochs; ++epoch) {
    const int64_t start = epoch == first_epoch ? first_batch : 0;
    train_loader.restore(epoch, start);
    data::Batch b;
    examples::LossWindow window(2);   // task loss; coefficient-weighted l_aux + z-loss
    moe::RoutingStats routing;
    int64_t images = 0;
    auto window_start = Clock::now();
    for (int64_t i = start; train_loader.next(b); ++i) {
      schedule->apply(*optimizer, step - skipped);
      mp.zero_grad();
      Tensor logits = model.forward(b.images.to(device).to(mp.dtype()));   // (B, 10) in --dtype
      Tensor ce = nn::cross_entropy(logits.to(DType::f32), b.labels.to(device));
      Tensor loss = ce;
      for (size_t l = 0; l < model.num_moe_layers(); ++l) {   // DeepSpeed's example drops l_aux; we don't
        const moe::MoEOutput& out = model.layer(l).last();
        loss = loss + out.l_aux * o.aux_loss_coef + out.z_loss;
      }
      mp.backward(loss);                // × the fp16 loss scale
      if (reducer) reducer->reduce();   // average gradients over the ranks
      if (model.num_moe_layers()) routing.add(model.moe_layer_list());
      mp.grads_to_masters();
      const bool stepped = mp.unscale_or_skip(examples::overflow_anywhere(mp, world));   // false: fp16 overflow
      if (stepped) {
        if (o.grad_clip > 0) optim::clip_grad_norm(mp.masters(), o.grad_clip);
        optimizer->step();
        mp.masters_to_params();
      } else {
        ++skipped;
      }
      const double l = ce.item<double>();   // the task loss; the MoE terms are logged apart
      if (!std::isfinite(l) && stepped)   // a skipped fp16 step may have overflowed in the forward
        MOX_FAIL("training loss became ", l, " at epoch ", epoch + 1, " step ", step,
                 " — lower --lr or check the data");
      // A loss not finite here (a skipped fp16 step's) is left out of the window's means.
      window.add(std::isfinite(l) ? std::vector<double>{l, loss.item<double>() - l} : std::vector<double>{});
      images += b.images.size(0) * world.size();
      if ((i + 1) % o.log_interval == 0 || i + 1 == steps_per_epoch) {
        const examples::LossWindow::Means losses = window.reduce(world);   // over all ranks
        const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
        const double ips = double(images) / secs;
        if (lead) std::printf("[%lld, %5lld] loss: %s  lr %.3g  %.0f images/s%s\n", (long long)epoch + 1, (long long)i + 1,
                    losses.text(3).c_str(), optimizer->lr(0), ips, examples::precision_log(mp, skipped).c_str());
        std::fflush(stdout);
        nlohmann::json rec = {{"split", "train"}, {"epoch", epoch + 1}, {"step", step + 1},
                              {"loss", losses.json(0)}, {"lr", optimizer->lr(0)}, {"images_per_s", ips}};
        if (model.num_moe_layers()) rec["aux_loss"] = losses.json(1);
        examples::add_precision_metrics(rec, mp, skipped);
        metrics.write(rec);
        for (nlohmann::json& r : routing.records()) {
          r["epoch"] = epoch + 1;
          r["step"] = step + 1;
          metrics.write(r);
        }
        images = 0;
        window_start = Clock::now();
      }
      ++step;
      if (o.max_steps > 0 && step >= o.max_steps) {
        if (!o.save.empty()) save(epoch, i + 1);
        if (lead) std::printf("stopped after %lld steps (--max-steps)\n", (long long)step);
        return 0;
      }
    }
    Accuracy acc = evaluate(model, test_loader, int64_t(classes.size()), device, mp.dtype());
    if (lead)
      std::printf("Accuracy of the network on the %lld test images: %.1f %%\n", (long long)test_set->size(),
                  100.0 * acc.overall);
    nlohmann::json per_class;
    for (size_t c = 0; c < classes.size(); ++c) {
      if (lead) std::printf("Accuracy for class: %-10s is %.1f %%\n", classes[c].c_str(), 100.0 * acc.per_class[c]);
      per_class[classes[c]] = acc.per_class[c];
    }
    metrics.write({{"split", "test"}, {"epoch", epoch + 1}, {"accuracy", acc.overall}, {"per_class", per_class}});
    if (!o.save.empty()) save(epoch + 1, 0);
  }
  return 0;
}

}  // namespace
}  // namespace mox::cifar10

int main(int argc, char** argv) {
  mox::configure_cpu_runtime(argv);
  int world_size = 1, rank = 0;
  if (!mox::examples::start_ranks("mox-cifar10", world_size, rank)) return 2;
  mox::cifar10::Options options = mox::cifar10::parse_options(argc, argv, world_size, rank);
  try {
    return mox::dist::finish(mox::cifar10::run(options));
  } catch (const std::exception& e) {
    std::cerr << "mox-cifar10: error" << (world_size > 1 ? mox::str(" on rank ", rank) : std::string()) << ": "
              << e.what() << "\n";
    return mox::dist::finish(1);
  }
}
