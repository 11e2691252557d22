// conv.cu — conv2d (+ backward) through cuDNN and max_pool2d (+ backward) as custom kernels,
// NCHW, contiguous (the front-end guarantees it); f32, f64, f16, bf16.
//
// Convolution: cuDNN's convolution API (cudnnConvolutionForward / BackwardData /
// BackwardFilter) with the algorithm chosen by cuDNN's heuristics (cudnnGet*Algorithm_v7),
// preferring deterministic algorithms so that a training step is repeatable, and cached per
// geometry; workspaces come from the stream-ordered pool. f32 runs with FMA math (no TF32
// unless MOX_ALLOW_TF32=1) so results match the CPU within 1e-3; f16/bf16 use tensor cores
// with f32 compute. Bias add and the bias gradient (a per-channel sum) are small kernels here.
// Max-pool: one thread per output, the CPU's selection rule exactly (ties keep the first
// element; NaN wins; the 2×2/2 fast path's first-NaN rule), writing the same flat h·W+w
// indices. Its backward walks each plane's outputs in order, one warp per plane: lanes that
// hit the same input are grouped with __match_any_sync and their leader adds their
// gradients in output order, so overlapping windows sum exactly as the CPU does
// (bit-identical, deterministic, no atomics).
// What it is not: grouped/dilated convolutions, NHWC, cuDNN's graph (frontend) API, avg-pool.
#include <algorithm>
#include <climits>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>

#include "tensor/cuda/cuda_backend.h"
#include "tensor/cuda/libs.cuh"

namespace mox::cuda {

cudnnHandle_t cudnn() {
  static cudnnHandle_t handle = [] {
    cudnnHandle_t created;
    CUDNN_CHECK(cudnnCreate(&created));
    CUDNN_CHECK(cudnnSetStream(created, stream()));
    return created;
  }();
  return handle;
}

}  // namespace mox::cuda

namespace mox {

namespace {

// ------------------------------------------------------------------------ kernels

// y(N, OC, P) += b(OC)
template <typename T>
__global__ void add_bias_kernel(T* y, const T* b, int64_t n, int64_t OC, int64_t P) {
  using A = cuda::acc_t<T>;
  MOX_GRID_STRIDE(i, n) y[i] = T(A(y[i]) + A(b[(i / P) % OC]));
}

// gb(oc) = Σ_{n, p} gy(n, oc, p); one block per channel.
template <typename T>
__global__ void bias_grad_kernel(const T* gy, T* gb, int64_t N, int64_t OC, int64_t P) {
  using A = cuda::acc_t<T>;
  for (int64_t oc = blockIdx.x; oc < OC; oc += gridDim.x) {
    A acc = A(0);
    for (int64_t j = threadIdx.x; j < N * P; j += blockDim.x) acc += A(gy[((j / P) * OC + oc) * P + j % P]);
    acc = cuda::block_sum(acc);
    if (threadIdx.x == 0) gb[oc] = T(acc);
  }
}

// One thread per output of the (planes, OH, OW) result: the CPU's rule (tensor/cpu/conv.cpp).
template <typename T>
__global__ void max_pool_kernel(const T* x, T* out, int64_t* indices, int64_t total, int64_t H, int64_t W,
                                int64_t OH, int64_t OW, Pool2dParams p, bool two_by_two) {
  using A = cuda::acc_t<T>;
  MOX_GRID_STRIDE(o, total) {
    const int64_t ow = o % OW, oh = (o / OW) % OH, pl = o / (OW * OH);
    const T* xp = x + pl * H * W;
    if (two_by_two) {   // kernel 2, stride 2, no padding: pairwise selects, first NaN wins
      const int64_t i0 = 2 * oh * W + 2 * ow;
      const A a = A(xp[i0]), b = A(xp[i0 + 1]), d = A(xp[i0 + W]), e = A(xp[i0 + W + 1]);
      const bool t1 = b > a, t2 = e > d;   // ties keep the earlier element
      const A m1 = t1 ? b : a, m2 = t2 ? e : d;
      const int64_t i1 = i0 + t1, i2 = i0 + W + t2;
      const bool t3 = m2 > m1;
      A best = t3 ? m2 : m1;
      int64_t best_i = t3 ? i2 : i1;
      if ((a != a) | (b != b) | (d != d) | (e != e)) {
        best_i = a != a ? i0 : b != b ? i0 + 1 : d != d ? i0 + W : i0 + W + 1;
        best = std::numeric_limits<A>::quiet_NaN();
      }
      out[o] = T(best);
      indices[o] = best_i;
      continue;
    }
    const int64_t h0 = max(oh * p.stride_h - p.pad_h, int64_t(0));
    const int64_t h1 = min(oh * p.stride_h - p.pad_h + p.kernel_h, H);
    const int64_t w0 = max(ow * p.stride_w - p.pad_w, int64_t(0));
    const int64_t w1 = min(ow * p.stride_w - p.pad_w + p.kernel_w, W);
    A best = A(xp[h0 * W + w0]);
    int64_t best_i = h0 * W + w0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) {
        const A v = A(xp[ih * W + iw]);
        const bool take = (v > best) | (v != v);   // a NaN wins; a later NaN takes the index
        best = take ? v : best;
        best_i = take ? ih * W + iw : best_i;
      }
    out[o] = T(best);
    indices[o] = best_i;
  }
}

// gx (zeroed) += gy at the saved indices; one warp per plane, outputs in order (see the top).
constexpr int kPoolWarps = 8;
template <typename T>
__global__ void max_pool_backward_kernel(const T* gy, const int64_t* indices, T* gx, int64_t planes, int64_t HW,
                                         int64_t OHW) {
  using A = cuda::acc_t<T>;
  __shared__ A vals[kPoolWarps][32];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  for (int64_t pl = int64_t(blockIdx.x) * kPoolWarps + wid; pl < planes; pl += int64_t(gridDim.x) * kPoolWarps) {
    const T* g = gy + pl * OHW;
    const int64_t* ip = indices + pl * OHW;
    T* gp = gx + pl * HW;
    for (int64_t base = 0; base < OHW; base += 32) {
      const int64_t o = base + lane;
      const bool valid = o < OHW;
      const int64_t key = valid ? ip[o] : -1 - lane;   // idle lanes never match anyone
      vals[wid][lane] = valid ? A(g[o]) : A(0);
      const unsigned group = __match_any_sync(0xffffffffu, key);
      __syncwarp();
      if (valid && __ffs(group) - 1 == lane) {   // the group's first lane adds in lane (= output) order
        T acc = gp[key];
        for (unsigned m = group; m; m &= m - 1) acc = T(A(acc) + vals[wid][__ffs(m) - 1]);
        gp[key] = acc;
      }
      __syncwarp();
    }
  }
}

// ------------------------------------------------------------------------ cuDNN plumbing

struct ConvGeometry {
  int64_t N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw;
};

ConvGeometry geometry(const Tensor& x, const Tensor& w, const Conv2dParams& p) {
  ConvGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), w.size(0), w.size(2), w.size(3), 0, 0,
                 p.stride_h, p.stride_w, p.pad_h, p.pad_w};
  g.OH = (g.H + 2 * g.ph - g.KH) / g.sh + 1;
  g.OW = (g.W + 2 * g.pw - g.KW) / g.sw + 1;
  return g;
}

cudnnDataType_t cudnn_type(DType t) {
  switch (t) {
    case DType::f32: return CUDNN_DATA_FLOAT;
    case DType::f64: return CUDNN_DATA_DOUBLE;
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: MOX_FAIL("conv2d on CUDA needs a floating dtype (f32, f64, f16, bf16), got ", t);
  }
}

// The math type the descriptor asks for; f32 without TF32 must keep it (FMA only).
cudnnMathType_t wanted_math(DType t) {
  if (t == DType::f16 || t == DType::bf16) return CUDNN_TENSOR_OP_MATH;
  if (t == DType::f32 && !cuda::allow_tf32()) return CUDNN_FMA_MATH;
  return CUDNN_DEFAULT_MATH;
}
bool strict_math(DType t) { return t == DType::f32 && !cuda::allow_tf32(); }

int dim(int64_t v, const char* what, const ConvGeometry& g) {
  MOX_CHECK(v <= INT_MAX, "conv2d on CUDA: ", what, "=", v, " exceeds cuDNN's 32-bit limit (input [", g.N, ", ",
            g.C, ", ", g.H, ", ", g.W, "]); split the batch");
  return int(v);
}

// Descriptors of one convolution, destroyed with it.
struct ConvDescs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ConvDescs(const ConvGeometry& g, DType dt) {
    const cudnnDataType_t type = cudnn_type(dt);
    for (int64_t numel : {g.N * g.C * g.H * g.W, g.N * g.OC * g.OH * g.OW, g.OC * g.C * g.KH * g.KW})
      dim(numel, "tensor size", g);
    // Every size is checked before the first descriptor exists, and a cuDNN failure after it
    // destroys what was made: a throw from a constructor skips the destructor.
    const int N = dim(g.N, "N", g), C = dim(g.C, "C", g), H = dim(g.H, "H", g), W = dim(g.W, "W", g);
    const int OC = dim(g.OC, "OC", g), OH = dim(g.OH, "OH", g), OW = dim(g.OW, "OW", g);
    const int KH = dim(g.KH, "KH", g), KW = dim(g.KW, "KW", g);
    const int ph = dim(g.ph, "pad_h", g), pw = dim(g.pw, "pad_w", g), sh = dim(g.sh, "stride_h", g),
              sw = dim(g.sw, "stride_w", g);
    try {
      CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
      CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
      CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
      CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
      CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, type, N, C, H, W));
      CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, type, N, OC, OH, OW));
      CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, type, CUDNN_TENSOR_NCHW, OC, C, KH, KW));
      CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, ph, pw, sh, sw, 1, 1, CUDNN_CROSS_CORRELATION,
                                                  dt == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT));
      CUDNN_CHECK(cudnnSetConvolutionMathType(conv, wanted_math(dt)));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~ConvDescs() { destroy(); }
  void destroy() {   // errors on teardown are ignored: nothing useful can be done with them
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
    conv = nullptr, w = nullptr, y = nullptr, x = nullptr;
  }
  ConvDescs(const ConvDescs&) = delete;
  ConvDescs& operator=(const ConvDescs&) = delete;
};

enum class Pass { forward, backward_data, backward_filter };
const char* pass_name(Pass p) {
  return p == Pass::forward ? "forward" : p == Pass::backward_data ? "backward data" : "backward filter";
}

struct Choice {
  int algo;
  cudnnMathType_t math;
  size_t workspace;
};

using CacheKey = std::tuple<int, int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, int64_t, int64_t>;
std::mutex g_cache_mutex;
std::map<CacheKey, Choice> g_cache;

// Workspaces above this are not considered (some FFT algorithms ask for gigabytes).
constexpr size_t kMaxWorkspace = size_t(1) << 30;

// The workspace `algo` needs under d's current math type; false when cuDNN cannot run that
// combination (the candidate is then skipped).
bool workspace_size(Pass pass, const ConvDescs& d, int algo, size_t* bytes) {
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  switch (pass) {
    case Pass::forward:
      st = cudnnGetConvolutionForwardWorkspaceSize(cuda::cudnn(), d.x, d.w, d.conv, d.y,
                                                   cudnnConvolutionFwdAlgo_t(algo), bytes);
      break;
    case Pass::backward_data:
      st = cudnnGetConvolutionBackwardDataWorkspaceSize(cuda::cudnn(), d.w, d.y, d.conv, d.x,
                                                        cudnnConvolutionBwdDataAlgo_t(algo), bytes);
      break;
    case Pass::backward_filter:
      st = cudnnGetConvolutionBackwardFilterWorkspaceSize(cuda::cudnn(), d.x, d.y, d.conv, d.w,
                                                          cudnnConvolutionBwdFilterAlgo_t(algo), bytes);
      break;
  }
  return st == CUDNN_STATUS_SUCCESS;
}

// From cuDNN's ranked heuristics: the first usable deterministic algorithm whose workspace
// fits, else the first usable one (usable: cuDNN reports success for it and can size its
// workspace under the math type it would run with). f32 without TF32 keeps the descriptor on FMA math;
// otherwise the descriptor takes the choice's math type (cuDNN ranks algorithm and math
// together).
template <typename Perf>
Choice pick(Pass pass, const ConvDescs& d, DType dt, const Perf* perf, int count, const ConvGeometry& g) {
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < count; ++i) {
      const Perf& r = perf[i];
      if (r.status != CUDNN_STATUS_SUCCESS) continue;
      if (round == 0 && r.determinism != CUDNN_DETERMINISTIC) continue;
      const cudnnMathType_t math = strict_math(dt) ? wanted_math(dt) : r.mathType;
      CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, math));
      size_t bytes = 0;
      if (!workspace_size(pass, d, int(r.algo), &bytes) || bytes > kMaxWorkspace) continue;
      return {int(r.algo), math, bytes};
    }
  MOX_FAIL("conv2d ", pass_name(pass), " on CUDA: cuDNN offers no algorithm for input [", g.N, ", ", g.C, ", ", g.H,
           ", ", g.W, "] ", dt, ", weight [", g.OC, ", ", g.C, ", ", g.KH, ", ", g.KW, "], stride ", g.sh, "x", g.sw,
           ", padding ", g.ph, "x", g.pw, " within a ", kMaxWorkspace >> 20, " MiB workspace",
           (strict_math(dt) ? " without TF32 (MOX_ALLOW_TF32=1 widens the choice)" : ""));
}

// The algorithm for this pass and geometry (cached), with d's math type set to match it.
Choice choose(Pass pass, const ConvDescs& d, DType dt, const ConvGeometry& g) {
  const CacheKey key{int(pass), int(dt), cuda::allow_tf32(), g.N, g.C, g.H, g.W, g.OC, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw};
  {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    auto it = g_cache.find(key);
    if (it != g_cache.end()) {
      CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, it->second.math));
      return it->second;
    }
  }
  // The heuristics answer for the descriptor's math type, which the previous pass on these
  // descriptors may have changed: ask with the one this dtype wants, whatever ran before.
  CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, wanted_math(dt)));
  Choice c{};
  int returned = 0;
  switch (pass) {
    case Pass::forward: {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cuda::cudnn(), d.x, d.w, d.conv, d.y,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf));
      c = pick(pass, d, dt, perf, returned, g);
      break;
    }
    case Pass::backward_data: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(cuda::cudnn(), d.w, d.y, d.conv, d.x,
                                                              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf));
      c = pick(pass, d, dt, perf, returned, g);
      break;
    }
    case Pass::backward_filter: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          cuda::cudnn(), d.x, d.y, d.conv, d.w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf));
      c = pick(pass, d, dt, perf, returned, g);
      break;
    }
  }
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  g_cache.emplace(key, c);
  return c;
}

// alpha = 1 and beta = 0 in the type cuDNN wants for the data type (double for f64).
struct Scale {
  float one_f = 1.0f, zero_f = 0.0f;
  double one_d = 1.0, zero_d = 0.0;
  bool dbl;
  explicit Scale(DType dt) : dbl(dt == DType::f64) {}
  const void* one() const { return dbl ? static_cast<const void*>(&one_d) : &one_f; }
  const void* zero() const { return dbl ? static_cast<const void*>(&zero_d) : &zero_f; }
};

// Scratch bytes on the device, freed (stream-ordered) when the returned tensor goes.
Tensor workspace(size_t bytes, Device device) {
  return empty({int64_t(bytes)}, DType::u8, device);
}

void zero(const Tensor& t) {
  if (t.numel() > 0) CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0, t.nbytes(), cuda::stream()));
}

}  // namespace

// ------------------------------------------------------------------------ launchers

void CudaBackend::conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p,
                         const Tensor& out) {
  if (out.numel() == 0) return;
  const ConvGeometry g = geometry(x, w, p);
  const DType dt = x.dtype();
  if (g.C == 0) {   // an empty sum over input channels
    zero(out);
  } else {
    ConvDescs d(g, dt);
    const Choice c = choose(Pass::forward, d, dt, g);
    Tensor ws = workspace(c.workspace, x.device());
    const Scale s(dt);
    CUDNN_CHECK(cudnnConvolutionForward(cuda::cudnn(), s.one(), d.x, x.raw_data(), d.w, w.raw_data(), d.conv,
                                        cudnnConvolutionFwdAlgo_t(c.algo), c.workspace ? ws.raw_data() : nullptr,
                                        c.workspace, s.zero(), d.y, out.raw_data()));
  }
  if (bias) {
    MOX_CUDA_DISPATCH_FLOAT(dt, "conv2d", T, {
      const int64_t n = out.numel();
      add_bias_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
          static_cast<T*>(out.raw_data()), static_cast<const T*>(bias->raw_data()), n, g.OC, g.OH * g.OW);
      CUDA_CHECK_LAUNCH();
    });
  }
}

void CudaBackend::conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Conv2dParams& p,
                                  const Tensor* gx, const Tensor* gw, const Tensor* gb) {
  const ConvGeometry g = geometry(x, w, p);
  const DType dt = x.dtype();
  if (gb && g.OC > 0) {
    MOX_CUDA_DISPATCH_FLOAT(dt, "conv2d backward", T, {
      const unsigned blocks = unsigned(std::min<int64_t>(g.OC, 65535));
      bias_grad_kernel<T><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(
          static_cast<const T*>(gy.raw_data()), static_cast<T*>(gb->raw_data()), g.N, g.OC, g.OH * g.OW);
      CUDA_CHECK_LAUNCH();
    });
  }
  if (!gx && !gw) return;
  if (x.numel() == 0 || w.numel() == 0 || gy.numel() == 0) {   // nothing flows: zero gradients
    if (gx) zero(*gx);
    if (gw) zero(*gw);
    return;
  }
  ConvDescs d(g, dt);
  const Scale s(dt);
  if (gx) {
    const Choice c = choose(Pass::backward_data, d, dt, g);
    Tensor ws = workspace(c.workspace, x.device());
    CUDNN_CHECK(cudnnConvolutionBackwardData(cuda::cudnn(), s.one(), d.w, w.raw_data(), d.y, gy.raw_data(), d.conv,
                                             cudnnConvolutionBwdDataAlgo_t(c.algo),
                                             c.workspace ? ws.raw_data() : nullptr, c.workspace, s.zero(), d.x,
                                             gx->raw_data()));
  }
  if (gw) {
    const Choice c = choose(Pass::backward_filter, d, dt, g);
    Tensor ws = workspace(c.workspace, x.device());
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(cuda::cudnn(), s.one(), d.x, x.raw_data(), d.y, gy.raw_data(),
                                               d.conv, cudnnConvolutionBwdFilterAlgo_t(c.algo),
                                               c.workspace ? ws.raw_data() : nullptr, c.workspace, s.zero(), d.w,
                                               gw->raw_data()));
  }
}

void CudaBackend::max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out, const Tensor& indices) {
  const int64_t total = out.numel();
  if (total == 0) return;
  const int64_t H = x.size(2), W = x.size(3), OH = out.size(2), OW = out.size(3);
  const bool two_by_two = p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
                          p.pad_w == 0;
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), "max_pool2d", T, {
    max_pool_kernel<T><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::stream()>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()),
        static_cast<int64_t*>(indices.raw_data()), total, H, W, OH, OW, p, two_by_two);
    CUDA_CHECK_LAUNCH();
  });
}

void CudaBackend::max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) {
  zero(gx);
  const int64_t planes = gx.size(0) * gx.size(1), HW = gx.size(2) * gx.size(3);
  const int64_t OHW = gy.size(2) * gy.size(3);
  if (planes == 0 || OHW == 0 || HW == 0) return;
  MOX_CUDA_DISPATCH_FLOAT(gx.dtype(), "max_pool2d backward", T, {
    const unsigned blocks = unsigned(std::min<int64_t>((planes + kPoolWarps - 1) / kPoolWarps, 65535 * 8));
    max_pool_backward_kernel<T><<<blocks, 32 * kPoolWarps, 0, cuda::stream()>>>(
        static_cast<const T*>(gy.raw_data()), static_cast<const int64_t*>(indices.raw_data()),
        static_cast<T*>(gx.raw_data()), planes, HW, OHW);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace mox
