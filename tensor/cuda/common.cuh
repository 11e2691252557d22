// common.cuh — what every CUDA kernel file shares: error checks, the stream, launch sizes,
// strided indexing and dtype dispatch.
//
// CUDA_CHECK / CUBLAS_CHECK / CUDNN_CHECK throw mox::Error naming the call, the library's
// message, the file and the line (DESIGN "Errors": never abort); the last two live in
// libs.cuh with the cuBLAS/cuDNN handles, so only their users include those headers.
// Kernels run on cuda::stream(); host copies synchronise it. Tensors reach kernels as a View (shape and
// strides by value, rank ≤ 8) so any strided input works; outputs the front-end allocates
// are contiguous.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/tensor.h"

#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    const cudaError_t mox_e_ = (call);                                                     \
    if (mox_e_ != cudaSuccess)                                                             \
      ::mox::cuda::fail("CUDA", #call, cudaGetErrorString(mox_e_), __FILE__, __LINE__);   \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next call.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace mox::cuda {

[[noreturn]] void fail(const char* library, const char* call, const char* message, const char* file, int line);

// The stream every kernel of the backend runs on (the current device's; created on first use).
cudaStream_t stream();

constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n elements (capped; the loop covers the rest).
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

// Shape and strides (in elements) of a tensor, by value for kernels.
struct View {
  int ndim = 0;
  int64_t shape[8] = {};
  int64_t strides[8] = {};
};
View view_of(const Tensor& t);

// Element offset of the linear (row-major) index i in v.
__device__ __forceinline__ int64_t offset_of(const View& v, int64_t i) {
  int64_t off = 0;
  for (int d = v.ndim - 1; d >= 0; --d) {
    const int64_t s = v.shape[d];
    off += (i % s) * v.strides[d];
    i /= s;
  }
  return off;
}

// Compute type: 16-bit floats compute in float, everything else in itself (as the CPU).
template <typename T> struct acc { using type = T; };
template <> struct acc<::mox::half> { using type = float; };
template <> struct acc<::mox::bfloat16> { using type = float; };
template <typename T> using acc_t = typename acc<T>::type;

template <typename T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

// Device scratch memory from the stream-ordered pool, freed (stream-ordered) on scope exit.
struct Scratch {
  void* p = nullptr;
  explicit Scratch(size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMallocAsync(&p, bytes, stream()));
  }
  ~Scratch() {
    if (p) cudaFreeAsync(p, stream());
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename U> U* as() const { return static_cast<U*>(p); }
};

#define MOX_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

// Warp-per-row grid-stride loop: each warp of 32 lanes takes one row r at a time and strides
// by the grid's warps. Whole warps step together, so shuffles in the body stay convergent —
// provided blockDim.x is a multiple of 32. Launch with warp_row_blocks(rows, threads per block).
#define MOX_WARP_ROWS(r, rows)                                                       \
  for (int64_t r = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; r < (rows); \
       r += int64_t(gridDim.x) * (blockDim.x >> 5))
inline unsigned warp_row_blocks(int64_t rows, int threads = kThreads) { return blocks_for(rows * 32, threads); }

}  // namespace mox::cuda

// Calls `__VA_ARGS__` with `T` bound to the C++ type of `dtype` (all mox dtypes).
#define MOX_CUDA_DISPATCH_ALL(dtype, T, ...)                          \
  switch (dtype) {                                                    \
    case ::mox::DType::f32: { using T = float; __VA_ARGS__; break; }  \
    case ::mox::DType::f64: { using T = double; __VA_ARGS__; break; } \
    case ::mox::DType::f16: { using T = ::mox::half; __VA_ARGS__; break; }      \
    case ::mox::DType::bf16: { using T = ::mox::bfloat16; __VA_ARGS__; break; } \
    case ::mox::DType::i32: { using T = int32_t; __VA_ARGS__; break; } \
    case ::mox::DType::i64: { using T = int64_t; __VA_ARGS__; break; } \
    case ::mox::DType::u8: { using T = uint8_t; __VA_ARGS__; break; }  \
    case ::mox::DType::boolean: { using T = bool; __VA_ARGS__; break; } \
  }

// The floating dtypes only (f32, f64, f16, bf16); others are an error naming the op.
#define MOX_CUDA_DISPATCH_FLOAT(dtype, op, T, ...)                                      \
  switch (dtype) {                                                                      \
    case ::mox::DType::f32: { using T = float; __VA_ARGS__; break; }                    \
    case ::mox::DType::f64: { using T = double; __VA_ARGS__; break; }                   \
    case ::mox::DType::f16: { using T = ::mox::half; __VA_ARGS__; break; }              \
    case ::mox::DType::bf16: { using T = ::mox::bfloat16; __VA_ARGS__; break; }         \
    default: MOX_FAIL(op, ": CUDA kernel needs a floating dtype, got ", ::mox::dtype_name(dtype)); \
  }
