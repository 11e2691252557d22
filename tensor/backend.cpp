// backend.cpp — the device → backend table.
//
// The CPU backend is always present. Other backends (CUDA) register themselves at
// start-up when they were built; asking for an absent one is a clear error, not a crash.
#include "tensor/backend.h"

#include "tensor/cpu/cpu_backend.h"

namespace mox {

namespace {
Backend* g_cuda_backend = nullptr;
}

void register_backend(DeviceType type, Backend* b) {
  MOX_CHECK(type == DeviceType::CUDA, "only the CUDA backend registers itself");
  g_cuda_backend = b;
}

bool backend_available(DeviceType type) {
  return type == DeviceType::CPU || g_cuda_backend != nullptr;
}

Backend& backend(Device device) {
  if (device.is_cpu()) return cpu_backend();
  MOX_CHECK(g_cuda_backend != nullptr, "device ", device,
            " requested, but this mox was built without the CUDA backend "
            "(rebuild on a machine with nvcc, or use --device cpu)");
  return *g_cuda_backend;
}

const char* unary_name(UnaryOp op) {
  static const char* names[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos",
                                "tanh", "sigmoid", "relu", "gelu", "gelu_tanh", "silu",
                                "square", "reciprocal"};
  return names[int(op)];
}

const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "maximum", "minimum", "pow",
                                "eq", "ne", "lt", "le", "gt", "ge"};
  return names[int(op)];
}

}  // namespace mox
