// checkpoint.h — a training checkpoint: model + optimizer state + metadata in one
// safetensors file, written atomically.
//
// Keys: "model.<param or buffer name>", "optimizer.<group>.<param>.<buffer>". Metadata:
// the optimizer's own entries under "optimizer.", the caller's entries (epoch, step, RNG
// state, config...) as given. The file opens in Python with safetensors.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "nn/module.h"
#include "nn/optim/optimizer.h"
#include "tensor/random.h"

namespace mox::nn {

using Metadata = std::map<std::string, std::string>;

// The "model.*" side of a checkpoint: what is written (get) and how it is loaded back (load:
// strict and all-or-nothing, as Module::load_state_dict). For a Module, its state_dict; with
// mixed precision, optim::MixedPrecision::model_state() puts the fp32 master weights in place
// of the 16-bit parameters.
struct ModelState {
  std::function<NamedTensors()> get;
  std::function<void(const NamedTensors&)> load;
};
ModelState module_state(Module& model);

// optimizer may be null (a model-only checkpoint).
void save_checkpoint(const std::string& path, const ModelState& model, const optim::Optimizer* optimizer,
                     const Metadata& metadata);
void save_checkpoint(const std::string& path, const Module& model, const optim::Optimizer* optimizer,
                     const Metadata& metadata);

// Loads into `model` (strict) and, when given, `optimizer` (strict; the file must then
// hold optimizer state). Returns the caller's metadata. Errors name the file and the key;
// a failed load changes neither the model nor the optimizer.
Metadata load_checkpoint(const std::string& path, const ModelState& model, optim::Optimizer* optimizer);
Metadata load_checkpoint(const std::string& path, Module& model, optim::Optimizer* optimizer);

// The caller's metadata of a checkpoint without loading it into a model (e.g. to read the
// architecture a model must be built with first). Errors name the file.
Metadata read_checkpoint_metadata(const std::string& path);

// The value of a metadata key, or an error naming the file and the key.
std::string require_meta(const Metadata& meta, const std::string& key, const std::string& path);
// The same parsed as a non-negative integer / a number (inf allowed, NaN not); errors name
// the file, the key and the text found.
int64_t require_meta_count(const Metadata& meta, const std::string& key, const std::string& path);
double require_meta_number(const Metadata& meta, const std::string& key, const std::string& path);

// A generator's state as metadata text, "seed:offset", and back (errors name the file, the
// key and the text found).
std::string generator_state(const Generator& g);
void restore_generator(Generator& g, const Metadata& meta, const std::string& key, const std::string& path);

}  // namespace mox::nn
