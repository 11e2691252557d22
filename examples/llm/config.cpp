// config.cpp — ModelConfig validation and JSON (see config.h).
#include "examples/llm/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "tensor/error.h"

namespace mox::llm {

using nlohmann::json;

int64_t llama_hidden(int64_t n_embd) {
  const int64_t h = 2 * 4 * n_embd / 3;
  return (h + 31) / 32 * 32;
}

std::vector<int64_t> ModelConfig::experts_per_layer() const {
  std::vector<int64_t> out(size_t(n_layer), 1);
  const int64_t candidates = n_layer / expert_interval;
  MOX_CHECK(num_experts.size() == 1 || int64_t(num_experts.size()) == candidates, "--num-experts has ",
            num_experts.size(), " entries; with ", n_layer, " layers and --expert-interval ", expert_interval,
            " there are ", candidates, " MoE layers: give one value or one per MoE layer");
  for (int64_t c = 0; c < candidates; ++c)
    out[size_t((c + 1) * expert_interval - 1)] = num_experts.size() == 1 ? num_experts[0] : num_experts[size_t(c)];
  return out;
}

bool ModelConfig::has_moe() const {
  for (int64_t e : experts_per_layer())
    if (e > 1) return true;
  return false;
}

void ModelConfig::validate() const {
  MOX_CHECK(arch == "gpt" || arch == "llama", "arch '", arch, "' is not one of gpt, llama");
  MOX_CHECK(vocab_size >= 1, "vocab_size ", vocab_size, " must be at least 1");
  MOX_CHECK(n_layer >= 1 && n_head >= 1 && n_embd >= 1 && block_size >= 1, "n_layer ", n_layer, ", n_head ", n_head,
            ", n_embd ", n_embd, ", block_size ", block_size, " must all be at least 1");
  // An upper bound before experts_per_layer() allocates n_layer entries: a checkpoint's
  // config claiming 9e18 layers is an error, not a bad_alloc (fuzz/fuzz_llm_config).
  MOX_CHECK(n_layer <= kMaxLayers, "n_layer ", n_layer, " exceeds the limit of ", kMaxLayers, " layers");
  MOX_CHECK(n_embd % n_head == 0, "n_embd ", n_embd, " must be a multiple of n_head ", n_head);
  MOX_CHECK(arch != "llama" || (n_embd / n_head) % 2 == 0, "llama (RoPE) needs an even head size, n_embd/n_head = ",
            n_embd / n_head);
  MOX_CHECK(dropout >= 0 && dropout < 1, "dropout ", dropout, " must be in [0, 1)");
  MOX_CHECK(expert_interval >= 1 && expert_interval <= n_layer, "expert_interval ", expert_interval,
            " must be in [1, n_layer=", n_layer, "]");
  for (int64_t e : num_experts) {
    MOX_CHECK(e >= 1, "num_experts entry ", e, " must be at least 1");
    MOX_CHECK(e == 1 || gate.k <= e, "top-k ", gate.k, " exceeds num_experts ", e);
  }
  experts_per_layer();
}

std::string ModelConfig::to_json() const {
  json j = {{"arch", arch},
            {"vocab_size", vocab_size},
            {"n_layer", n_layer},
            {"n_head", n_head},
            {"n_embd", n_embd},
            {"block_size", block_size},
            {"dropout", dropout},
            {"bias", bias},
            {"num_experts", num_experts},
            {"expert_interval", expert_interval},
            {"use_residual", use_residual},
            {"top_k", gate.k},
            {"capacity_factor", gate.capacity_factor},
            {"eval_capacity_factor", gate.eval_capacity_factor},
            {"min_capacity", gate.min_capacity},
            {"noisy_gate_policy", moe::to_string(gate.noisy_gate_policy)},
            {"drop_tokens", gate.drop_tokens},
            {"use_rts", gate.use_rts},
            {"z_loss_coef", gate.z_loss_coef}};
  return j.dump();
}

namespace {

// Readers of one value of from_json's object, by the field's type. nlohmann's own get_to
// converts a JSON float to an integer field with a plain cast — undefined behaviour for
// 1e300 (found by fuzz/fuzz_llm_config) — so integers are read here: a JSON integer in
// int64 range, or a float with an integral value inside that range; anything else names
// the key.
[[noreturn]] void wrong_type(const char* key, const json& v, const char* expected) {
  MOX_FAIL("model config: key '", key, "' must be ", expected, ", got ", v.dump());
}

void read_value(const char* key, const json& v, int64_t& out) {
  if (v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))) {
    out = v.get<int64_t>();
    return;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // [-2^63, 2^63): every integral double in it converts exactly
    if (d == std::trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
      out = int64_t(d);
      return;
    }
  }
  wrong_type(key, v, "an integer (in int64 range)");
}

void read_value(const char* key, const json& v, double& out) {
  if (!v.is_number()) wrong_type(key, v, "a number");
  out = v.get<double>();
}

void read_value(const char* key, const json& v, bool& out) {
  if (!v.is_boolean()) wrong_type(key, v, "true or false");
  out = v.get<bool>();
}

void read_value(const char* key, const json& v, std::string& out) {
  if (!v.is_string()) wrong_type(key, v, "a string");
  out = v.get<std::string>();
}

void read_value(const char* key, const json& v, std::vector<int64_t>& out) {
  if (!v.is_array()) wrong_type(key, v, "an array of integers");
  out.clear();
  for (const json& e : v) {
    out.emplace_back();
    read_value(key, e, out.back());
  }
}

}  // namespace

ModelConfig ModelConfig::from_json(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  MOX_CHECK(j.is_object(), "model config is not a JSON object: ", text.substr(0, 80));
  ModelConfig c;
  auto get = [&](const char* key, auto& field) {
    MOX_CHECK(j.contains(key), "model config: key '", key, "' is missing");
    read_value(key, j.at(key), field);
  };
  std::string policy;
  get("arch", c.arch);
  get("vocab_size", c.vocab_size);
  get("n_layer", c.n_layer);
  get("n_head", c.n_head);
  get("n_embd", c.n_embd);
  get("block_size", c.block_size);
  get("dropout", c.dropout);
  get("bias", c.bias);
  get("num_experts", c.num_experts);
  get("expert_interval", c.expert_interval);
  get("use_residual", c.use_residual);
  get("top_k", c.gate.k);
  get("capacity_factor", c.gate.capacity_factor);
  get("eval_capacity_factor", c.gate.eval_capacity_factor);
  get("min_capacity", c.gate.min_capacity);
  get("noisy_gate_policy", policy);
  get("drop_tokens", c.gate.drop_tokens);
  get("use_rts", c.gate.use_rts);
  get("z_loss_coef", c.gate.z_loss_coef);
  c.gate.noisy_gate_policy = moe::parse_noisy_gate_policy(policy);
  c.validate();
  return c;
}

}  // namespace mox::llm
