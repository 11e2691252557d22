// device.cpp — mox-llm's --device flag and the choice of device for a run (commands.h).
//
// The flag's text is checked at parsing by examples::device_validator() (not a device, a
// CUDA-less build, no visible GPU, an index other than 0: exit 2 naming why). choose_device()
// then settles what "auto" means for this run: examples::resolve_device's rule (the GPU when
// one is visible and the job is one process), and the CPU for an int8 model (QuantizedLinear
// has CPU kernels only). An explicit cuda is never changed behind the
// user's back: with several ranks it is kept, and the gradient collectives run on CUDA tensors
// over NCCL (dist/transport.h) or the first one fails saying why (a build without NCCL, two
// ranks on one GPU); with an int8 model it is a usage error.
//
// What it is not: moving anything (each command moves its model and batches itself).
#include <CLI/CLI.hpp>

#include "examples/common/device.h"
#include "examples/llm/commands.h"
#include "tensor/error.h"

namespace mox::llm {

RunDevice choose_device(const std::string& flag, int64_t world_size, const std::string& int8_checkpoint) {
  const Device wanted = examples::resolve_device(flag, world_size);
  const bool automatic = flag == "auto";
  if (!int8_checkpoint.empty() && wanted.is_cuda()) {
    if (!automatic)
      throw UsageError(str("--device ", flag, ": checkpoint '", int8_checkpoint,
                           "' is int8-quantized, and its QuantizedLinear layers run on the CPU only "
                           "(nn/quantized.h); use --device cpu (or auto), or the float checkpoint it was made from"));
    return {Device::cpu(), "device cpu (int8 weights run on the CPU)"};
  }
  return {wanted, examples::device_summary(wanted, flag, world_size)};
}

void add_device_flag(CLI::App& c, std::string& device) {
  c.add_option("--device", device, "cpu, cuda, cuda:0 or auto (cuda when a GPU is visible, else cpu)")
      ->check(examples::device_validator());
}

}  // namespace mox::llm
