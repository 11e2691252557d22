// functions.h — the differentiable ops of mox (namespace mox).
//
// Each function computes its result with raw ops (tensor/ops.h) and, when grad mode is on
// and an input requires grad, records a graph node whose backward rule sits right beside
// the forward in autograd/functions_*.cpp. Every function here has a float64
// central-difference gradcheck in tests/. Comparison ops, argmax and the like are not
// differentiable and return tensors that never require grad.
#pragma once
#include <optional>
#include <utility>
#include <vector>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace mox {

// ---- arithmetic (broadcasting; both operands must share a dtype) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);   // gradient to a where a ≥ b, else to b
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor pow(const Tensor& a, double exponent);
Tensor rsub(double s, const Tensor& a);   // s - a
Tensor rdiv(double s, const Tensor& a);   // s / a
Tensor neg(const Tensor& a);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// ---- comparisons (not differentiable; boolean result) ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// ---- unary math ----
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor silu(const Tensor& x);

// ---- reductions (dims may be negative; empty dims = all dims) ----
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
// Max/min values along one dim (gradient flows to the first maximal element).
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);   // over all elements
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);   // not differentiable
Tensor cumsum(const Tensor& x, int64_t dim);

// ---- softmax family ----
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

// ---- linear algebra ----
// (M,K)@(K,N); batched (...,M,K)@(...,K,N) with broadcast batch dims; vectors as in NumPy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x (..., in) @ w(out, in)^T + b(out): the Linear layer's function.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// G Linears over consecutive row groups of x, as one graph node (an MoE layer's experts;
// autograd/functions_grouped.cpp): x (N, in) split into groups of counts[g] rows (Σ = N, empty
// groups allowed), weights[g] (out, in), biases empty or one (out) per group → (N, out) whose
// group-g rows are x_g·W_gᵀ + b_g, equal to linear() per group (bit for bit on the CPU). A group
// without rows gives its weight and bias no gradient. Mismatches name the group and the shapes.
Tensor grouped_linear(const Tensor& x, const std::vector<int64_t>& counts, const std::vector<Tensor>& weights,
                      const std::vector<Tensor>& biases = {});

// ---- convolution and pooling (NCHW) ----
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor(),
              int64_t stride = 1, int64_t padding = 0);
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = -1, int64_t padding = 0);

// ---- indexing and joining ----
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// base with src rows added at index along dim (out of place: base is not modified).
Tensor index_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src);
Tensor scatter_add(const Tensor& base, int64_t dim, const Tensor& index, const Tensor& src);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// {values (differentiable), indices}
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);

// ---- regularisation ----
// Inverted dropout with the given generator (default generator when null); identity when
// !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// ---- language-model layers (autograd/functions_llm.cpp): one node each, fused kernels ----
// Rows of weight (V, C) picked by i64 ids of any shape → (..., C). An id outside [0, V) is an
// error naming the id, its position and V. Backward index-adds rows into a (V, C) gradient.
Tensor embedding(const Tensor& weight, const Tensor& ids);
// Over the last dim (C): (x − mean)/√(var + eps)·weight + bias, biased variance; weight and
// bias (C) are optional (undefined: 1 and 0).
Tensor layer_norm(const Tensor& x, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);
// Over the last dim (C): x/√(mean(x²) + eps)·weight (Llama's RMSNorm); weight (C) optional.
Tensor rms_norm(const Tensor& x, const Tensor& weight = Tensor(), double eps = 1e-5);
// softmax(scale·q·kᵀ)·v per (batch, head): q (B, H, T, D), k and v (B, H, Tk, D) →
// (B, H, T, D); scale defaults to 1/√D. causal: query i sees keys j ≤ i + Tk − T (the mask
// is aligned to the last key, so T new queries against a KV cache of Tk ≥ T keys work).
// dropout_p > 0 drops attention probabilities (inverted dropout drawn from gen, as
// dropout() does; pass 0 in eval). The result is a view of (B, T, H, D) memory, so
// transpose(1, 2).reshape({B, T, H·D}) merges the heads without a copy. What it keeps for
// backward depends on the attention kernel (below).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                                    std::optional<double> scale = std::nullopt, double dropout_p = 0.0,
                                    Generator* gen = nullptr);
// Which kernel attention (the op above and causal_self_attention_qkv) runs, process-wide:
// materialized keeps the (B, H, T, Tk) probabilities for backward (O(T²) memory); fused keeps
// (B, H, T) log-sum-exps and recomputes the probabilities in backward (flash-style, O(T)
// memory; on CUDA head dims up to kCudaFusedAttentionMaxHeadDim = 128). automatic (the
// default): fused on CUDA where the head dim allows; on the CPU fused from
// kCpuFusedAttentionMinKeys = 512 keys on, materialized below (slightly faster there).
// Both give the same result up to rounding and draw the same dropout mask from the same
// generator counters.
enum class AttentionKernel { automatic, fused, materialized };
void set_attention_kernel(AttentionKernel kernel);
AttentionKernel attention_kernel();
// "auto" | "fused" | "materialized" (a command-line value); anything else is an error naming it.
AttentionKernel parse_attention_kernel(const std::string& name);
// Causal self-attention of a packed projection qkv (B, T, 3·C) = [q | k | v] split into
// n_head heads: scaled_dot_product_attention(q, k, v, causal=true, ...) of its head views,
// (B, H, T, D) as a view of (B, T, H, D) memory, with one graph node whose backward writes
// the q, k and v gradients into one (B, T, 3·C) buffer — no zero-filled gradient per third
// and no sum of three, as narrow() would give. For training without rotary embedding or a
// KV cache (GPT's attention); otherwise use the three views and the general op.
Tensor causal_self_attention_qkv(const Tensor& qkv, int64_t n_head, std::optional<double> scale = std::nullopt,
                                 double dropout_p = 0.0, Generator* gen = nullptr);
// GPT-2's GELU (tanh approximation, as gelu(x, true)) of x + bias in one vectorised pass;
// bias (C) over the last dim, optional.
Tensor bias_gelu(const Tensor& x, const Tensor& bias = Tensor());
// Rotary position embedding (RoPE) of x (B, H, T, D), row t at position start_position + t,
// in the GPT-NeoX / Hugging Face Llama "rotate_half" convention: feature i pairs with
// i + D/2 and the pair turns by position·theta^(−2i/D). D must be even. The result is laid
// out like attention's (a view of (B, T, H, D) memory).
Tensor apply_rotary(const Tensor& x, int64_t start_position = 0, double theta = 10000.0);

}  // namespace mox
