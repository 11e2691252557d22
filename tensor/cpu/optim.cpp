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

// Below this many elements the OpenMP fork costs more than the update. SGD is a pure stream
// (threads pay only for large params); Adam's square root and two divisions per element make
// a second thread pay from ~32k elements (a 128×256 weight).
constexpr int64_t kSgdParallelMin = 1 << 18;
constexpr int64_t kAdamParallelMin = 1 << 15;

// Calls f(std::bool_constant<b>{}), turning a run-time flag into a template argument.
template <typename F> void with_flag(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

template <typename T>
void sgd_kernel(const Tensor& param, const Tensor& grad, const Tensor* momentum_buf,
                const SgdHyper& h) {
  const optim::SgdCoeffs<T> c = optim::sgd_coeffs<T>(h);
  T* __restrict p = param.data<T>();
  const T* __restrict g = grad.data<T>();
  T* __restrict buf = momentum_buf ? momentum_buf->data<T>() : nullptr;
  const int64_t n = param.numel();
  with_flag(c.weight_decay != T(0), [&](auto wd) {
    with_flag(buf != nullptr, [&](auto mom) {
      with_flag(c.nesterov, [&](auto nest) {
        with_flag(c.first_step, [&](auto first) {
#pragma omp parallel for schedule(static) if (n >= kSgdParallelMin)
          for (int64_t i = 0; i < n; ++i)
            optim::sgd_update_fixed<T, wd(), mom(), nest(), first()>(p[i], g[i], buf + (mom() ? i : 0), c);
        });
      });
    });
  });
}

template <typename T>
void adam_kernel(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                 const Tensor& exp_avg_sq, const AdamHyper& h) {
  const optim::AdamCoeffs<T> c = optim::adam_coeffs<T>(h);
  T* __restrict p = param.data<T>();
  const T* __restrict g = grad.data<T>();
  T* __restrict m = exp_avg.data<T>();
  T* __restrict v = exp_avg_sq.data<T>();
  const int64_t n = param.numel();
  with_flag(c.decay != T(1), [&](auto decay) {
    with_flag(c.weight_decay != T(0), [&](auto wd) {
#pragma omp parallel for schedule(static) if (n >= kAdamParallelMin)
      for (int64_t i = 0; i < n; ++i) optim::adam_update_fixed<T, decay(), wd()>(p[i], g[i], m[i], v[i], c);
    });
  });
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
