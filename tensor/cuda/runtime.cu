// runtime.cu — the CUDA backend's memory, copies, stream and registration.
//
// Memory comes from the device's default stream-ordered pool (cudaMallocAsync) with its
// release threshold raised to "never", so freed blocks stay in the pool and steady-state
// training performs no cudaMalloc/cudaFree. Host↔device copies are cudaMemcpyAsync on the
// backend's stream followed by a stream synchronisation (the host buffer is then safe).
#include <atomic>
#include <cstdio>
#include <string>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/cuda_backend.h"

namespace mox::cuda {

void fail(const char* library, const char* call, const char* message, const char* file, int line) {
  MOX_FAIL(library, " error in ", call, ": ", message, "  [", file, ":", line, "]");
}

cudaStream_t stream() {
  static cudaStream_t s = [] {
    cudaStream_t created;
    CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
    cudaMemPool_t pool;
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t keep = UINT64_MAX;   // never return freed memory to the driver
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    return created;
  }();
  return s;
}

View view_of(const Tensor& t) {
  View v;
  v.ndim = t.dim();
  MOX_CHECK(v.ndim <= 8, "CUDA backend: tensors of rank ", v.ndim, " > 8 are not supported");
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = t.size(d);
    v.strides[d] = t.stride(d);
  }
  return v;
}

}  // namespace mox::cuda

namespace mox {

void* CudaBackend::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  void* p = nullptr;
  CUDA_CHECK(cudaMallocAsync(&p, nbytes, cuda::stream()));
  return p;
}

// Called from Storage's destructor, so it never throws: after a sticky CUDA error (say an
// illegal address in a kernel) every free fails, and a throw here would terminate the
// process while the error that matters is still unwinding. The first failure is reported on
// stderr (from any thread) and cleared from the runtime's last-error slot, so that the next
// kernel launch check does not report it as its own; the context's memory is lost with the
// context anyway. cudaErrorCudartUnloading (tensors freed by static destructors at exit) is
// not a failure.
void CudaBackend::deallocate(void* ptr, size_t) {
  if (!ptr) return;
  const cudaError_t rc = cudaFreeAsync(ptr, cuda::stream());
  if (rc == cudaSuccess || rc == cudaErrorCudartUnloading) return;
  (void)cudaGetLastError();
  static std::atomic<bool> reported{false};
  if (!reported.exchange(true))
    std::fprintf(stderr, "mox: cudaFreeAsync failed: %s (later failures to free are not reported)\n",
                 cudaGetErrorString(rc));
}

void CudaBackend::copy_to_host(void* host_dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(host_dst, src, nbytes, cudaMemcpyDeviceToHost, cuda::stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

void CudaBackend::copy_from_host(void* dst, const void* host_src, size_t nbytes) {
  if (nbytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, host_src, nbytes, cudaMemcpyHostToDevice, cuda::stream()));
  CUDA_CHECK(cudaStreamSynchronize(cuda::stream()));
}

}  // namespace mox

// The library's entry points, looked up by tensor/backend.cpp after loading it
// (tensor/cuda_library.h): the backend when the runtime sees a device, else null and the
// runtime's reason (e.g. a driver older than this CUDA runtime).
namespace {
std::string g_unavailable_reason;
}

extern "C" mox::Backend* mox_cuda_backend() {
  static mox::Backend* instance = []() -> mox::Backend* {
    int n = 0;
    const cudaError_t rc = cudaGetDeviceCount(&n);
    if (rc != cudaSuccess || n == 0) {
      g_unavailable_reason = rc != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorString(rc)
                                               : std::string("cudaGetDeviceCount found 0 devices");
      cudaGetLastError();   // clear the sticky error
      return nullptr;
    }
    static mox::CudaBackend backend;
    return &backend;
  }();
  return instance;
}

extern "C" const char* mox_cuda_unavailable_reason() { return g_unavailable_reason.c_str(); }
