// engine.cpp — Engine construction, backward and the optimizer step (see engine.h).
#include "dist/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "dist/groups.h"
#include "dist/world.h"
#include "moe/gate.h"
#include "moe/moe_layer.h"
#include "moe/param_groups.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "tensor/ops.h"

namespace mox::dist {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Local → global names of expert parameters: "<moe>.experts.<i>." → "<moe>.experts.<id>.".
std::vector<std::pair<std::string, std::string>> expert_prefixes(const nn::Module& model) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, m] : model.named_modules()) {
    const auto* layer = dynamic_cast<const moe::MoE*>(m);
    if (!layer) continue;
    const std::string base = (name.empty() ? "" : name + ".") + "experts.";
    for (int64_t i = 0; i < layer->experts->size(); ++i)
      out.emplace_back(base + std::to_string(i) + ".", base + std::to_string(layer->global_expert_id(i)) + ".");
  }
  return out;
}

}  // namespace

Engine::Engine(std::shared_ptr<nn::Module> model, DsConfig config, std::vector<optim::ParamGroup> groups)
    : model_(std::move(model)), cfg_(std::move(config)), world_(world_ptr()) {
  MOX_CHECK(model_ != nullptr, "engine: the model is null");
  batch_ = resolve_batch_sizes(cfg_, world_->size());
  MOX_CHECK(cfg_.optimizer.has_value(), "config '", cfg_.source,
            "': the engine builds the optimizer from the config; add an 'optimizer' block (SGD, Adam or AdamW)");
  for (const auto& [name, t] : model_->named_parameters())
    MOX_CHECK(!t.requires_grad() || t.dtype() == DType::f32, "engine: parameter '", name, "' is ", describe(t),
              "; build the model in f32 (fp16/bf16 come from the config, with fp32 master weights)");
  const DType dtype = cfg_.fp16 ? DType::f16 : cfg_.bf16 ? DType::bf16 : DType::f32;
  mp_ = std::make_unique<optim::MixedPrecision>(*model_, dtype, moe::is_router, cfg_.loss_scaler);
  build_params();
  // Start identical everywhere: dense weights from world rank 0, experts from rank 0 of their
  // expert-data-parallel group (the masters, so 16-bit runs start from the same fp32 values).
  for (Param& p : params_) p.group->broadcast(p.master, 0);
  mp_->masters_to_params();
  if (world_->size() > 1) reducer_ = std::make_unique<GradientReducer>(*model_);   // collective; checks the model
  build_optimizer(std::move(groups));
}

void Engine::build_params() {
  const auto prefixes = expert_prefixes(*model_);
  std::map<const TensorImpl*, std::string> expert_group;
  for (const moe::ExpertParameter& e : moe::expert_parameters(*model_)) expert_group[e.param.impl()] = e.group;
  std::map<const ProcessGroup*, std::vector<int64_t>> load;   // ZeRO-1: elements owned per group rank
  for (const auto& [name, t] : model_->named_parameters()) {
    if (!t.requires_grad()) continue;
    Param p;
    p.name = name;
    for (const auto& [local, global] : prefixes)
      if (name.compare(0, local.size(), local) == 0) p.name = global + name.substr(local.size());
    p.param = t;
    p.master = mp_->master(t);
    auto it = expert_group.find(t.impl());
    p.expert_group = it == expert_group.end() ? "" : it->second;
    p.group = p.expert_group.empty() ? world_ : expert_groups(p.expert_group).expert_data_parallel;
    if (cfg_.zero_stage == 1) {   // greedy by size, in registration order: the same on every rank
      std::vector<int64_t>& l = load[p.group.get()];
      l.resize(size_t(p.group->size()), 0);
      p.owner = int(std::min_element(l.begin(), l.end()) - l.begin());
      l[size_t(p.owner)] += t.numel();
    }
    params_.push_back(std::move(p));
  }
  MOX_CHECK(!params_.empty(), "engine: the model has no trainable parameters");
}

void Engine::build_optimizer(std::vector<optim::ParamGroup> groups) {
  if (groups.empty()) {
    nn::NamedTensors all;
    for (const Param& p : params_) all.emplace_back(p.name, p.param);
    groups.push_back(optim::make_group("default", all));
  }
  groups = moe::split_moe_param_groups(std::move(groups), *model_);
  std::map<const TensorImpl*, const Param*> by_param;
  for (const Param& p : params_) by_param[p.param.impl()] = &p;
  const DsOptimizer& o = *cfg_.optimizer;
  const double peak = cfg_.scheduler ? cfg_.scheduler->warmup_max_lr.value_or(0.001) : o.lr.value_or(1e-3);
  for (optim::ParamGroup& g : groups) {
    std::vector<Tensor> params;
    std::vector<std::string> names;
    for (const Tensor& t : g.params) {
      auto it = by_param.find(t.impl());
      MOX_CHECK(it != by_param.end(), "engine: optimizer group '", g.name,
                "' holds a tensor that is not a trainable parameter of the model");
      const Param& p = *it->second;
      if (cfg_.zero_stage == 1 && p.owner != p.group->rank()) continue;   // another rank's share
      params.push_back(p.master);
      names.push_back(p.name);
    }
    g.params = std::move(params);
    g.param_names = std::move(names);
    g.lr = peak;
    g.weight_decay = o.weight_decay.value_or(0);
    g.momentum = o.momentum.value_or(0);
    g.beta1 = o.beta1.value_or(0.9);
    g.beta2 = o.beta2.value_or(0.999);
    g.eps = o.eps.value_or(1e-8);
  }
  if (o.type == "sgd") optimizer_ = std::make_unique<optim::Sgd>(std::move(groups));
  else if (o.type == "adam") optimizer_ = std::make_unique<optim::Adam>(std::move(groups));
  else optimizer_ = std::make_unique<optim::AdamW>(std::move(groups));
  if (cfg_.scheduler) {
    optim::WarmupLrOptions w;
    w.warmup_min_lr = cfg_.scheduler->warmup_min_lr.value_or(0);
    w.warmup_max_lr = peak;
    w.warmup_num_steps = cfg_.scheduler->warmup_num_steps.value_or(1000);
    w.warmup_type = cfg_.scheduler->warmup_type.value_or("log");
    schedule_ = std::make_unique<optim::WarmupLr>(w);
  } else {
    schedule_ = std::make_unique<optim::ConstantLr>(peak);
  }
}

Tensor Engine::forward(const Tensor& x) {
  const auto t = Clock::now();
  // Floating inputs (images) take the model's compute dtype; integer ones (token ids) stay.
  Tensor y = model_->forward(is_floating(x.dtype()) ? x.to(mp_->dtype()) : x);
  t_forward_ += seconds_since(t);
  return y;
}

void Engine::backward(const Tensor& loss) {
  MOX_CHECK(loss.defined() && loss.numel() == 1, "engine.backward: the loss must be a single value, got ",
            loss.defined() ? describe(loss) : std::string("an undefined tensor"));
  const auto t = Clock::now();
  mp_->backward(loss, batch_.accum);
  t_backward_ += seconds_since(t);
}

bool Engine::is_gradient_accumulation_boundary() const { return (micro_steps_ + 1) % batch_.accum == 0; }

double Engine::lr() const { return optimizer_->lr(0); }

std::vector<std::string> Engine::owned_parameters() const {
  std::vector<std::string> out;
  for (const Param& p : params_)
    if (cfg_.zero_stage == 0 || p.owner == p.group->rank()) out.push_back(p.name);
  return out;
}

bool Engine::overflowed() {
  Tensor flag = from_vector<float>({mp_->overflowed() ? 1.0f : 0.0f}, {1});
  world_->all_reduce(flag, ReduceOp::max);
  return flag.item<float>() != 0;
}

// DeepSpeed's global norm with experts: dense squares once, each expert group's squares
// summed over its expert-parallel group (every expert of the layer counted once).
void Engine::clip_gradients(double max_norm) {
  double dense = 0;
  std::map<std::string, double> experts;
  for (const Param& p : params_) {
    Tensor g = p.master.grad();
    const double sq = g.defined() ? raw::sum(raw::unary(UnaryOp::square, raw::to_dtype(g, DType::f64))).item<double>() : 0.0;
    if (p.expert_group.empty()) dense += sq;
    else experts[p.expert_group] += sq;
  }
  double total = dense;
  for (auto& [name, sq] : experts) {   // same names, same order on every rank
    Tensor t = from_vector<double>({sq}, {1});
    expert_groups(name).expert_parallel->all_reduce(t);
    total += t.item<double>();
  }
  const double norm = std::sqrt(total);
  const double coef = max_norm / (norm + 1e-6);
  if (std::isfinite(norm) && coef < 1)
    for (const Param& p : params_)
      if (Tensor g = p.master.grad(); g.defined()) raw::mul_(g, coef);
}

void Engine::broadcast_owned() {
  for (const Param& p : params_) p.group->broadcast(p.master, p.owner);
}

bool Engine::step() {
  ++micro_steps_;
  if (micro_steps_ % batch_.accum != 0) return false;
  const auto t_reduce = Clock::now();
  if (reducer_) reducer_->reduce();
  mp_->grads_to_masters();
  t_reduce_ += seconds_since(t_reduce);
  const auto t_step = Clock::now();
  // Only fp16 can overflow: the flag's all-reduce is skipped otherwise, as before.
  const bool updated = mp_->unscale_or_skip(mp_->scaler() && overflowed());   // throws at the minimum scale
  if (!updated) {
    ++skipped_steps_;
  } else {
    if (cfg_.gradient_clipping.value_or(0) > 0) clip_gradients(*cfg_.gradient_clipping);
    schedule_->apply(*optimizer_, global_steps_ - skipped_steps_);   // skipped steps do not advance the schedule
    optimizer_->step();
    if (cfg_.zero_stage == 1) broadcast_owned();
    mp_->masters_to_params();
  }
  mp_->zero_grad();
  ++global_steps_;
  t_step_ += seconds_since(t_step);
  log_step();
  return updated;
}

void Engine::log_step() {
  const int64_t every = cfg_.steps_per_print.value_or(10);
  if (global_steps_ % every != 0) return;
  if (world_->rank() == 0) {
    std::printf("[engine] step=%lld, skipped=%lld, lr=%.6g, loss_scale=%g\n", (long long)global_steps_,
                (long long)skipped_steps_, lr(), loss_scale());
    if (cfg_.wall_clock_breakdown)
      std::printf("[engine] time (ms) over the last %lld steps: forward %.1f | backward %.1f | reduce %.1f | step %.1f\n",
                  (long long)every, 1e3 * t_forward_, 1e3 * t_backward_, 1e3 * t_reduce_, 1e3 * t_step_);
    std::fflush(stdout);
  }
  t_forward_ = t_backward_ = t_reduce_ = t_step_ = 0;
}

Initialized initialize(std::shared_ptr<nn::Module> model, const DsConfig& config,
                       std::shared_ptr<const data::Dataset> training_data, data::LoaderOptions loader_options,
                       std::vector<optim::ParamGroup> groups) {
  Initialized out;
  out.engine = std::make_unique<Engine>(std::move(model), config, std::move(groups));
  if (training_data) {
    loader_options.batch_size = out.engine->batch_sizes().micro;
    loader_options.rank = world().rank();
    loader_options.world_size = world().size();
    out.loader = std::make_unique<data::DataLoader>(std::move(training_data), loader_options);
    out.engine->attach_loader(out.loader.get());
  }
  return out;
}

}  // namespace mox::dist
