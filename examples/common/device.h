// device.h — the examples' --device flag: "cpu", "cuda", "cuda:N", or "auto" (the default:
// cuda when this build has the CUDA backend and a GPU is visible and the job is one process,
// else cpu). A multi-rank job stays on the CPU under auto: a rank cannot tell alone whether
// every rank has a GPU of its own (NCCL refuses two ranks on one GPU); an explicit cuda is kept.
//
// device_validator() makes an unusable choice a usage error (exit 2) naming why: not a device
// name, a CUDA-less build, no visible GPU, or an index other than 0 — one GPU per process, and
// scripts/moxrun gives each rank its own through CUDA_VISIBLE_DEVICES. resolve_device() turns
// the accepted text into the Device; device_summary() is the one line a program announces.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "tensor/backend.h"
#include "tensor/device.h"

namespace mox::examples {

inline Device resolve_device(const std::string& text, int64_t world_size = 1) {
  // world_size first: a multi-rank auto job never asks (asking loads the CUDA library on a GPU machine).
  if (text == "auto") return world_size == 1 && backend_available(DeviceType::CUDA) ? Device::cuda() : Device::cpu();
  return Device::parse(text);
}

inline CLI::Validator device_validator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        if (input == "auto") return "";
        Device d;
        try {
          d = Device::parse(input);
        } catch (const std::exception&) {
          return "'" + input + "' is not a device (cpu, cuda, cuda:0 or auto)";
        }
        if (d.is_cpu()) return "";
        // "this mox was built without the CUDA backend (...)", "no CUDA device is visible ...".
        if (!backend_available(DeviceType::CUDA)) return "'" + input + "': " + cuda_unavailable_reason();
        if (d.index != 0)
          return "'" + input + "': one GPU per process, cuda:0 (scripts/moxrun gives each rank its own GPU)";
        return "";
      },
      "DEVICE");
}

// "device cpu (mox built without CUDA)", "device cpu (no CUDA device visible)", "device cuda:0",
// "device cpu (2 ranks: auto keeps a multi-rank job on the CPU; ...)".
// An explicit cpu asks nothing about CUDA (so a CPU run on a GPU machine loads no CUDA library).
inline std::string device_summary(Device d, const std::string& text = "", int64_t world_size = 1) {
  if (d.is_cuda()) return "device " + d.str();
  if (text != "auto") return "device cpu";
  if (world_size > 1)
    return "device cpu (" + std::to_string(world_size) +
           " ranks: auto keeps a multi-rank job on the CPU; --device cuda for one GPU per rank)";
  if (!cuda_built()) return "device cpu (mox built without CUDA)";
  if (!backend_available(DeviceType::CUDA)) return "device cpu (" + cuda_unavailable_reason() + ")";
  return "device cpu";
}

}  // namespace mox::examples
