// quantized.cpp — per-channel int8 quantisation, the QuantizedLinear CPU kernels, and the
// Linear → QuantizedLinear pass (see quantized.h).
#include "nn/quantized.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <typeinfo>

#include "tensor/cpu/loops.h"
#include "tensor/ops.h"

namespace mox::nn {
namespace {

const int8_t* int8_data(const Tensor& q) { return reinterpret_cast<const int8_t*>(q.data<uint8_t>()); }

// dst (nb, K) = q[n0 : n0+nb] · scale[n0 : n0+nb], row by row.
void dequantize_rows(const int8_t* q, const float* scale, int64_t K, int64_t n0, int64_t nb, float* dst) {
#pragma omp parallel for if (nb * K >= cpu::kParallelGrain) schedule(static)
  for (int64_t r = 0; r < nb; ++r) {
    const int8_t* qr = q + (n0 + r) * K;
    const float s = scale[n0 + r];
    float* d = dst + r * K;
    for (int64_t k = 0; k < K; ++k) d[k] = float(qr[k]) * s;
  }
}

// y (M, N) = (x (M, K) · qᵀ) · diag(scale), straight from the int8 weights: each weight row
// is read once (from memory) and reused for every row of x. For small M (generation).
Tensor int8_matmul(const Tensor& x, const int8_t* q, const float* scale, int64_t N) {
  const int64_t M = x.size(0), K = x.size(1);
  Tensor y = empty({M, N});   // (M, N)
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
#pragma omp parallel for if (M * N * K >= cpu::kParallelGrain) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const int8_t* qn = q + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = xp + m * K;
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < K; ++k) acc += xm[k] * float(qn[k]);
      yp[m * N + n] = acc * scale[n];
    }
  }
  return y;
}

// y (M, N) = x (M, K) · (q·scale)ᵀ through BLAS, dequantising `rows` weight rows at a time
// into a scratch buffer of at most kScratchFloats elements.
Tensor dequant_matmul(const Tensor& x, const int8_t* q, const float* scale, int64_t N) {
  const int64_t M = x.size(0), K = x.size(1);
  const int64_t rows = std::clamp<int64_t>(QuantizedLinear::kScratchFloats / K, 1, N);
  Tensor scratch = empty({rows, K});   // (rows, K) f32
  Tensor y;                            // (M, N), needed only when there are several blocks
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t nb = std::min(rows, N - n0);
    dequantize_rows(q, scale, K, n0, nb, scratch.data<float>());
    Tensor yb = raw::matmul(x, raw::transpose(raw::narrow(scratch, 0, 0, nb), 0, 1));   // (M, nb)
    if (nb == N) return yb;
    if (!y.defined()) y = empty({M, N});
    raw::copy_(raw::narrow(y, 1, n0, nb), yb);
  }
  return y;
}

void check_quantized(const Tensor& q, const Tensor& scale, const char* who) {
  MOX_CHECK(q.defined() && q.dim() == 2 && q.dtype() == DType::u8 && q.size(0) > 0 && q.size(1) > 0, who,
            ": weight_q must be a non-empty (out, in) u8 tensor (int8 bits), got ",
            q.defined() ? describe(q) : std::string("an undefined tensor"));
  MOX_CHECK(scale.defined() && scale.dim() == 1 && scale.dtype() == DType::f32 && scale.size(0) == q.size(0), who,
            ": weight_scale must be (", q.size(0), ") f32 for weight_q ", describe(q), ", got ",
            scale.defined() ? describe(scale) : std::string("an undefined tensor"));
  MOX_CHECK(q.device().is_cpu() && scale.device().is_cpu(), who, ": int8 weights are CPU-only; weight_q is on ",
            q.device(), ", weight_scale on ", scale.device());
}

}  // namespace

QuantizedWeight quantize_per_channel(const Tensor& weight) {
  MOX_CHECK(weight.dim() == 2 && is_floating(weight.dtype()),
            "quantize_per_channel: weight must be a floating-point (out, in) matrix, got ", describe(weight));
  const Tensor w = raw::contiguous(raw::to_dtype(raw::to_device(weight, Device::cpu()), DType::f32));   // (N, K)
  const int64_t N = w.size(0), K = w.size(1);
  QuantizedWeight out{empty({N, K}, DType::u8), empty({N}, DType::f32)};
  const float* wp = w.data<float>();
  int8_t* qp = reinterpret_cast<int8_t*>(out.q.data<uint8_t>());
  float* sp = out.scale.data<float>();
  for (int64_t n = 0; n < N; ++n) {
    const float* row = wp + n * K;
    float max_abs = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      MOX_CHECK(std::isfinite(row[k]), "quantize_per_channel: weight ", describe(weight), " has a non-finite value ",
                row[k], " at row ", n, ", column ", k);
      max_abs = std::max(max_abs, std::fabs(row[k]));
    }
    float s = max_abs / 127.0f;
    if (s == 0.0f) s = 1.0f;   // all-zero row (or the scale underflowed): every q is 0
    sp[n] = s;
    for (int64_t k = 0; k < K; ++k) qp[n * K + k] = int8_t(std::nearbyint(row[k] / s));
  }
  return out;
}

Tensor dequantize_per_channel(const Tensor& q, const Tensor& scale) {
  check_quantized(q, scale, "dequantize_per_channel");
  const Tensor qc = raw::contiguous(q), sc = raw::contiguous(scale);
  Tensor w = empty(q.shape());   // (N, K) f32
  dequantize_rows(int8_data(qc), sc.data<float>(), q.size(1), 0, q.size(0), w.data<float>());
  return w;
}

// ---------------------------------------------------------------- QuantizedLinear

QuantizedLinear::QuantizedLinear(Tensor q, Tensor scale, Tensor b) {
  check_quantized(q, scale, "QuantizedLinear");
  out_features = q.size(0);
  in_features = q.size(1);
  weight_q = register_buffer("weight_q", raw::contiguous(q));
  weight_scale = register_buffer("weight_scale", raw::contiguous(scale));
  if (b.defined()) {
    MOX_CHECK(b.dim() == 1 && b.size(0) == out_features && b.dtype() == DType::f32 && b.device().is_cpu(),
              "QuantizedLinear: bias must be (", out_features, ") f32 on the CPU, got ", describe(b), " on ",
              b.device());
    bias = register_buffer("bias", raw::contiguous(b));
  }
}

std::shared_ptr<QuantizedLinear> QuantizedLinear::from_linear(const Linear& linear) {
  QuantizedWeight qw = quantize_per_channel(linear.weight);
  Tensor b;
  if (linear.bias.defined()) b = raw::clone(raw::to_dtype(raw::to_device(linear.bias, Device::cpu()), DType::f32));
  return std::make_shared<QuantizedLinear>(qw.q, qw.scale, b);
}

Tensor QuantizedLinear::forward(const Tensor& x) {
  MOX_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "QuantizedLinear: input ", describe(x),
            " does not end in in_features=", in_features);
  MOX_CHECK(x.dtype() == DType::f32 && weight_scale.dtype() == DType::f32 &&
                (!bias.defined() || bias.dtype() == DType::f32),
            "QuantizedLinear computes in f32: input ", describe(x), ", weight_scale ", describe(weight_scale),
            " (was the model converted with to(dtype)?)");
  MOX_CHECK(x.device().is_cpu() && weight_q.device().is_cpu(), "QuantizedLinear runs on the CPU only: input on ",
            x.device(), ", weights on ", weight_q.device());
  MOX_CHECK(!(autograd::grad_enabled() && x.requires_grad()), "QuantizedLinear is inference-only, but input ",
            describe(x), " requires grad; run the model under autograd::NoGradGuard");
  const Tensor x2 = raw::contiguous(raw::reshape(x, {-1, in_features}));   // (M, K)
  const Tensor s = raw::contiguous(weight_scale);
  const int8_t* q = int8_data(weight_q);
  Tensor y = x2.size(0) <= kDirectRows ? int8_matmul(x2, q, s.data<float>(), out_features)
                                       : dequant_matmul(x2, q, s.data<float>(), out_features);   // (M, N)
  if (bias.defined()) raw::add_(y, bias);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = out_features;
  return raw::view(y, out_shape);
}

std::string QuantizedLinear::repr() const {
  return str("QuantizedLinear(in=", in_features, ", out=", out_features, ", int8", bias.defined() ? "" : ", bias=false",
             ")");
}

// ---------------------------------------------------------------- quantize_linears

int64_t quantize_linears(Module& model, const QuantizeSkip& skip) {
  struct Swap {
    Module* parent;
    std::string name, path;
    const Module* linear;
    std::shared_ptr<Module> old;   // set once swapped
  };
  std::vector<Swap> swaps;
  for (const auto& [prefix, parent] : model.named_modules())
    for (const auto& [name, child] : parent->children()) {
      if (typeid(*child) != typeid(Linear)) continue;
      const std::string path = prefix.empty() ? name : prefix + "." + name;
      if (skip && skip(path, static_cast<const Linear&>(*child))) continue;
      swaps.push_back({parent, name, path, child.get(), nullptr});
    }
  // Quantise first (a non-finite weight throws here, before anything changes).
  std::map<const Module*, std::shared_ptr<Module>> quantized;   // Linear → its replacement
  for (const Swap& s : swaps)
    if (!quantized.count(s.linear))
      quantized[s.linear] = QuantizedLinear::from_linear(static_cast<const Linear&>(*s.linear));

  auto undo = [&] {
    for (auto it = swaps.rbegin(); it != swaps.rend(); ++it)
      if (it->old) it->parent->replace_module(it->name, it->old);
  };
  try {
    for (Swap& s : swaps) s.old = s.parent->replace_module(s.name, quantized[s.linear]);
  } catch (...) {
    undo();
    throw;
  }
  // Each swapped-out Linear must now be held only by our `old` handles (one per swap).
  for (const Swap& s : swaps) {
    const auto handles = std::count_if(swaps.begin(), swaps.end(), [&](const Swap& o) { return o.linear == s.linear; });
    if (s.old.use_count() == handles) continue;
    const std::string parent = s.parent->repr();
    undo();
    MOX_FAIL("quantize_linears: Linear '", s.path, "' is still referenced after being swapped out of ", parent,
             " (e.g. a std::shared_ptr<Linear> member of it, or a handle the caller keeps), so forward() would go on "
             "calling the float layer; nothing was changed. Override replace_module in ", parent,
             " to re-point that member, or leave it in float with quantize_linears(model, skip)");
  }
  return int64_t(quantized.size());
}

}  // namespace mox::nn
