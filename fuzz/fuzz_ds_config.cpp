// fuzz_ds_config.cpp — libFuzzer target for mox-cifar10's DeepSpeed-style JSON config reader,
// apply_ds_config_text (examples/cifar10/ds_config.cpp, linked into this target by the
// Makefile), on arbitrary bytes with no flag given. Accepted: every value it set is in the
// range the command line would allow (batch and log interval ≥ 1, a positive finite lr, betas
// and momentum in [0, 1), a known optimizer, a warmup schedule of at least 2 steps).
#include <cmath>
#include <string>

#include "examples/cifar10/ds_config.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  return mox::fuzz::run_one([&] {
    mox::cifar10::Options o;
    mox::cifar10::apply_ds_config_text(text, "fuzz.json", o, [](const std::string&) { return false; });
    MOX_FUZZ_ASSERT(o.batch_size >= 1 && o.log_interval >= 1);
    MOX_FUZZ_ASSERT(std::isfinite(o.lr) && o.lr > 0);
    MOX_FUZZ_ASSERT(std::isfinite(o.grad_clip) && o.grad_clip >= 0);
    MOX_FUZZ_ASSERT(o.momentum >= 0 && o.momentum < 1 && o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1);
    MOX_FUZZ_ASSERT(std::isfinite(o.eps) && o.eps > 0 && std::isfinite(o.weight_decay) && o.weight_decay >= 0);
    MOX_FUZZ_ASSERT(o.optimizer == "sgd" || o.optimizer == "adam" || o.optimizer == "adamw");
    MOX_FUZZ_ASSERT(o.schedule != "warmup" || (o.warmup_steps >= 2 && (o.warmup_type == "log" || o.warmup_type == "linear")));
  });
}
