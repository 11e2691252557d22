// ds_config.cpp — apply_ds_config (see ds_config.h).
#include "examples/cifar10/ds_config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <vector>

#include "tensor/error.h"

namespace mox::cifar10 {
namespace {

using nlohmann::json;

// Levenshtein distance, for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The allowed key closest to `key` when it is a plausible typo (at most a third of its
// letters off), else "".
std::string nearest_key(const std::string& key, const std::set<std::string>& allowed) {
  std::string best;
  size_t best_d = std::max<size_t>(key.size() / 3, 1) + 1;
  for (const std::string& a : allowed)
    if (const size_t d = edit_distance(key, a); d < best_d) {
      best = a;
      best_d = d;
    }
  return best;
}

struct Reader {
  std::string path;
  const std::function<bool(const std::string&)>& flag_given;

  void only_keys(const json& obj, const std::string& where, const std::set<std::string>& allowed) const {
    MOX_CHECK(obj.is_object(), "config '", path, "': ", where.empty() ? "the top level" : "'" + where + "'",
              " must be a JSON object");
    for (const auto& [key, value] : obj.items()) {
      if (allowed.count(key)) continue;
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      const std::string guess = nearest_key(key, allowed);
      MOX_FAIL("config '", path, "': unknown key '", where.empty() ? key : where + "." + key, "' (",
               guess.empty() ? "" : "did you mean '" + guess + "'? ", "supported here: ", list, ")");
    }
  }
  void no_conflict(const std::string& key, const std::string& flag) const {
    MOX_CHECK(!flag_given(flag), "config '", path, "': '", key, "' and the flag ", flag,
              " both set this; remove one");
  }
  double number(const json& v, const std::string& key, double lo, bool lo_open) const {
    MOX_CHECK(v.is_number(), "config '", path, "': '", key, "' must be a number, got ", v.dump());
    const double d = v.get<double>();
    MOX_CHECK(std::isfinite(d) && (lo_open ? d > lo : d >= lo), "config '", path, "': '", key, "' = ", d,
              " must be ", lo_open ? "> " : ">= ", lo);
    return d;
  }
  int64_t integer(const json& v, const std::string& key, int64_t lo) const {
    MOX_CHECK(v.is_number_integer() && v.get<int64_t>() >= lo, "config '", path, "': '", key,
              "' must be an integer >= ", lo, ", got ", v.dump());
    return v.get<int64_t>();
  }
  std::string string(const json& v, const std::string& key) const {
    MOX_CHECK(v.is_string(), "config '", path, "': '", key, "' must be a string, got ", v.dump());
    return v.get<std::string>();
  }
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

void apply_optimizer(const Reader& r, const json& opt, Options& o) {
  r.only_keys(opt, "optimizer", {"type", "params"});
  MOX_CHECK(opt.contains("type"), "config '", r.path, "': 'optimizer' needs a 'type' (SGD, Adam or AdamW)");
  const std::string type = lower(r.string(opt["type"], "optimizer.type"));
  MOX_CHECK(type == "sgd" || type == "adam" || type == "adamw", "config '", r.path, "': optimizer.type '",
            opt["type"].get<std::string>(), "' is not one of SGD, Adam, AdamW");
  r.no_conflict("optimizer.type", "--optimizer");
  const json p = opt.contains("params") ? opt["params"] : json::object();
  if (type == "sgd") r.only_keys(p, "optimizer.params", {"lr", "momentum", "weight_decay"});
  else if (type == "adam") r.only_keys(p, "optimizer.params", {"lr", "betas", "eps", "weight_decay", "adam_w_mode"});
  else r.only_keys(p, "optimizer.params", {"lr", "betas", "eps", "weight_decay"});
  // DeepSpeed's "Adam" is AdamW (decoupled weight decay) unless adam_w_mode is false.
  bool adam_w_mode = true;
  if (p.contains("adam_w_mode")) {
    MOX_CHECK(p["adam_w_mode"].is_boolean(), "config '", r.path, "': 'optimizer.params.adam_w_mode' must be true or false, got ",
              p["adam_w_mode"].dump());
    adam_w_mode = p["adam_w_mode"].get<bool>();
  }
  o.optimizer = type == "adam" && adam_w_mode ? "adamw" : type;
  if (p.contains("lr")) {
    r.no_conflict("optimizer.params.lr", "--lr");
    o.lr = r.number(p["lr"], "optimizer.params.lr", 0, true);
  }
  if (p.contains("momentum")) {
    r.no_conflict("optimizer.params.momentum", "--momentum");
    o.momentum = r.number(p["momentum"], "optimizer.params.momentum", 0, false);
    MOX_CHECK(o.momentum < 1, "config '", r.path, "': 'optimizer.params.momentum' = ", o.momentum, " must be < 1");
  }
  if (p.contains("weight_decay")) {
    r.no_conflict("optimizer.params.weight_decay", "--weight-decay");
    o.weight_decay = r.number(p["weight_decay"], "optimizer.params.weight_decay", 0, false);
  }
  if (p.contains("betas")) {
    const json& b = p["betas"];
    MOX_CHECK(b.is_array() && b.size() == 2, "config '", r.path, "': 'optimizer.params.betas' must be [beta1, beta2], got ",
              b.dump());
    r.no_conflict("optimizer.params.betas", "--beta1");
    r.no_conflict("optimizer.params.betas", "--beta2");
    o.beta1 = r.number(b[0], "optimizer.params.betas[0]", 0, false);
    o.beta2 = r.number(b[1], "optimizer.params.betas[1]", 0, false);
    MOX_CHECK(o.beta1 < 1 && o.beta2 < 1, "config '", r.path, "': 'optimizer.params.betas' ", b.dump(),
              " must both be < 1");
  }
  if (p.contains("eps")) {
    r.no_conflict("optimizer.params.eps", "--eps");
    o.eps = r.number(p["eps"], "optimizer.params.eps", 0, true);
  }
}

void apply_scheduler(const Reader& r, const json& sched, bool lr_in_file, Options& o) {
  r.only_keys(sched, "scheduler", {"type", "params"});
  MOX_CHECK(sched.contains("type"), "config '", r.path, "': 'scheduler' needs a 'type' (WarmupLR)");
  const std::string type = r.string(sched["type"], "scheduler.type");
  MOX_CHECK(type == "WarmupLR", "config '", r.path, "': scheduler.type '", type,
            "' is not supported (supported: WarmupLR; --schedule cosine gives warmup + cosine decay)");
  r.no_conflict("scheduler", "--schedule");
  o.schedule = "warmup";
  const json p = sched.contains("params") ? sched["params"] : json::object();
  r.only_keys(p, "scheduler.params", {"warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type"});
  if (p.contains("warmup_min_lr")) o.warmup_min_lr = r.number(p["warmup_min_lr"], "scheduler.params.warmup_min_lr", 0, false);
  {
    // The schedule's peak is the learning rate: one number, wherever it is written.
    // DeepSpeed's WarmupLR peaks at 0.001 when warmup_max_lr is absent, whatever the optimizer's lr.
    r.no_conflict("scheduler.params.warmup_max_lr", "--lr");
    const double max_lr = p.contains("warmup_max_lr")
                              ? r.number(p["warmup_max_lr"], "scheduler.params.warmup_max_lr", 0, true)
                              : 0.001;
    MOX_CHECK(!lr_in_file || max_lr == o.lr, "config '", r.path, "': scheduler.params.warmup_max_lr = ", max_lr,
              p.contains("warmup_max_lr") ? "" : " (DeepSpeed's default)", " differs from optimizer.params.lr = ", o.lr,
              "; the warmup ends at the learning rate, make them equal");
    o.lr = max_lr;
  }
  if (p.contains("warmup_num_steps")) {
    r.no_conflict("scheduler.params.warmup_num_steps", "--warmup-steps");
    o.warmup_steps = r.integer(p["warmup_num_steps"], "scheduler.params.warmup_num_steps", 2);
  } else if (!r.flag_given("--warmup-steps")) {
    o.warmup_steps = 1000;   // DeepSpeed's WarmupLR default
  }
  if (p.contains("warmup_type")) {
    o.warmup_type = r.string(p["warmup_type"], "scheduler.params.warmup_type");
    MOX_CHECK(o.warmup_type == "log" || o.warmup_type == "linear", "config '", r.path,
              "': scheduler.params.warmup_type '", o.warmup_type, "' is not one of log, linear");
  }
}

}  // namespace

void apply_ds_config(const std::string& path, Options& o, const std::function<bool(const std::string&)>& flag_given) {
  std::ifstream in(path, std::ios::binary);
  MOX_CHECK(in.good(), "config '", path, "': cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  apply_ds_config_text(text.str(), path, o, flag_given);
}

void apply_ds_config_text(const std::string& text, const std::string& path, Options& o,
                          const std::function<bool(const std::string&)>& flag_given) {
  json cfg = json::parse(text, nullptr, /*allow_exceptions=*/false);
  MOX_CHECK(!cfg.is_discarded(), "config '", path, "': not valid JSON");
  Reader r{path, flag_given};
  r.only_keys(cfg, "", {"train_batch_size", "steps_per_print", "gradient_clipping", "optimizer", "scheduler"});
  if (cfg.contains("train_batch_size")) {
    r.no_conflict("train_batch_size", "--batch-size");
    o.batch_size = r.integer(cfg["train_batch_size"], "train_batch_size", 1);
  }
  if (cfg.contains("steps_per_print")) {
    r.no_conflict("steps_per_print", "--log-interval");
    o.log_interval = r.integer(cfg["steps_per_print"], "steps_per_print", 1);
  }
  if (cfg.contains("gradient_clipping")) {
    r.no_conflict("gradient_clipping", "--grad-clip");
    o.grad_clip = r.number(cfg["gradient_clipping"], "gradient_clipping", 0, false);
  }
  if (cfg.contains("optimizer")) apply_optimizer(r, cfg["optimizer"], o);
  const bool lr_in_file = cfg.contains("optimizer") && cfg["optimizer"].contains("params") &&
                          cfg["optimizer"]["params"].contains("lr");
  if (cfg.contains("scheduler")) apply_scheduler(r, cfg["scheduler"], lr_in_file, o);
}

}  // namespace mox::cifar10
