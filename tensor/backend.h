// backend.h — the small table of kernels each device provides.
//
// Front-ends in tensor/ops.cpp validate shapes and dtypes once, allocate the outputs and
// then call the kernel of the tensor's device through `backend(device)`. The CPU backend
// (tensor/cpu/) is always present and is the reference; the CUDA backend (tensor/cuda/) is
// found at run time when it was built and a GPU is visible. Kernels may assume what the front-end guarantees (stated per entry:
// matching shapes, contiguous outputs, same device) and check nothing user-facing.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/attention_math.h"
#include "tensor/tensor.h"

namespace mox {

enum class UnaryOp : uint8_t {
  neg, abs, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, relu, gelu, gelu_tanh, silu,
  square, reciprocal
};
enum class BinaryOp : uint8_t {
  add, sub, mul, div, maximum, minimum, pow,
  eq, ne, lt, le, gt, ge,   // comparisons: output dtype boolean
};
enum class ReduceOp : uint8_t { sum, mean, max, min, prod };

const char* unary_name(UnaryOp op);
const char* binary_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};
struct Pool2dParams {
  int64_t kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
};

// Hyper-parameters of the fused optimizer updates (math in tensor/optim_math.h).
struct SgdHyper {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first_step = false;   // momentum buffer is initialised to the gradient on the first step
};
struct AdamHyper {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled = false;    // AdamW: decay the weight directly instead of adding wd·p to grad
  int64_t step = 1;          // 1-based step for bias correction
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory ----
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  // Bytes between host memory and this device (or within the device when both are).
  virtual void copy_to_host(void* host_dst, const void* src, size_t nbytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, size_t nbytes) = 0;

  // ---- elementwise ----
  // dst[i] = cast(src[i]); src any strides (stride 0 allowed), dst any non-overlapping strides.
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;
  virtual void fill(const Tensor& dst, double value) = 0;
  // out contiguous, same shape as x.
  virtual void unary(UnaryOp op, const Tensor& x, const Tensor& out) = 0;
  // gx = gy · f'(x); y = f(x) is given for ops whose derivative is cheaper from it.
  virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                              const Tensor& gx) = 0;
  // a and b already broadcast to out's shape (stride 0 on broadcast dims); out contiguous.
  // Arithmetic ops: a, b, out share a dtype; comparisons write boolean.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = a op scalar (or scalar op a when reversed). out contiguous, a's shape.
  virtual void binary_scalar(BinaryOp op, const Tensor& a, double scalar, bool reversed,
                             const Tensor& out) = 0;
  // out = cond ? a : b; all broadcast to out's shape.
  virtual void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out = x·alpha + y in place on y (y contiguous, x same shape). The optimizer workhorse.
  virtual void axpy(double alpha, const Tensor& x, const Tensor& y) = 0;

  // ---- reductions ----
  // out has x's rank with extent 1 on every dim where reduce[d] is true. out contiguous.
  virtual void reduce(ReduceOp op, const Tensor& x, const bool* reduce_dims, const Tensor& out) = 0;
  // index (i64) of the max/min along `dim`; out has extent 1 on dim.
  virtual void arg_reduce(bool is_max, const Tensor& x, int dim, const Tensor& out) = 0;
  // Along the last dim of contiguous x: softmax or log-softmax.
  virtual void softmax(const Tensor& x, bool log, const Tensor& out) = 0;
  virtual void softmax_backward(const Tensor& y, const Tensor& gy, bool log, const Tensor& gx) = 0;
  virtual void cumsum(const Tensor& x, int dim, const Tensor& out) = 0;

  // ---- linear algebra ----
  // out(B,M,N) = a(B,M,K) @ b(B,K,N). a, b: each of the last two dims has unit stride in one
  // of them (so a transposed view needs no copy); batch strides arbitrary (0 = broadcast).
  // out contiguous. If accumulate, out += a@b instead of out = a@b.
  virtual void bmm(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) = 0;
  // Grouped GEMM (the experts of an MoE layer in one call): out[g] = a[g] @ b[g] for every g,
  // each problem with its own (M_g, K_g, N_g): a[g] (M_g, K_g), b[g] (K_g, N_g), out[g]
  // (M_g, N_g). a[g], b[g] follow bmm's stride rule (a unit stride in one dim); out[g] is
  // contiguous (rows of a contiguous tensor or a whole matrix); all share a dtype and device.
  // Problems with M_g or N_g = 0 are skipped; K_g = 0 writes zeros (nothing when accumulating).
  // If accumulate, out[g] += a[g]@b[g]. The front-end (autograd grouped_linear) builds the
  // forward x_g·W_gᵀ, dX_g = dY_g·W_g and dW_g = dY_gᵀ·X_g from views of x, W_g and dY.
  virtual void grouped_gemm(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                            const std::vector<Tensor>& out, bool accumulate) = 0;

  // ---- convolution and pooling (NCHW, contiguous) ----
  virtual void conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p,
                      const Tensor& out) = 0;
  // Any of gx/gw/gb may be null when not needed. Gradients are written, not accumulated.
  virtual void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy,
                               const Conv2dParams& p, const Tensor* gx, const Tensor* gw,
                               const Tensor* gb) = 0;
  // indices (i64): flat h*W+w position of the max within each input plane.
  virtual void max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out,
                          const Tensor& indices) = 0;
  virtual void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) = 0;

  // ---- indexing (index tensors i64, contiguous; bounds checked by the front-end) ----
  virtual void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) = 0;
  // out[... index[i] ...] += src[i] along dim (out modified in place).
  virtual void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) = 0;
  virtual void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) = 0;
  virtual void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) = 0;
  // Along the last dim of contiguous x: the k largest (or smallest) values, sorted, and
  // their positions. Ties keep the lower index first.
  virtual void topk(const Tensor& x, int64_t k, bool largest, const Tensor& values,
                    const Tensor& indices) = 0;
  // Stable argsort along the last dim of contiguous x.
  virtual void argsort(const Tensor& x, bool descending, const Tensor& indices) = 0;

  // ---- random numbers (counter-based Philox: same seed and offset, same numbers anywhere) ----
  virtual void uniform(const Tensor& out, double low, double high, uint64_t seed, uint64_t offset) = 0;
  virtual void normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) = 0;

  // ---- fused optimizer updates (all contiguous, same shape and dtype) ----
  virtual void sgd_step(const Tensor& param, const Tensor& grad, const Tensor* momentum_buf,
                        const SgdHyper& h) = 0;
  virtual void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                         const Tensor& exp_avg_sq, const AdamHyper& h) = 0;

  // ---- transformer layers (fused forward and backward; f32 and f64) ----
  // Normalise each row of contiguous x (rows, C) into contiguous y: with `mean` (LayerNorm)
  // y = (x − μ)·r·w + b, r = 1/√(var + eps) (biased variance); without it (RMSNorm)
  // y = x·r·w + b, r = 1/√(mean(x²) + eps). w, b (C) may be null (1 and 0). mean and rstd
  // (rows) receive μ and r for the backward, in x's compute type (f64 for f64 x, else f32).
  virtual void norm(const Tensor& x, const Tensor* w, const Tensor* b, double eps, const Tensor* mean,
                    const Tensor& rstd, const Tensor& y) = 0;
  // From norm's saved μ (null for RMSNorm) and r; any of gx/gw/gb may be null when not
  // needed. All contiguous; gradients are written, not accumulated.
  virtual void norm_backward(const Tensor& x, const Tensor* w, const Tensor* mean, const Tensor& rstd,
                             const Tensor& gy, const Tensor* gx, const Tensor* gw, const Tensor* gb) = 0;
  // Attention for each (batch, head): q, out (B, H, T, D); k, v (B, H, Tk, D); these five
  // have unit stride on D and any other strides. probs (B, H, T, Tk) contiguous, or null
  // when not kept: softmax(scale·q·kᵀ) over keys, where with `causal` query i sees keys
  // j ≤ i + Tk − T only (masked probabilities are 0; the front-end ensures Tk ≥ T). keep
  // (B, H, T, Tk) contiguous or null: dropout multipliers (0 or 1/(1−p)) applied to the
  // probabilities before they weight v.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                         const Tensor* keep, const Tensor* probs, const Tensor& out) = 0;
  // Gradients of attention from its kept probs; gout, gq, gk, gv follow the stride rule of
  // q, k, v. Gradients are written, not accumulated.
  virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                                  const Tensor* keep, const Tensor& gout, double scale, const Tensor& gq,
                                  const Tensor& gk, const Tensor& gv) = 0;
  // Fused (flash-style) attention: attention() without the (B, H, T, Tk) probabilities —
  // tensor/attention_math.h's algorithm, the dropout decisions drawn in the kernel — keeping
  // lse (B, H, T) contiguous in the compute type (f32; f64 for f64): the log-sum-exp of each
  // query row's scores, what backward recomputes the probabilities from. Same stride rules.
  virtual void attention_fused(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                               const AttentionDropout& dropout, const Tensor& out, const Tensor& lse) = 0;
  // Gradients of attention_fused from its out and lse; written, not accumulated.
  virtual void attention_fused_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                        const Tensor& lse, const Tensor& gout, bool causal, double scale,
                                        const AttentionDropout& dropout, const Tensor& gq, const Tensor& gk,
                                        const Tensor& gv) = 0;
  // GPT-2's GELU (tanh approximation) of x + b, each row of contiguous x (rows, C) into
  // contiguous y; b (C) may be null.
  virtual void bias_gelu(const Tensor& x, const Tensor* b, const Tensor& y) = 0;
  // gx = gy·GELU'(x + b), all contiguous; gb (C), when not null, = Σ_rows gx. Written.
  virtual void bias_gelu_backward(const Tensor& x, const Tensor* b, const Tensor& gy, const Tensor& gx,
                                  const Tensor* gb) = 0;
  // Rotary position embedding of x (B, H, T, D) into out (same shape; both unit stride on
  // D): the pair (i, i + D/2) of position start + t turns by (start + t)·theta^(−2i/D)
  // (GPT-NeoX / Hugging Face "rotate_half" pairing); `inverse` turns by the opposite angle.
  virtual void rotary(const Tensor& x, int64_t start, double theta, bool inverse, const Tensor& out) = 0;
};

// The backend of a device; throws a clear error when that device's backend was not built.
Backend& backend(Device device);
bool backend_available(DeviceType type);
// True when the CUDA backend was built (libmox_cuda.so beside the program), whether or not a
// GPU is visible.
bool cuda_built();
// "" when backend_available(DeviceType::CUDA); otherwise the one-line reason: "this mox was
// built without the CUDA backend (...)", "no CUDA device is visible to this process (...)",
// or why the library or the CUDA runtime cannot start.
std::string cuda_unavailable_reason();

}  // namespace mox
