// ds_config.cpp — the strict DeepSpeed JSON reader (see ds_config.h).
#include "dist/ds_config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tensor/error.h"

namespace mox::dist {
namespace {

using nlohmann::json;

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

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

// Typed, range-checked access to one JSON object, with errors naming `source` and the dotted key.
struct Section {
  const std::string& source;
  const json& obj;
  std::string where;   // dotted path of this object; "" at the top level

  std::string key_path(const std::string& key) const { return where.empty() ? key : where + "." + key; }
  std::string prefix() const { return "config '" + source + "': "; }

  void only(const std::vector<std::string>& allowed) const {
    MOX_CHECK(obj.is_object(), prefix(), where.empty() ? "the top level" : "'" + where + "'", " must be a JSON object, got ",
              obj.dump());
    for (const auto& [key, value] : obj.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      const std::string guess = nearest_name(key, allowed);
      MOX_FAIL(prefix(), "unknown key '", key_path(key), "' (", guess.empty() ? "" : "did you mean '" + guess + "'? ",
               "supported here: ", list, ")");
    }
  }
  bool has(const std::string& key) const { return obj.contains(key); }
  Section sub(const std::string& key) const { return Section{source, obj.at(key), key_path(key)}; }
  double number(const std::string& key, double lo, bool lo_open, double hi = INFINITY, bool hi_open = false) const {
    const json& v = obj.at(key);
    MOX_CHECK(v.is_number(), prefix(), "'", key_path(key), "' must be a number, got ", v.dump());
    const double d = v.get<double>();
    const bool ok = std::isfinite(d) && (lo_open ? d > lo : d >= lo) && (hi_open ? d < hi : d <= hi);
    MOX_CHECK(ok, prefix(), "'", key_path(key), "' = ", v.dump(), " must be ", lo_open ? "> " : ">= ", lo,
              std::isfinite(hi) ? (hi_open ? " and < " : " and <= ") + str(hi) : "");
    return d;
  }
  int64_t integer(const std::string& key, int64_t lo, int64_t hi = INT64_MAX) const {
    const json& v = obj.at(key);
    MOX_CHECK(v.is_number_integer() && v.get<int64_t>() >= lo && v.get<int64_t>() <= hi, prefix(), "'", key_path(key),
              "' must be an integer ", hi == INT64_MAX ? str(">= ", lo) : str("in [", lo, ", ", hi, "]"), ", got ", v.dump());
    return v.get<int64_t>();
  }
  bool boolean(const std::string& key) const {
    const json& v = obj.at(key);
    MOX_CHECK(v.is_boolean(), prefix(), "'", key_path(key), "' must be true or false, got ", v.dump());
    return v.get<bool>();
  }
  std::string string(const std::string& key) const {
    const json& v = obj.at(key);
    MOX_CHECK(v.is_string(), prefix(), "'", key_path(key), "' must be a string, got ", v.dump());
    return v.get<std::string>();
  }
};

// Parses `text`, failing on invalid JSON and on a key repeated within one object.
json parse_strict(const std::string& text, const std::string& source) {
  std::vector<std::set<std::string>> seen;   // keys of each open object
  std::vector<std::string> path;             // the key under which each open object sits
  std::string pending_key, duplicate;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        seen.emplace_back();
        path.push_back(pending_key);
        break;
      case json::parse_event_t::key:
        pending_key = parsed.get<std::string>();
        if (!seen.back().insert(pending_key).second && duplicate.empty()) {
          for (size_t i = 1; i < path.size(); ++i) duplicate += path[i] + ".";
          duplicate += pending_key;
        }
        break;
      case json::parse_event_t::object_end:
        seen.pop_back();
        path.pop_back();
        break;
      default: break;
    }
    return true;
  };
  json cfg = json::parse(text, callback, /*allow_exceptions=*/false);
  MOX_CHECK(!cfg.is_discarded(), "config '", source, "': not valid JSON");
  MOX_CHECK(duplicate.empty(), "config '", source, "': key '", duplicate,
            "' appears twice in one object (JSON readers silently keep the last; remove one)");
  return cfg;
}

DsOptimizer read_optimizer(const Section& s) {
  s.only({"type", "params"});
  MOX_CHECK(s.has("type"), s.prefix(), "'optimizer' needs a 'type' (SGD, Adam or AdamW)");
  DsOptimizer o;
  const std::string type = lower(s.string("type"));
  MOX_CHECK(type == "sgd" || type == "adam" || type == "adamw", s.prefix(), "optimizer.type '", s.string("type"),
            "' is not one of SGD, Adam, AdamW");
  const json empty = json::object();
  const Section p = s.has("params") ? s.sub("params") : Section{s.source, empty, "optimizer.params"};
  if (type == "sgd") p.only({"lr", "momentum", "weight_decay"});
  else if (type == "adam") p.only({"lr", "betas", "eps", "weight_decay", "adam_w_mode"});
  else p.only({"lr", "betas", "eps", "weight_decay"});
  o.type = type == "adam" && (!p.has("adam_w_mode") || p.boolean("adam_w_mode")) ? "adamw" : type;
  if (p.has("lr")) o.lr = p.number("lr", 0, true);
  if (p.has("momentum")) o.momentum = p.number("momentum", 0, false, 1, true);
  if (p.has("weight_decay")) o.weight_decay = p.number("weight_decay", 0, false);
  if (p.has("betas")) {
    const json& b = p.obj.at("betas");
    MOX_CHECK(b.is_array() && b.size() == 2 && b[0].is_number() && b[1].is_number(), p.prefix(),
              "'optimizer.params.betas' must be [beta1, beta2], got ", b.dump());
    o.beta1 = b[0].get<double>();
    o.beta2 = b[1].get<double>();
    MOX_CHECK(*o.beta1 >= 0 && *o.beta1 < 1 && *o.beta2 >= 0 && *o.beta2 < 1, p.prefix(), "'optimizer.params.betas' ",
              b.dump(), " must both be in [0, 1)");
  }
  if (p.has("eps")) o.eps = p.number("eps", 0, true);
  return o;
}

DsScheduler read_scheduler(const Section& s) {
  s.only({"type", "params"});
  MOX_CHECK(s.has("type"), s.prefix(), "'scheduler' needs a 'type' (WarmupLR)");
  MOX_CHECK(s.string("type") == "WarmupLR", s.prefix(), "scheduler.type '", s.string("type"),
            "' is not supported (supported: WarmupLR)");
  DsScheduler d;
  const json empty = json::object();
  const Section p = s.has("params") ? s.sub("params") : Section{s.source, empty, "scheduler.params"};
  p.only({"warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type"});
  if (p.has("warmup_min_lr")) d.warmup_min_lr = p.number("warmup_min_lr", 0, false);
  if (p.has("warmup_max_lr")) d.warmup_max_lr = p.number("warmup_max_lr", 0, true);
  if (p.has("warmup_num_steps")) d.warmup_num_steps = p.integer("warmup_num_steps", 2);
  if (p.has("warmup_type")) {
    d.warmup_type = p.string("warmup_type");
    MOX_CHECK(d.warmup_type == "log" || d.warmup_type == "linear", p.prefix(), "'scheduler.params.warmup_type' '",
              *d.warmup_type, "' is not one of log, linear");
  }
  return d;
}

void read_fp16(const Section& s, DsConfig& c) {
  s.only({"enabled", "loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis", "consecutive_hysteresis",
          "min_loss_scale"});
  c.fp16 = s.has("enabled") && s.boolean("enabled");
  optim::LossScalerConfig& l = c.loss_scaler;
  if (s.has("loss_scale")) l.loss_scale = s.number("loss_scale", 0, false);
  if (s.has("initial_scale_power")) l.initial_scale_power = int(s.integer("initial_scale_power", 0, 64));
  if (s.has("loss_scale_window")) l.loss_scale_window = s.integer("loss_scale_window", 1);
  if (s.has("hysteresis")) l.hysteresis = int(s.integer("hysteresis", 1, 1 << 20));
  if (s.has("consecutive_hysteresis")) l.consecutive_hysteresis = s.boolean("consecutive_hysteresis");
  if (s.has("min_loss_scale")) l.min_loss_scale = s.number("min_loss_scale", 0, true);
}

}  // namespace

std::string nearest_name(const std::string& key, const std::vector<std::string>& allowed) {
  std::string best;
  size_t best_d = std::max<size_t>(key.size() / 3, 1) + 1;
  for (const std::string& a : allowed)
    if (const size_t d = edit_distance(key, a); d < best_d) {
      best = a;
      best_d = d;
    }
  return best;
}

DsConfig parse_ds_config(const std::string& text, const std::string& source) {
  const json cfg = parse_strict(text, source);
  const Section top{source, cfg, ""};
  top.only({"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "steps_per_print",
            "gradient_clipping", "wall_clock_breakdown", "optimizer", "scheduler", "fp16", "bf16", "zero_optimization"});
  DsConfig c;
  c.source = source;
  if (top.has("train_batch_size")) c.train_batch_size = top.integer("train_batch_size", 1);
  if (top.has("train_micro_batch_size_per_gpu"))
    c.train_micro_batch_size_per_gpu = top.integer("train_micro_batch_size_per_gpu", 1);
  if (top.has("gradient_accumulation_steps")) c.gradient_accumulation_steps = top.integer("gradient_accumulation_steps", 1);
  if (top.has("steps_per_print")) c.steps_per_print = top.integer("steps_per_print", 1);
  if (top.has("gradient_clipping")) c.gradient_clipping = top.number("gradient_clipping", 0, false);
  if (top.has("wall_clock_breakdown")) c.wall_clock_breakdown = top.boolean("wall_clock_breakdown");
  if (top.has("optimizer")) c.optimizer = read_optimizer(top.sub("optimizer"));
  if (top.has("scheduler")) c.scheduler = read_scheduler(top.sub("scheduler"));
  if (top.has("fp16")) read_fp16(top.sub("fp16"), c);
  if (top.has("bf16")) {
    const Section b = top.sub("bf16");
    b.only({"enabled"});
    c.bf16 = b.has("enabled") && b.boolean("enabled");
  }
  MOX_CHECK(!(c.fp16 && c.bf16), "config '", source, "': fp16.enabled and bf16.enabled are both true; choose one");
  if (top.has("zero_optimization")) {
    const Section z = top.sub("zero_optimization");
    z.only({"stage"});
    if (z.has("stage")) c.zero_stage = int(z.integer("stage", 0, 3));
    MOX_CHECK(c.zero_stage <= 1, "config '", source, "': zero_optimization.stage ", c.zero_stage,
              " is not supported (mox supports 0 and 1: optimizer state sharded over data-parallel ranks)");
  }
  return c;
}

DsConfig read_ds_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOX_CHECK(in.good(), "config '", path, "': cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_ds_config(text.str(), path);
}

BatchSizes resolve_batch_sizes(const DsConfig& c, int64_t dp) {
  MOX_CHECK(dp >= 1, "batch sizes: the data-parallel size ", dp, " must be positive");
  const auto& t = c.train_batch_size;
  const auto& m = c.train_micro_batch_size_per_gpu;
  const auto& a = c.gradient_accumulation_steps;
  auto show = [&](const std::optional<int64_t>& v) { return v ? std::to_string(*v) : std::string("unset"); };
  const std::string numbers = str("train_batch_size ", show(t), ", train_micro_batch_size_per_gpu ", show(m),
                                  ", gradient_accumulation_steps ", show(a), ", data-parallel size ", dp);
  MOX_CHECK(t || m, "config '", c.source, "': set train_batch_size or train_micro_batch_size_per_gpu (", numbers, ")");
  BatchSizes b;
  if (t && m && a) {
    b = {*t, *m, *a};
  } else if (t && m) {
    MOX_CHECK(*t % (*m * dp) == 0, "config '", c.source, "': train_batch_size must equal micro × accumulation × "
              "data-parallel size; ", numbers, " leaves no whole number of accumulation steps");
    b = {*t, *m, *t / (*m * dp)};
  } else if (t) {
    const int64_t acc = a ? *a : 1;
    MOX_CHECK(*t % (acc * dp) == 0, "config '", c.source, "': train_batch_size must equal micro × accumulation × "
              "data-parallel size; ", numbers, " leaves no whole micro-batch");
    b = {*t, *t / (acc * dp), acc};
  } else {
    const int64_t acc = a ? *a : 1;
    b = {*m * acc * dp, *m, acc};
  }
  MOX_CHECK(b.train == b.micro * b.accum * dp && b.micro >= 1 && b.accum >= 1, "config '", c.source,
            "': train_batch_size must equal train_micro_batch_size_per_gpu × gradient_accumulation_steps × "
            "data-parallel size; got ", numbers);
  return b;
}

}  // namespace mox::dist
