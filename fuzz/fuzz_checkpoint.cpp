// fuzz_checkpoint.cpp — libFuzzer target for the checkpoint loader path, end to end: the
// bytes are written to a file and nn::load_checkpoint reads it (mmap → parse_safetensors
// → split into model./optimizer. keys → Module::load_state_dict → Adam::load_state_dict
// with its metadata numbers), into a tiny model and optimizer (fuzz/checkpoint_model.h,
// the same one fuzz/make_seeds.cpp saves the seeds with). A rejected load must leave the
// model untouched (load_checkpoint is all-or-nothing); an accepted one returns no
// "optimizer." metadata to the caller.
#include <cstring>
#include <string>

#include "fuzz/checkpoint_model.h"
#include "fuzz/fuzz_common.h"
#include "fuzz/scratch_file.h"
#include "nn/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const mox::fuzz::ScratchFile scratch("checkpoint", ".safetensors", data, size);
  mox::fuzz::CheckpointModel model;
  mox::optim::Adam optimizer(model.named_parameters());
  const mox::nn::NamedTensors before = mox::fuzz::snapshot(model);
  bool loaded = false;
  mox::fuzz::run_one([&] {
    mox::nn::Metadata meta = mox::nn::load_checkpoint(scratch.path(), model, &optimizer);
    loaded = true;
    for (const auto& [k, v] : meta) MOX_FUZZ_ASSERT(k.rfind("optimizer.", 0) != 0);
  });
  if (!loaded) MOX_FUZZ_ASSERT(mox::fuzz::same_bytes(before, mox::fuzz::snapshot(model)));
  return 0;
}
