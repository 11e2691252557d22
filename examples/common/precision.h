// precision.h — the examples' mixed precision: the --dtype fp32|fp16|bf16 flag and the fp16
// loss-scaler flags, and what both training loops share to run optim::MixedPrecision under
// them (the overflow flag over the ranks, metrics, checkpoint metadata).
//
// --dtype names the model's dtype (DeepSpeed's names): its weights and activations are f16 or
// bf16, the optimizer updates fp32 master weights, MoE routers stay fp32, losses are taken in
// f32. fp16 adds DeepSpeed's dynamic loss scaler with its defaults (initial scale 2^16, window
// 1000, hysteresis 2, min scale 1; --initial-scale-power, --loss-scale-window, --hysteresis,
// --min-loss-scale change them, with --dtype fp16 only): a step whose gradients overflow is
// skipped (and does not advance the LR schedule, as in DeepSpeed); the count and the current
// scale go to the metrics and the log.
//
// Checkpoints hold the fp32 masters (MixedPrecision::model_state) and, as metadata, "dtype"
// (absent in older files: fp32), "skipped_steps" and, for fp16, the scaler's state
// "loss_scaler.<key>". A run resumes only with the dtype it was trained with.
//
// What it is not: the mechanics (nn/optim/mixed_precision.h) or the loops (each example).
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "dist/process_group.h"
#include "examples/common/cli.h"
#include "nn/checkpoint.h"
#include "nn/optim/mixed_precision.h"
#include "nn/optim/state_text.h"

namespace mox::examples {

inline const char* const kScalerFlags[] = {"--initial-scale-power", "--loss-scale-window", "--hysteresis",
                                           "--min-loss-scale"};

// `dtype` ("fp32" | "fp16" | "bf16") and `scaler` (DeepSpeed's defaults) are the example's options.
inline void add_precision_flags(CLI::App& app, std::string& dtype, optim::LossScalerConfig& s) {
  app.add_option("--dtype", dtype,
                 "the model's weights and activations: fp32 | fp16 | bf16 (fp32 master weights in the optimizer, "
                 "MoE routers fp32; fp16 with dynamic loss scaling)")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
  app.add_option("--initial-scale-power", s.initial_scale_power, "fp16: the first loss scale is 2^N")
      ->check(finite_in(0, 1023, false, "[0, 1023]"));
  app.add_option("--loss-scale-window", s.loss_scale_window, "fp16: clean steps before the loss scale doubles")
      ->check(finite_in(1, 1e15, false, "INT >= 1"));
  app.add_option("--hysteresis", s.hysteresis, "fp16: overflows absorbed before the loss scale halves")
      ->check(finite_in(1, 1e9, false, "INT >= 1"));
  app.add_option("--min-loss-scale", s.min_loss_scale,
                 "fp16: the smallest loss scale (an overflow there stops the run)")
      ->check(finite_in(0, HUGE_VAL, true, "POSITIVE"));
}

// After parsing: "" or the usage error (a scaler flag without --dtype fp16, or a scaler the
// settings make impossible: 2^initial-scale-power below --min-loss-scale).
inline std::string check_precision_flags(const CLI::App& app, const std::string& dtype,
                                         const optim::LossScalerConfig& scaler) {
  for (const char* flag : kScalerFlags)
    if (app.count(flag) && dtype != "fp16")
      return std::string(flag) + " sets the fp16 loss scaler; it needs --dtype fp16 (this run has --dtype " + dtype +
             ")";
  if (dtype == "fp16") try {
      optim::LossScaler check(scaler);
    } catch (const std::exception& e) {
      return e.what();
    }
  return "";
}

inline DType compute_dtype(const std::string& flag) {
  if (flag == "fp16") return DType::f16;
  if (flag == "bf16") return DType::bf16;
  MOX_CHECK(flag == "fp32", "--dtype '", flag, "' is not one of fp32, fp16, bf16");
  return DType::f32;
}

// fp16: whether any rank's gradients overflowed (a max-reduce over `world`, so every rank skips
// alike — an expert's overflow may show on its expert-parallel ranks only). false otherwise,
// with no collective (every rank has the same dtype).
inline bool overflow_anywhere(const optim::MixedPrecision& mp, dist::ProcessGroup& world) {
  if (!mp.scaler()) return false;
  Tensor flag = from_vector<float>({mp.overflowed() ? 1.0f : 0.0f}, {1});
  if (world.size() > 1) world.all_reduce(flag, dist::ReduceOp::max);
  return flag.item<float>() != 0;
}

// fp16: the current loss scale and the steps skipped so far, for a train metrics record and
// the log line (", loss scale 65536, 0 skipped steps"); nothing for fp32 and bf16.
inline void add_precision_metrics(nlohmann::json& record, const optim::MixedPrecision& mp, int64_t skipped) {
  if (!mp.scaler()) return;
  record["loss_scale"] = mp.loss_scale();
  record["skipped_steps"] = skipped;
}
inline std::string precision_log(const optim::MixedPrecision& mp, int64_t skipped) {
  if (!mp.scaler()) return "";
  return str(", loss scale ", optim::exact_text(mp.loss_scale()), ", ", skipped, " skipped step", skipped == 1 ? "" : "s");
}

inline void save_precision_metadata(nn::Metadata& meta, const std::string& dtype, const optim::MixedPrecision& mp,
                                    int64_t skipped) {
  meta["dtype"] = dtype;
  meta["skipped_steps"] = std::to_string(skipped);
  if (mp.scaler())
    for (const auto& [k, v] : mp.scaler()->state()) meta["loss_scaler." + k] = v;
}

// A resumed run: refuses another dtype than the checkpoint's (the error names both and the
// flag to use), restores the fp16 scaler and returns the skipped steps so far.
inline int64_t restore_precision_metadata(const nn::Metadata& meta, const std::string& path, const std::string& dtype,
                                          optim::MixedPrecision& mp) {
  const std::string saved = meta.count("dtype") ? meta.at("dtype") : "fp32";
  MOX_CHECK(saved == dtype, "checkpoint '", path, "' was trained with --dtype ", saved, ", but this run has --dtype ",
            dtype, "; resume with --dtype ", saved,
            " (the dtype cannot change on resume: the continuation and the fp16 loss scaler depend on it)");
  if (optim::LossScaler* scaler = mp.scaler()) {
    std::map<std::string, std::string> state;
    for (const auto& [k, v] : meta)
      if (k.rfind("loss_scaler.", 0) == 0) state[k.substr(12)] = v;
    try {
      scaler->load_state(state);
    } catch (const std::exception& e) {
      MOX_FAIL("checkpoint '", path, "': ", e.what());
    }
  }
  return meta.count("skipped_steps") ? nn::require_meta_count(meta, "skipped_steps", path) : 0;
}

}  // namespace mox::examples
