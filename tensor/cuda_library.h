// cuda_library.h — finds and loads the CUDA backend (libmox_cuda.so) on first use.
//
// A build that found nvcc compiles tensor/cuda/*.cu and dist/*.cu into one shared library,
// libmox_cuda.so, placed beside the programs (build/bin/); the programs themselves link no
// CUDA library. The library is dlopen'ed only once a GPU is known to be there: the probe asks
// the NVIDIA driver (libcuda.so.1, cuInit + cuDeviceGetCount) and loads nothing else, so a
// CPU-only run never maps cuBLAS/cuDNN/NCCL (~220 MiB resident when they were linked in).
// The library resolves its calls into mox's CPU code against the program (linked with
// -rdynamic and the whole of libmox.a), so there is exactly one copy of every global.
//
// What it is not: a plugin system (one library, four entry points: mox_cuda_backend,
// mox_cuda_unavailable_reason, mox_nccl_transport_create, mox_nccl_device_identity), nor a
// search path (the library is where the build put it, beside the program).
#pragma once
#include <string>

namespace mox::cuda_library {

// <directory of this program>/libmox_cuda.so.
std::string path();
// The library is there: this mox was built with the CUDA backend.
bool present();
// "" when the driver sees at least one device; otherwise why not (no driver, cuInit's error,
// zero devices). Loads only the driver, once.
std::string device_probe();
// Loads the library (once, resolving every symbol now); "" or the loader's error.
std::string load_error();
// An entry point of the loaded library (load_error() must have been ""), or null when the
// library lacks it (e.g. mox_nccl_* when NCCL was not found at build time).
void* symbol(const char* name);

}  // namespace mox::cuda_library
