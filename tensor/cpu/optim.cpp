// optim.cpp — CPU kernels of the fused optimizer updates (CpuBackend::sgd_step, adam_step).
//
// One OpenMP loop over contiguous f32/f64 tensors applying the per-element math of
// tensor/optim_math.h. The caller (nn/optim/) guarantees what backend.h promises: param,
// grad and state are contiguous with the same shape, dtype and device. Not here: state
// allocation, hyper-parameter validation, skipping params without gradients.
#include "tensor/cpu/cpu_backend.h"
#include "tensor/optim_math.h"

namespace mox {

namespace {

// Below this many elements the OpenMP fork costs more than the update.
constexpr int64_t kParallelMin = 1 << 15;

template <typename T>
void sgd_kernel(const Tensor& param, const Tensor& grad, const Tensor* momentum_buf,
                const SgdHyper& h) {
  const optim::SgdCoeffs<T> c = optim::sgd_coeffs<T>(h);
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* buf = momentum_buf ? momentum_buf->data<T>() : nullptr;
  const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) optim::sgd_update(p[i], g[i], buf ? buf + i : nullptr, c);
}

template <typename T>
void adam_kernel(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                 const Tensor& exp_avg_sq, const AdamHyper& h) {
  const optim::AdamCoeffs<T> c = optim::adam_coeffs<T>(h);
  T* p = param.data<T>();
  const T* g = grad.data<T>();
  T* m = exp_avg.data<T>();
  T* v = exp_avg_sq.data<T>();
  const int64_t n = param.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) optim::adam_update(p[i], g[i], m[i], v[i], c);
}

}  // namespace

void CpuBackend::sgd_step(const Tensor& param, const Tensor& grad, const Tensor* momentum_buf,
                          const SgdHyper& h) {
  switch (param.dtype()) {
    case DType::f32: return sgd_kernel<float>(param, grad, momentum_buf, h);
    case DType::f64: return sgd_kernel<double>(param, grad, momentum_buf, h);
    default:
      MOX_FAIL("sgd_step: param ", describe(param),
               " has a dtype the CPU optimizer does not update; use f32 or f64 params "
               "(keep f32 master weights for f16/bf16 models)");
  }
}

void CpuBackend::adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                           const Tensor& exp_avg_sq, const AdamHyper& h) {
  switch (param.dtype()) {
    case DType::f32: return adam_kernel<float>(param, grad, exp_avg, exp_avg_sq, h);
    case DType::f64: return adam_kernel<double>(param, grad, exp_avg, exp_avg_sq, h);
    default:
      MOX_FAIL("adam_step: param ", describe(param),
               " has a dtype the CPU optimizer does not update; use f32 or f64 params "
               "(keep f32 master weights for f16/bf16 models)");
  }
}

}  // namespace mox
