// quantize.cpp — `mox-llm quantize`: int8 weight-only quantisation of a trained checkpoint.
//
// Every Linear of the model becomes a QuantizedLinear (nn/quantized.h: per-output-channel
// symmetric int8 weights, f32 scales) except the MoE routers and the PR-MoE coefficient
// (keep_in_float: routing stays that of the float model, and they are tiny); the token
// embedding stays f32 and the output head, which shares it in float, gets its own int8
// copy. The result is a model-only checkpoint with "quantized" = "int8" in its metadata
// (plus the source's "step" and "best_val_loss"), which generate and eval load like any
// other.
//
// Sizes. A training checkpoint also holds the AdamW moments (about 3× the model), so
// comparing against it flatters quantisation; the honest reference is the float32 model
// alone. That size is measured, not estimated: the float model is first written exactly as
// the quantised one will be (model only, same metadata apart from "quantized") to a
// temporary file beside --out, which is removed again. Both ratios are printed.
//
// Device: none to choose (no --device). Everything here runs on the CPU — loading, the one
// pass over each weight that quantises it, and the writes — and the QuantizedLinear layers it
// makes have CPU kernels only (nn/quantized.h), so `generate`/`eval` run an int8 checkpoint on
// the CPU whatever --device auto finds.
//
// What it is not: activation quantisation, calibration, int4 or group-wise scales.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "examples/common/cli.h"
#include "examples/llm/checkpoint.h"
#include "examples/llm/commands.h"
#include "nn/quantized.h"
#include "tensor/cpu/threads.h"

namespace mox::llm {
namespace {

namespace fs = std::filesystem;
using examples::finite_in;

// The metadata of the output: the base entries plus what the source knew about training.
nn::Metadata output_metadata(const Loaded& l, bool quantized) {
  nn::Metadata meta = base_metadata(*l.model, *l.tokenizer, quantized);
  for (const char* key : {"step", "best_val_loss"})
    if (l.meta.count(key)) meta[key] = l.meta.at(key);
  return meta;
}

// The size in bytes of `l`'s model saved alone in float32 (see the file comment).
uintmax_t float_model_only_bytes(const Loaded& l, const std::string& out) {
  const std::string tmp = out + ".float32-size." + std::to_string(::getpid());
  struct Remove {
    const std::string& path;
    ~Remove() {
      std::error_code ec;
      fs::remove(path, ec);
    }
  } remove{tmp};
  nn::save_checkpoint(tmp, *l.model, nullptr, output_metadata(l, false));
  return fs::file_size(tmp);
}

}  // namespace

void add_quantize_command(CLI::App& app, QuantizeOptions& o) {
  CLI::App* c = app.add_subcommand("quantize", "int8 weight-only quantisation of a checkpoint's Linears");
  c->option_defaults()->always_capture_default();
  c->add_option("--checkpoint", o.checkpoint, "float checkpoint file, or a training directory (its best, else last)")
      ->required();
  c->add_option("--out", o.out, "the quantised model-only checkpoint to write (its directory must exist)")
      ->required()
      ->check(examples::existing_parent_dir());
  c->add_option("--threads", o.threads, "CPU threads")->check(finite_in(1, 1024, false, "[1, 1024]"));
}

int run_quantize(const QuantizeOptions& o) {
  set_num_threads(int(o.threads));
  Loaded l = load_llm(o.checkpoint);
  MOX_CHECK(!l.quantized, "checkpoint '", l.path,
            "' is already quantized (int8); quantize the float checkpoint it was made from");
  std::error_code ec;
  MOX_CHECK(!fs::equivalent(o.out, l.path, ec), "--out '", o.out, "' is the source checkpoint '", l.path,
            "'; write the quantized model to another file");
  const uintmax_t source_bytes = fs::file_size(l.path);
  const uintmax_t float_bytes = float_model_only_bytes(l, o.out);

  std::vector<std::string> kept;   // Linears left in float
  const int64_t n = nn::quantize_linears(*l.model, [&kept](const std::string& path, const nn::Linear&) {
    if (!keep_in_float(path)) return false;
    kept.push_back(path);
    return true;
  });
  nn::save_checkpoint(o.out, *l.model, nullptr, output_metadata(l, true));
  const uintmax_t out_bytes = fs::file_size(o.out);

  std::string kept_list;
  for (const std::string& k : kept) kept_list += (kept_list.empty() ? " (" : ", ") + k;
  if (!kept.empty()) kept_list += ")";
  std::printf("mox-llm quantize: %s — %lld Linears quantized to int8, %zu kept in float%s\n", l.path.c_str(),
              (long long)n, kept.size(), kept_list.c_str());
  std::printf("  source checkpoint   %12ju bytes\n", source_bytes);
  std::printf("  float32 model only  %12ju bytes\n", float_bytes);
  std::printf("  int8 model          %12ju bytes = %.3fx the float32 model, %.3fx the source checkpoint\n", out_bytes,
              double(out_bytes) / double(float_bytes), double(out_bytes) / double(source_bytes));
  std::printf("  written to %s\n", o.out.c_str());
  return 0;
}

}  // namespace mox::llm
