// checkpoint.cpp — resolve, load and describe mox-llm checkpoints (see checkpoint.h).
#include "examples/llm/checkpoint.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "nn/quantized.h"

namespace mox::llm {

namespace fs = std::filesystem;

std::string resolve_checkpoint(const std::string& p) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    for (const char* name : {"best.safetensors", "last.safetensors"})
      if (fs::is_regular_file(fs::path(p) / name, ec)) return (fs::path(p) / name).string();
    MOX_FAIL("checkpoint directory '", p, "' holds neither best.safetensors nor last.safetensors");
  }
  MOX_CHECK(fs::is_regular_file(p, ec), "checkpoint '", p, "' not found");
  return p;
}

nn::Metadata base_metadata(const Transformer& model, const data::Tokenizer& tokenizer, bool quantized) {
  nn::Metadata m{{"example", "llm"}, {"config", model.config().to_json()}, {"tokenizer", tokenizer.to_json()}};
  if (quantized) m["quantized"] = "int8";
  return m;
}

bool keep_in_float(const std::string& path) {
  return path.find("gate.wg") != std::string::npos || path.find("coefficient") != std::string::npos;
}

Loaded load_llm(const std::string& path_or_dir) {
  Loaded l;
  l.path = resolve_checkpoint(path_or_dir);
  // The metadata first: the model must be built from the file's config before it can load.
  nn::Metadata meta = nn::read_checkpoint_metadata(l.path);
  MOX_CHECK(meta.count("example") && meta["example"] == "llm", "checkpoint '", l.path,
            "' is not a mox-llm checkpoint (metadata 'example' is '", meta.count("example") ? meta["example"] : "",
            "')");
  l.config = ModelConfig::from_json(nn::require_meta(meta, "config", l.path));
  l.tokenizer = data::tokenizer_from_json(nn::require_meta(meta, "tokenizer", l.path));
  MOX_CHECK(l.tokenizer->vocab_size() == l.config.vocab_size, "checkpoint '", l.path, "': tokenizer has ",
            l.tokenizer->vocab_size(), " symbols, the model's vocab_size is ", l.config.vocab_size);
  l.gen = std::make_shared<Generator>(0);
  l.model = std::make_shared<Transformer>(l.config, l.gen);
  l.quantized = meta.count("quantized") && meta["quantized"] == "int8";
  if (l.quantized) nn::quantize_linears(*l.model, [](const std::string& p, const nn::Linear&) { return keep_in_float(p); });
  l.meta = nn::load_checkpoint(l.path, *l.model, nullptr);
  if (l.meta.count("model_rng")) nn::restore_generator(*l.gen, l.meta, "model_rng", l.path);
  return l;
}

}  // namespace mox::llm
