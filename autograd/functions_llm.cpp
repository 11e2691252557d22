// functions_llm.cpp — differentiable embedding, layer_norm, rms_norm, bias_gelu,
// scaled_dot_product_attention and apply_rotary: the layers of a GPT / Llama-style model.
//
// Each is one graph node: the front-end checks shapes and dtypes, then calls the fused
// forward and backward kernels of the backend table (CPU: tensor/cpu/llm.cpp; 16-bit inputs
// run there on f32 copies, widen_on_cpu in autograd/node.h). Attention-
// layout results and gradients (B, H, T, D) are views of (B, T, H, D) memory, as PyTorch's
// flash attention returns them: merging heads, and the gradient of a head view of a fused
// qkv projection, then need no copy. Attention runs one of two kernels (set_attention_kernel):
// materialised — softmax of the (B, H, T, Tk) scores, kept for backward — or fused
// (flash-style: row log-sum-exps kept, probabilities recomputed in backward); both draw the
// same dropout mask from the same generator counters. Not here: the modules (nn/embedding.h, nn/norm.h,
// nn/attention.h) and the KV cache (nn/attention.h).
#include <atomic>
#include <cmath>

#include "autograd/functions.h"

namespace mox {

using autograd::needs_grad;
using autograd::record;
using Grads = std::vector<Tensor>;

namespace {
// "[1, 2]": the coordinates of flat row-major position `flat` in `shape`.
std::string coords_of(const Shape& shape, int64_t flat) {
  Shape c = shape;
  for (int d = shape.size() - 1; d >= 0; --d) {
    c[d] = flat % shape[d];
    flat /= shape[d];
  }
  return str(c);
}

// An uninitialised (B, H, T, D) tensor stored as (B, T, H, D).
Tensor empty_heads(const Shape& bhtd, DType dtype, Device device) {
  return raw::transpose(empty({bhtd[0], bhtd[2], bhtd[1], bhtd[3]}, dtype, device), 1, 2);
}

// t when the kernels can read it in place (unit stride on D, rows that do not overlap),
// else a contiguous copy.
Tensor heads_ready(const Tensor& t) {
  const bool readable = t.stride(3) == 1 && (t.size(2) == 1 || t.stride(2) >= t.size(3));
  return readable ? t : raw::contiguous(t);
}

void check_like(const char* op, const char* what, const Tensor& t, const Tensor& x) {
  MOX_CHECK(t.dtype() == x.dtype() && t.device() == x.device(), op, ": ", what, " ", describe(t), " on ",
            t.device(), " must match the input ", describe(x), " on ", x.device(), " in dtype and device");
}
}  // namespace

// ------------------------------------------------------------------------ embedding

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  MOX_CHECK(weight.dim() == 2, "embedding: weight must be (num_embeddings, dim), got ", describe(weight));
  MOX_CHECK(ids.dtype() == DType::i64, "embedding: ids must be i64 token ids, got ", describe(ids));
  MOX_CHECK(ids.device() == weight.device(), "embedding: ids on ", ids.device(), " and weight on ",
            weight.device(), " must be on the same device");
  const int64_t V = weight.size(0), C = weight.size(1), n = ids.numel();
  Tensor flat = raw::contiguous(raw::reshape(ids, {n}));   // (n)
  const std::vector<int64_t> values = flat.to_vector<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = values[size_t(i)];
    MOX_CHECK(id >= 0 && id < V, "embedding: id ", id, " at position ", coords_of(ids.shape(), i),
              " (flat index ", i, ") of ids ", ids.shape(), " is out of range for a vocabulary of ", V,
              " (expected 0 ≤ id < ", V, ")");
  }
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = empty({n, C}, weight.dtype(), weight.device());   // (n, C)
  backend(weight.device()).index_select(raw::contiguous(weight), 0, flat, out);
  out = raw::view(out, out_shape);                                 // (..., C)
  if (!needs_grad(weight)) return out;
  return record("embedding", out, {&weight}, [flat, V, C](const Tensor& g) {
    Tensor gw = zeros({V, C}, g.dtype(), g.device());
    backend(g.device()).index_add(gw, 0, flat, raw::contiguous(raw::reshape(g, {flat.numel(), C})));
    return Grads{gw};
  });
}

// ------------------------------------------------------------------------ LayerNorm / RMSNorm

namespace {
// layer_norm (center: subtract the mean) and rms_norm (no mean) share kernels.
Tensor norm_fn(const char* op, const Tensor& x, const Tensor& w, const Tensor& b, double eps, bool center) {
  MOX_CHECK(is_floating(x.dtype()), op, " needs a floating-point input, got ", describe(x));
  MOX_CHECK(x.dim() >= 1 && x.size(-1) > 0, op, ": input ", describe(x),
            " needs a non-empty last dim (the features)");
  MOX_CHECK(eps >= 0, op, ": eps=", eps, " must be non-negative");
  if (autograd::widen_on_cpu({&x, &w, &b}))
    return norm_fn(op, x.to(DType::f32), autograd::widened(w), autograd::widened(b), eps, center).to(x.dtype());
  const int64_t C = x.size(-1), rows = x.shape().last_dim_rows();
  for (const Tensor* p : {&w, &b}) {
    if (!p->defined()) continue;
    const char* what = p == &w ? "weight" : "bias";
    MOX_CHECK(p->dim() == 1 && p->size(0) == C, op, ": ", what, " ", describe(*p), " must have shape [", C,
              "] for input ", describe(x));
    check_like(op, what, *p, x);
  }
  Tensor xc = raw::contiguous(x);                                        // (rows, C) in memory
  Tensor wc = w.defined() ? raw::contiguous(w) : Tensor();
  Tensor bc = b.defined() ? raw::contiguous(b) : Tensor();
  const DType stats = x.dtype() == DType::f64 ? DType::f64 : DType::f32;    // compute type: f32 for 16-bit x
  Tensor mean = center ? empty({rows}, stats, x.device()) : Tensor();       // (rows)
  Tensor rstd = empty({rows}, stats, x.device());                           // (rows)
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  backend(x.device()).norm(xc, wc.defined() ? &wc : nullptr, bc.defined() ? &bc : nullptr, eps,
                           center ? &mean : nullptr, rstd, y);
  if (!needs_grad({&x, &w, &b})) return y;
  const bool need_x = x.requires_grad(), need_w = w.defined() && w.requires_grad();
  const bool need_b = b.defined() && b.requires_grad();
  return record(op, y, {&x, &w, &b}, [xc, wc, mean, rstd, need_x, need_w, need_b](const Tensor& g) {
    Tensor gx = need_x ? empty_like(xc) : Tensor();
    Tensor gw = need_w ? empty_like(wc) : Tensor();
    Tensor gb = need_b ? empty({xc.size(-1)}, xc.dtype(), xc.device()) : Tensor();
    backend(xc.device()).norm_backward(xc, wc.defined() ? &wc : nullptr, mean.defined() ? &mean : nullptr,
                                       rstd, raw::contiguous(g), need_x ? &gx : nullptr,
                                       need_w ? &gw : nullptr, need_b ? &gb : nullptr);
    return Grads{gx, gw, gb};
  });
}
}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return norm_fn("layer_norm", x, weight, bias, eps, /*center=*/true);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return norm_fn("rms_norm", x, weight, Tensor(), eps, /*center=*/false);
}

// ------------------------------------------------------------------------ bias + GELU

Tensor bias_gelu(const Tensor& x, const Tensor& bias) {
  MOX_CHECK(is_floating(x.dtype()) && x.dim() >= 1, "bias_gelu needs a floating-point input with at least one dim, got ",
            describe(x));
  if (autograd::widen_on_cpu({&x, &bias})) return bias_gelu(x.to(DType::f32), autograd::widened(bias)).to(x.dtype());
  const int64_t C = x.size(-1);
  if (bias.defined()) {
    MOX_CHECK(bias.dim() == 1 && bias.size(0) == C, "bias_gelu: bias ", describe(bias), " must have shape [", C,
              "] for input ", describe(x));
    check_like("bias_gelu", "bias", bias, x);
  }
  Tensor xc = raw::contiguous(x);
  Tensor bc = bias.defined() ? raw::contiguous(bias) : Tensor();
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  backend(x.device()).bias_gelu(xc, bc.defined() ? &bc : nullptr, y);
  if (!needs_grad({&x, &bias})) return y;
  const bool need_b = bias.defined() && bias.requires_grad();
  return record("bias_gelu", y, {&x, &bias}, [xc, bc, need_b](const Tensor& g) {
    Tensor gx = empty_like(xc);
    Tensor gb = need_b ? empty({xc.size(-1)}, xc.dtype(), xc.device()) : Tensor();
    backend(xc.device()).bias_gelu_backward(xc, bc.defined() ? &bc : nullptr, raw::contiguous(g), gx,
                                            need_b ? &gb : nullptr);
    return Grads{gx, gb};
  });
}

// ------------------------------------------------------------------------ attention

namespace {
std::atomic<AttentionKernel> g_attention_kernel{AttentionKernel::automatic};

// The forward's result and what its backward needs: the probabilities (and dropout
// multipliers) on the materialised path; the row log-sum-exps and the dropout draw on the
// fused one.
struct AttentionForward {
  Tensor out;     // (B, H, T, D), a view of (B, T, H, D) memory
  bool fused = false;
  bool causal = false;
  Tensor probs;   // materialised: (B, H, T, Tk), kept for backward (undefined when not needed)
  Tensor keep;    // materialised: (B, H, T, Tk) dropout multipliers, or undefined
  Tensor lse;     // fused: (B, H, T) in the compute type
  AttentionDropout dropout;   // fused: the draw the kernels repeat in backward
};

bool use_fused(const Tensor& q, const Tensor& k) {
  switch (g_attention_kernel.load()) {
    case AttentionKernel::fused: return true;
    case AttentionKernel::materialized: return false;
    case AttentionKernel::automatic: break;
  }
  return q.device().is_cuda() ? q.size(3) <= kCudaFusedAttentionMaxHeadDim : k.size(2) >= kCpuFusedAttentionMinKeys;
}

// 1/(1 − p) as the dtype holds it: the multiplier dropout() (and the materialised mask) applies.
double dropout_scale(DType dtype, double p) {
  const double s = 1.0 / (1.0 - p);
  switch (dtype) {
    case DType::f64: return s;
    case DType::f16: return double(float(half(float(s))));
    case DType::bf16: return double(float(bfloat16(float(s))));
    default: return double(float(s));
  }
}

// The forward kernel on checked, readable q (B, H, T, D), k and v (B, H, Tk, D).
AttentionForward attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                                   double dropout_p, Generator* gen, bool for_backward) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Tk = k.size(2);
  AttentionForward f;
  f.fused = use_fused(q, k);
  f.causal = causal;
  f.out = empty_heads(q.shape(), q.dtype(), q.device());
  if (f.fused) {   // the mask's counters are reserved as the materialised path draws them
    if (dropout_p > 0) {
      Generator& g = gen ? *gen : default_generator();
      f.dropout = {dropout_p, dropout_scale(q.dtype(), dropout_p), g.seed(), g.advance(uint64_t(B * H * T * Tk))};
    }
    f.lse = empty({B, H, T}, q.dtype() == DType::f64 ? DType::f64 : DType::f32, q.device());
    backend(q.device()).attention_fused(q, k, v, causal, scale, f.dropout, f.out, f.lse);
    return f;
  }
  if (dropout_p > 0) {   // multipliers drawn as dropout() draws them
    Tensor u = raw::uniform({B, H, T, Tk}, 0.0, 1.0, q.dtype(), q.device(), gen);
    Tensor kept = raw::to_dtype(raw::binary_scalar(BinaryOp::ge, u, dropout_p), q.dtype());
    f.keep = raw::binary_scalar(BinaryOp::mul, kept, 1.0 / (1.0 - dropout_p));
  }
  if (for_backward) f.probs = empty({B, H, T, Tk}, q.dtype(), q.device());
  backend(q.device()).attention(q, k, v, causal, scale, f.keep.defined() ? &f.keep : nullptr,
                                for_backward ? &f.probs : nullptr, f.out);
  return f;
}

// Gradients of f's attention, written into gq, gk, gv (any head views with unit stride on D).
void attention_backward(const AttentionForward& f, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& gout, double scale, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  if (f.fused)
    backend(q.device()).attention_fused_backward(q, k, v, f.out, f.lse, gout, f.causal, scale, f.dropout, gq, gk, gv);
  else
    backend(q.device()).attention_backward(q, k, v, f.probs, f.keep.defined() ? &f.keep : nullptr, gout, scale, gq,
                                           gk, gv);
}

// What a backward closure keeps of f: its output without the graph (the closure is owned by
// the output's own node, so keeping the output itself would make a cycle).
AttentionForward for_closure(AttentionForward f) {
  f.out = f.out.detach();
  return f;
}
}  // namespace

void set_attention_kernel(AttentionKernel kernel) { g_attention_kernel = kernel; }
AttentionKernel attention_kernel() { return g_attention_kernel; }

AttentionKernel parse_attention_kernel(const std::string& name) {
  if (name == "auto") return AttentionKernel::automatic;
  if (name == "fused") return AttentionKernel::fused;
  if (name == "materialized") return AttentionKernel::materialized;
  MOX_FAIL("attention kernel '", name, "' is not one of auto, fused, materialized");
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    std::optional<double> scale, double dropout_p, Generator* gen) {
  const char* op = "scaled_dot_product_attention";
  MOX_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": q, k, v must be (B, H, T, D), got ",
            describe(q), ", ", describe(k), ", ", describe(v));
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), Tk = k.size(2);
  MOX_CHECK(k.shape() == Shape({B, H, Tk, D}) && v.shape() == k.shape(), op, ": k ", describe(k), " and v ",
            describe(v), " must both be (B, H, Tk, D) with B, H, D of q ", describe(q));
  MOX_CHECK(q.numel() > 0 && Tk > 0, op, ": q ", describe(q), " and k ", describe(k),
            " must have positive extents");
  MOX_CHECK(is_floating(q.dtype()), op, " needs floating-point q, k, v, got ", describe(q));
  check_like(op, "k", k, q);
  check_like(op, "v", v, q);
  MOX_CHECK(!causal || Tk >= T, op, ": causal attention of ", T, " queries needs at least as many keys, got Tk=",
            Tk, " (query i sees keys j ≤ i + Tk − T)");
  MOX_CHECK(dropout_p >= 0 && dropout_p < 1, op, ": dropout_p=", dropout_p, " must be in [0, 1)");
  if (autograd::widen_on_cpu({&q, &k, &v}))
    return scaled_dot_product_attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), causal, scale,
                                        dropout_p, gen)
        .to(q.dtype());
  const double s = scale ? *scale : 1.0 / std::sqrt(double(D));
  Tensor qc = heads_ready(q), kc = heads_ready(k), vc = heads_ready(v);
  const bool grad = needs_grad({&q, &k, &v});
  const AttentionForward f = attention_forward(qc, kc, vc, causal, s, dropout_p, gen, grad);
  if (!grad) return f.out;
  return record(op, f.out, {&q, &k, &v}, [qc, kc, vc, f = for_closure(f), s](const Tensor& g) {
    Tensor gq = empty_heads(qc.shape(), qc.dtype(), qc.device());
    Tensor gk = empty_heads(kc.shape(), kc.dtype(), kc.device());
    Tensor gv = empty_heads(vc.shape(), vc.dtype(), vc.device());
    attention_backward(f, qc, kc, vc, heads_ready(g), s, gq, gk, gv);
    return Grads{gq, gk, gv};
  });
}

Tensor causal_self_attention_qkv(const Tensor& qkv, int64_t n_head, std::optional<double> scale, double dropout_p,
                                 Generator* gen) {
  const char* op = "causal_self_attention_qkv";
  MOX_CHECK(qkv.dim() == 3 && n_head > 0 && qkv.size(2) % (3 * n_head) == 0 && qkv.numel() > 0, op,
            ": qkv must be a non-empty (B, T, 3·C) with C divisible by n_head=", n_head, ", got ", describe(qkv));
  MOX_CHECK(is_floating(qkv.dtype()), op, " needs a floating-point qkv, got ", describe(qkv));
  MOX_CHECK(dropout_p >= 0 && dropout_p < 1, op, ": dropout_p=", dropout_p, " must be in [0, 1)");
  if (autograd::widen_on_cpu({&qkv}))
    return causal_self_attention_qkv(qkv.to(DType::f32), n_head, scale, dropout_p, gen).to(qkv.dtype());
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, H = n_head, D = C / H;
  // Head i of packed (B, T, 3C) memory as a (B, H, T, D) view: unit stride on D, readable in place.
  auto heads = [=](const Tensor& packed, int64_t i) {
    return raw::transpose(raw::view(raw::narrow(packed, 2, i * C, C), {B, T, H, D}), 1, 2);
  };
  const Tensor packed = raw::contiguous(qkv);
  const Tensor q = heads(packed, 0), k = heads(packed, 1), v = heads(packed, 2);
  const double s = scale ? *scale : 1.0 / std::sqrt(double(D));
  const bool grad = needs_grad(qkv);
  const AttentionForward f = attention_forward(q, k, v, /*causal=*/true, s, dropout_p, gen, grad);
  if (!grad) return f.out;
  return record(op, f.out, {&qkv}, [q, k, v, f = for_closure(f), s, heads, shape = qkv.shape()](const Tensor& g) {
    // The three gradients are written straight into their thirds of one (B, T, 3C) buffer.
    Tensor gqkv = empty(shape, q.dtype(), q.device());
    attention_backward(f, q, k, v, heads_ready(g), s, heads(gqkv, 0), heads(gqkv, 1), heads(gqkv, 2));
    return Grads{gqkv};
  });
}

// ------------------------------------------------------------------------ rotary embedding

Tensor apply_rotary(const Tensor& x, int64_t start_position, double theta) {
  MOX_CHECK(x.dim() == 4, "apply_rotary: x must be (B, H, T, D), got ", describe(x));
  MOX_CHECK(is_floating(x.dtype()), "apply_rotary needs a floating-point x, got ", describe(x));
  MOX_CHECK(x.size(3) > 0 && x.size(3) % 2 == 0, "apply_rotary: head dim D=", x.size(3), " of x ", describe(x),
            " must be even and positive (RoPE turns pairs of features)");
  MOX_CHECK(start_position >= 0, "apply_rotary: start_position=", start_position, " must be non-negative");
  MOX_CHECK(theta > 0, "apply_rotary: theta=", theta, " must be positive");
  if (autograd::widen_on_cpu({&x})) return apply_rotary(x.to(DType::f32), start_position, theta).to(x.dtype());
  Tensor out = empty_heads(x.shape(), x.dtype(), x.device());   // (B, H, T, D)
  backend(x.device()).rotary(heads_ready(x), start_position, theta, /*inverse=*/false, out);
  if (!needs_grad(x)) return out;
  // A rotation's transpose is the rotation by the opposite angle.
  return record("apply_rotary", out, {&x}, [start_position, theta](const Tensor& g) {
    Tensor gx = empty_heads(g.shape(), g.dtype(), g.device());
    backend(g.device()).rotary(heads_ready(g), start_position, theta, /*inverse=*/true, gx);
    return Grads{gx};
  });
}

}  // namespace mox
