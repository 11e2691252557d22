// backend.cpp — the device → backend table.
//
// The CPU backend is always present. The CUDA backend (tensor/cuda/, linked in when the
// build found nvcc) is found through the weak symbol mox_cuda_backend(): absent in a CPU-only
// build, returning null when no GPU is visible. Asking for an absent backend is a clear error
// saying which of the two it is, not a crash.
#include "tensor/backend.h"

#include "tensor/cpu/cpu_backend.h"

extern "C" mox::Backend* mox_cuda_backend() __attribute__((weak));

namespace mox {

namespace {
Backend* g_cuda_backend = nullptr;
Backend* cuda_or_null() {
  if (!g_cuda_backend && mox_cuda_backend) g_cuda_backend = mox_cuda_backend();
  return g_cuda_backend;
}
}  // namespace

bool cuda_built() { return mox_cuda_backend != nullptr; }

bool backend_available(DeviceType type) {
  return type == DeviceType::CPU || cuda_or_null() != nullptr;
}

Backend& backend(Device device) {
  if (device.is_cpu()) return cpu_backend();
  Backend* cuda = cuda_or_null();
  MOX_CHECK(cuda != nullptr, "device ", device, " requested, but ",
            cuda_built() ? "no CUDA device is visible to this process (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
                         : "this mox was built without the CUDA backend (rebuild with nvcc on the PATH or "
                           "CUDA_HOME set, `make CUDA=1`)",
            "; or use --device cpu");
  return *cuda;
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
