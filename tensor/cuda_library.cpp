// cuda_library.cpp — locating, probing for and loading libmox_cuda.so (see cuda_library.h).
#include "tensor/cuda_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <mutex>

#include "tensor/error.h"

namespace mox::cuda_library {

namespace {

std::string program_directory() {
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return ".";
  const std::string p(exe, size_t(n));
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

// The driver API's three calls we need, declared here so the CPU code includes no CUDA
// header (a CPU-only machine has none). CUresult is an int-sized enum; 0 is CUDA_SUCCESS.
using CuInit = int (*)(unsigned flags);
using CuDeviceGetCount = int (*)(int* count);
using CuGetErrorString = int (*)(int error, const char** text);

std::string probe_driver() {
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!driver) return "no NVIDIA driver: libcuda.so.1 not found";
  const auto init = reinterpret_cast<CuInit>(dlsym(driver, "cuInit"));
  const auto count = reinterpret_cast<CuDeviceGetCount>(dlsym(driver, "cuDeviceGetCount"));
  const auto error_string = reinterpret_cast<CuGetErrorString>(dlsym(driver, "cuGetErrorString"));
  if (!init || !count) return "libcuda.so.1 lacks cuInit/cuDeviceGetCount";
  auto describe = [&](int rc) {
    const char* text = nullptr;
    if (error_string) error_string(rc, &text);
    return str("CUDA driver error ", rc, text ? str(" (", text, ")") : std::string());
  };
  if (const int rc = init(0); rc != 0) return str("cuInit failed: ", describe(rc));
  int devices = 0;
  if (const int rc = count(&devices); rc != 0) return str("cuDeviceGetCount failed: ", describe(rc));
  return devices > 0 ? std::string() : "the driver lists 0 devices";
}

std::once_flag g_load_once;
void* g_library = nullptr;
std::string g_load_error;

}  // namespace

std::string path() {
  static const std::string p = program_directory() + "/libmox_cuda.so";
  return p;
}

bool present() {
  static const bool there = access(path().c_str(), R_OK) == 0;
  return there;
}

std::string device_probe() {
  static const std::string why = probe_driver();
  return why;
}

std::string load_error() {
  std::call_once(g_load_once, [] {
    // RTLD_NOW: a missing cuBLAS/cuDNN/NCCL or an unresolved mox symbol is reported here,
    // naming it, instead of at the first call that needs it.
    g_library = dlopen(path().c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!g_library) g_load_error = dlerror();
  });
  return g_load_error;
}

void* symbol(const char* name) {
  MOX_CHECK(g_library != nullptr, "CUDA backend library ", path(), " used before it was loaded");
  return dlsym(g_library, name);
}

}  // namespace mox::cuda_library
