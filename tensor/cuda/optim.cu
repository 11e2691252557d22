// optim.cu — CUDA kernels of the fused optimizer updates (CudaBackend::sgd_step, adam_step).
//
// One thread per element applying tensor/optim_math.h's per-element update — the very
// functions the CPU loop (tensor/cpu/optim.cpp) calls, with the same coefficients computed
// once per step on the host (sgd_coeffs/adam_coeffs) and the same loop-invariant choices
// turned into template flags. f32 and f64 params, as on the CPU; f16/bf16 params are an
// error naming the remedy (f32 master weights). The caller (nn/optim/) guarantees what
// backend.h promises: param, grad and state contiguous with one shape, dtype and device.
//
// Exactness: the arithmetic is the same sequence of IEEE operations, but the CPU build and
// nvcc each decide where to fuse a·b + c into an FMA, so results agree to rounding (≈ 1 ulp
// per step), not bitwise. Cost: memory-bound, one read of each operand and one write of
// each updated tensor (SGD 3–5, Adam 7 values of traffic per element).
// Not here: state allocation, hyper-parameter validation, skipping params without grads.
#include <type_traits>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/cuda_backend.h"
#include "tensor/optim_math.h"

namespace mox {

namespace {

template <typename F> void with_flag(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

template <typename T, bool kWd, bool kMomentum, bool kNesterov, bool kFirst>
__global__ void sgd_kernel(T* p, const T* g, T* buf, int64_t n, optim::SgdCoeffs<T> c) {
  MOX_GRID_STRIDE(i, n) optim::sgd_update_fixed<T, kWd, kMomentum, kNesterov, kFirst>(p[i], g[i], buf + (kMomentum ? i : 0), c);
}

template <typename T, bool kDecay, bool kWd>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, int64_t n, optim::AdamCoeffs<T> c) {
  MOX_GRID_STRIDE(i, n) optim::adam_update_fixed<T, kDecay, kWd>(p[i], g[i], m[i], v[i], c);
}

template <typename T>
void sgd_typed(const Tensor& param, const Tensor& grad, const Tensor* momentum_buf, const SgdHyper& h) {
  const optim::SgdCoeffs<T> c = optim::sgd_coeffs<T>(h);
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* buf = momentum_buf ? momentum_buf->data<T>() : nullptr;
  const int64_t n = param.numel();
  if (n == 0) return;
  with_flag(c.weight_decay != T(0), [&](auto wd) {
    with_flag(buf != nullptr, [&](auto mom) {
      with_flag(c.nesterov, [&](auto nest) {
        with_flag(c.first_step, [&](auto first) {
          sgd_kernel<T, decltype(wd)::value, decltype(mom)::value, decltype(nest)::value, decltype(first)::value>
              <<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(p, g, buf, n, c);
          CUDA_CHECK_LAUNCH();
        });
      });
    });
  });
}

template <typename T>
void adam_typed(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamHyper& h) {
  const optim::AdamCoeffs<T> c = optim::adam_coeffs<T>(h);
  const int64_t n = param.numel();
  if (n == 0) return;
  with_flag(c.decay != T(1), [&](auto decay) {
    with_flag(c.weight_decay != T(0), [&](auto wd) {
      adam_kernel<T, decltype(decay)::value, decltype(wd)::value><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
          param.data<T>(), grad.data<T>(), exp_avg.data<T>(), exp_avg_sq.data<T>(), n, c);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace

void CudaBackend::sgd_step(const Tensor& param, const Tensor& grad, const Tensor* momentum_buf, const SgdHyper& h) {
  switch (param.dtype()) {
    case DType::f32: return sgd_typed<float>(param, grad, momentum_buf, h);
    case DType::f64: return sgd_typed<double>(param, grad, momentum_buf, h);
    default:
      MOX_FAIL("sgd_step: param ", describe(param),
               " has a dtype the CUDA optimizer does not update; use f32 or f64 params "
               "(keep f32 master weights for f16/bf16 models)");
  }
}

void CudaBackend::adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                            const AdamHyper& h) {
  switch (param.dtype()) {
    case DType::f32: return adam_typed<float>(param, grad, exp_avg, exp_avg_sq, h);
    case DType::f64: return adam_typed<double>(param, grad, exp_avg, exp_avg_sq, h);
    default:
      MOX_FAIL("adam_step: param ", describe(param),
               " has a dtype the CUDA optimizer does not update; use f32 or f64 params "
               "(keep f32 master weights for f16/bf16 models)");
  }
}

}  // namespace mox
