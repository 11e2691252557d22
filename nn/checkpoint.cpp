// checkpoint.cpp — see checkpoint.h.
#include "nn/checkpoint.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "nn/safetensors.h"

namespace mox::nn {

namespace {
const std::string kModel = "model.";
const std::string kOptim = "optimizer.";
bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

ModelState module_state(Module& model) {
  return {[&model] { return model.state_dict(); }, [&model](const NamedTensors& s) { model.load_state_dict(s); }};
}

void save_checkpoint(const std::string& path, const Module& model, const optim::Optimizer* optimizer,
                     const Metadata& metadata) {
  save_checkpoint(path, ModelState{[&model] { return model.state_dict(); }, {}}, optimizer, metadata);
}

void save_checkpoint(const std::string& path, const ModelState& model, const optim::Optimizer* optimizer,
                     const Metadata& metadata) {
  NamedTensors tensors;
  for (auto& [name, t] : model.get()) tensors.emplace_back(kModel + name, t);
  Metadata meta;
  for (auto& [k, v] : metadata) {
    MOX_CHECK(!starts_with(k, kOptim), "save_checkpoint: metadata key '", k, "' uses the reserved prefix '",
              kOptim, "'");
    meta[k] = v;
  }
  if (optimizer) {
    optim::OptimizerState st = optimizer->state_dict();
    for (auto& [name, t] : st.tensors) tensors.emplace_back(kOptim + name, t);
    for (auto& [k, v] : st.meta) meta[kOptim + k] = v;
  }
  save_safetensors(path, tensors, meta);
}

Metadata load_checkpoint(const std::string& path, Module& model, optim::Optimizer* optimizer) {
  return load_checkpoint(path, module_state(model), optimizer);
}

Metadata load_checkpoint(const std::string& path, const ModelState& model, optim::Optimizer* optimizer) {
  SafetensorsFile file = load_safetensors(path);
  NamedTensors model_state;
  optim::OptimizerState optim_state;
  for (auto& [name, t] : file.tensors) {
    if (starts_with(name, kModel)) model_state.emplace_back(name.substr(kModel.size()), t);
    else if (starts_with(name, kOptim)) optim_state.tensors.emplace_back(name.substr(kOptim.size()), t);
    else MOX_FAIL("checkpoint '", path, "': tensor '", name, "' is neither 'model.*' nor 'optimizer.*'");
  }
  Metadata user;
  for (auto& [k, v] : file.metadata) {
    if (starts_with(k, kOptim)) optim_state.meta[k.substr(kOptim.size())] = v;
    else user[k] = v;
  }
  try {
    // All or nothing: model.load_state_dict validates before it changes anything, and the
    // model is put back if the optimizer's state is absent or does not fit.
    NamedTensors backup;
    if (optimizer)
      for (auto& [name, t] : model.get()) backup.emplace_back(name, raw::clone(t));
    model.load(model_state);
    if (optimizer) {
      try {
        MOX_CHECK(!optim_state.meta.empty(), "it holds no optimizer state (saved model-only?); load it "
                  "without an optimizer");
        optimizer->load_state_dict(optim_state);
      } catch (const Error&) {
        model.load(backup);
        throw;
      }
    }
  } catch (const Error& e) {
    MOX_FAIL("checkpoint '", path, "': ", e.what());
  }
  return user;
}

Metadata read_checkpoint_metadata(const std::string& path) {
  Metadata user;
  for (auto& [k, v] : load_safetensors(path).metadata)
    if (!starts_with(k, kOptim)) user[k] = v;
  return user;
}

std::string require_meta(const Metadata& meta, const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  MOX_CHECK(it != meta.end(), "checkpoint '", path, "': metadata key '", key, "' is missing");
  return it->second;
}

int64_t require_meta_count(const Metadata& meta, const std::string& key, const std::string& path) {
  const std::string v = require_meta(meta, key, path);
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  MOX_CHECK(!v.empty() && *end == '\0' && errno == 0 && n >= 0, "checkpoint '", path, "': metadata key '", key,
            "' is '", v, "', expected a non-negative integer");
  return n;
}

double require_meta_number(const Metadata& meta, const std::string& key, const std::string& path) {
  const std::string v = require_meta(meta, key, path);
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  MOX_CHECK(!v.empty() && *end == '\0' && !std::isnan(d), "checkpoint '", path, "': metadata key '", key, "' is '", v,
            "', expected a number");
  return d;
}

std::string generator_state(const Generator& g) { return std::to_string(g.seed()) + ":" + std::to_string(g.offset()); }

void restore_generator(Generator& g, const Metadata& meta, const std::string& key, const std::string& path) {
  const std::string v = require_meta(meta, key, path);
  const size_t colon = v.find(':');
  const std::string seed_text = colon == std::string::npos ? "" : v.substr(0, colon);
  const std::string offset_text = colon == std::string::npos ? "" : v.substr(colon + 1);
  auto parse = [&](const std::string& text, unsigned long long& out) {
    char* end = nullptr;
    errno = 0;
    out = std::strtoull(text.c_str(), &end, 10);
    return !text.empty() && text[0] != '-' && *end == '\0' && errno == 0;
  };
  unsigned long long seed = 0, offset = 0;
  MOX_CHECK(parse(seed_text, seed) && parse(offset_text, offset), "checkpoint '", path, "': metadata key '", key,
            "' is '", v, "', expected seed:offset");
  g.set_state(seed, offset);
}

}  // namespace mox::nn
