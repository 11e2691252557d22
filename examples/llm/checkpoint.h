// checkpoint.h — mox-llm checkpoints: one safetensors file holding the model, optionally the
// optimizer, and as metadata everything needed to use or resume it.
//
// Metadata: "example" = "llm", "config" (ModelConfig JSON), "tokenizer" (its JSON),
// "step" (optimizer steps done), "best_val_loss", "model_rng" and "data_rng" ("seed:offset"
// of the model's and the data sampler's generators), "train_options" (JSON, informative),
// "quantized" = "int8" for a quantised model (its Linears are QuantizedLinear buffers), and
// from training runs "dtype", "skipped_steps" and, for fp16, "loss_scaler.*"
// (examples/common/precision.h). The weights are f32 whatever --dtype trained them: a 16-bit
// run saves its fp32 master weights.
// A training run writes <out>/last.safetensors and <out>/best.safetensors (lowest validation
// loss so far), each atomically (nn/checkpoint.h). Anything that takes --checkpoint accepts
// the file or the directory (best, else last).
//
// What it is not: a format of its own — the file opens with Python's safetensors.
#pragma once
#include <memory>
#include <string>

#include "datasets/tokenizer.h"
#include "examples/llm/model.h"
#include "nn/checkpoint.h"
#include "nn/optim/optimizer.h"

namespace mox::llm {

// A file as is; a directory → its best.safetensors, else last.safetensors; errors name the path.
std::string resolve_checkpoint(const std::string& path_or_dir);

struct Loaded {
  std::string path;                               // the file actually read
  ModelConfig config;
  std::shared_ptr<const data::Tokenizer> tokenizer;
  std::shared_ptr<Generator> gen;                 // the model's generator, restored
  std::shared_ptr<Transformer> model;
  nn::Metadata meta;
  bool quantized = false;
};

// Builds the model from the file's config (quantised when the file is) and loads its weights
// and the model generator's state (no optimizer: train --resume loads that itself).
Loaded load_llm(const std::string& path_or_dir);

// The metadata every mox-llm checkpoint carries (the caller adds step, rng, ...).
nn::Metadata base_metadata(const Transformer& model, const data::Tokenizer& tokenizer, bool quantized);

// Keep the router (gate.wg) and the PR-MoE coefficient in float: routing decisions stay
// exactly those of the float model's router, and both are tiny.
bool keep_in_float(const std::string& path);

}  // namespace mox::llm
