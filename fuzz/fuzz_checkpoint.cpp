// fuzz_checkpoint.cpp — libFuzzer target for the checkpoint loader path, end to end: the
// bytes are written to a file and nn::load_checkpoint reads it (mmap → parse_safetensors
// → split into model./optimizer. keys → Module::load_state_dict → Adam::load_state_dict
// with its metadata numbers), into a tiny model and optimizer (fuzz/checkpoint_model.h,
// the same one fuzz/make_seeds.cpp saves the seeds with). A rejected load must leave the
// model untouched (load_checkpoint is all-or-nothing); an accepted one returns no
// "optimizer." metadata to the caller.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "fuzz/checkpoint_model.h"
#include "fuzz/fuzz_common.h"
#include "nn/checkpoint.h"

namespace {

// One scratch file per process, in memory when /dev/shm exists.
const std::string& scratch_path() {
  static const std::string path = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp && *tmp ? tmp : "/tmp";
    return dir + "/mox-fuzz-checkpoint." + std::to_string(::getpid()) + ".safetensors";
  }();
  return path;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  MOX_FUZZ_ASSERT(fd >= 0);
  while (size > 0) {
    ssize_t w = ::write(fd, data, size);
    MOX_FUZZ_ASSERT(w > 0);
    data += w;
    size -= size_t(w);
  }
  ::close(fd);
}

struct RemoveAtExit {
  ~RemoveAtExit() { ::unlink(scratch_path().c_str()); }
} remove_at_exit;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_file(scratch_path(), data, size);
  mox::fuzz::CheckpointModel model;
  mox::optim::Adam optimizer(model.named_parameters());
  const mox::nn::NamedTensors before = mox::fuzz::snapshot(model);
  bool loaded = false;
  mox::fuzz::run_one([&] {
    mox::nn::Metadata meta = mox::nn::load_checkpoint(scratch_path(), model, &optimizer);
    loaded = true;
    for (const auto& [k, v] : meta) MOX_FUZZ_ASSERT(k.rfind("optimizer.", 0) != 0);
  });
  if (!loaded) MOX_FUZZ_ASSERT(mox::fuzz::same_bytes(before, mox::fuzz::snapshot(model)));
  return 0;
}
