// backend.cpp — the device → backend table.
//
// The CPU backend is always present. The CUDA backend lives in libmox_cuda.so beside the
// program (tensor/cuda_library.h): loaded the first time a CUDA device is asked about and
// the driver reports one, entered through its mox_cuda_backend(). Asking for an absent
// backend is a clear error saying why (not built, no device, the library or the CUDA
// runtime cannot start), not a crash.
#include "tensor/backend.h"

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cuda_library.h"

namespace mox {

namespace {

struct CudaState {
  Backend* backend = nullptr;
  std::string unavailable;   // why backend is null
};

const CudaState& cuda_state() {
  static const CudaState state = [] {
    CudaState s;
    if (!cuda_library::present()) {
      s.unavailable = str("this mox was built without the CUDA backend (no ", cuda_library::path(),
                          " beside this program: build where nvcc is found, `make CUDA=1`, or keep the library "
                          "beside a program you move)");
      return s;
    }
    if (const std::string why = cuda_library::device_probe(); !why.empty()) {
      s.unavailable = str("no CUDA device is visible to this process (", why,
                          "; check nvidia-smi and CUDA_VISIBLE_DEVICES)");
      return s;
    }
    if (const std::string why = cuda_library::load_error(); !why.empty()) {
      s.unavailable = str("the CUDA backend library cannot be loaded: ", why);
      return s;
    }
    using Entry = Backend* (*)();
    using Reason = const char* (*)();
    const auto entry = reinterpret_cast<Entry>(cuda_library::symbol("mox_cuda_backend"));
    const auto reason = reinterpret_cast<Reason>(cuda_library::symbol("mox_cuda_unavailable_reason"));
    MOX_CHECK(entry && reason, cuda_library::path(), " lacks mox_cuda_backend/mox_cuda_unavailable_reason");
    s.backend = entry();
    if (!s.backend) s.unavailable = str("the CUDA runtime cannot start: ", reason());
    return s;
  }();
  return state;
}

}  // namespace

bool cuda_built() { return cuda_library::present(); }

std::string cuda_unavailable_reason() { return cuda_state().unavailable; }

bool backend_available(DeviceType type) {
  return type == DeviceType::CPU || cuda_state().backend != nullptr;
}

Backend& backend(Device device) {
  if (device.is_cpu()) return cpu_backend();
  const CudaState& cuda = cuda_state();
  MOX_CHECK(cuda.backend != nullptr, "device ", device, " requested, but ", cuda.unavailable, "; or use --device cpu");
  return *cuda.backend;
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
