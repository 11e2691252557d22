// quantized.h — int8 weight-only quantisation: per-output-channel symmetric int8 weights
// with an f32 scale, the QuantizedLinear layer, and a pass that swaps a model's Linears.
//
// quantize_per_channel(w (N, K)): scale[n] = max_k |w[n,k]| / 127 (1 when that is 0: an
// all-zero row, or one so small the scale underflows), q[n,k] = round(w[n,k] / scale[n])
// to nearest, ties to even (torch.round), so |q| ≤ 127 and |w − q·scale| ≤ scale/2.
//
// Storage. mox has no i8 dtype, so q is a u8 tensor whose bytes ARE the two's-complement
// int8 values (−1 is stored as 0xFF): the bytes are those of an int8 tensor, and Python
// reads them with `safetensors.torch.load_file(f)["....weight_q"].view(torch.int8)`.
// QuantizedLinear registers "weight_q" (N, K) u8, "weight_scale" (N) f32 and "bias" (N) f32
// as buffers (not parameters: nothing here trains), so state_dict()/safetensors carry them.
//
// forward is inference only (no autograd), on the CPU, in f32: y = x·(q·scale)ᵀ + b. Up to
// kDirectRows rows of x (token-by-token generation) run a loop over the int8 weights that
// reads each weight byte once; more rows dequantise blocks of weight rows into an f32
// scratch buffer and use the BLAS matmul. Both sum in f32, so results differ from the
// float Linear by the quantisation error (bounded above) plus f32 rounding.
//
// quantize_linears(model) swaps every nn::Linear child in the module tree for a
// QuantizedLinear through Module::replace_module. A parent that also keeps its own pointer
// to a Linear (a `std::shared_ptr<Linear>` member) would go on calling the float layer, so
// such a Linear is refused: override replace_module in that parent to re-point its member
// (holding it as std::shared_ptr<Module>), or leave the Linear in float with `skip`.
// Sequential, ModuleList and moe::Experts already do this.
// Not here: activation quantisation, int4/group-wise scales, quantisation-aware training,
// CUDA kernels.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "nn/linear.h"

namespace mox::nn {

struct QuantizedWeight {
  Tensor q;       // (N, K) u8 holding int8 two's-complement values in [-127, 127]
  Tensor scale;   // (N) f32, positive
};

// `weight` (N, K), any floating dtype and device; throws naming the row of a non-finite value.
QuantizedWeight quantize_per_channel(const Tensor& weight);
// q·scale row by row: (N, K) f32 on the CPU.
Tensor dequantize_per_channel(const Tensor& q, const Tensor& scale);

class QuantizedLinear : public Module {
 public:
  // Rows of x up to which forward reads the int8 weights directly (see above).
  static constexpr int64_t kDirectRows = 8;
  // Size of the f32 scratch buffer (elements) that larger inputs dequantise weight rows into.
  static constexpr int64_t kScratchFloats = int64_t(1) << 20;

  // From quantised tensors (CPU): q (N, K) u8, scale (N) f32, bias (N) f32 or undefined.
  QuantizedLinear(Tensor weight_q, Tensor weight_scale, Tensor bias = Tensor());
  // Quantises linear.weight (copied to the CPU as f32); copies the bias.
  static std::shared_ptr<QuantizedLinear> from_linear(const Linear& linear);

  Tensor forward(const Tensor& x) override;   // (..., in) f32 → (..., out) f32
  std::string repr() const override;
  Tensor dequantized_weight() const { return dequantize_per_channel(weight_q, weight_scale); }   // (out, in)

  int64_t in_features, out_features;
  Tensor weight_q;       // (out, in) u8 = int8 bits
  Tensor weight_scale;   // (out) f32
  Tensor bias;           // (out) f32, undefined when there is none
};

// Paths of Linears to leave in float: return true to skip ("gate.wg" for an MoE router).
using QuantizeSkip = std::function<bool(const std::string& path, const Linear& linear)>;

// Swap every nn::Linear (exactly that type; a subclass may compute something else) in
// `model`'s tree for QuantizedLinear::from_linear(it), skipping those `skip` accepts; returns
// how many Linear modules were swapped (one registered under two names counts once). All or
// nothing: if a Linear is still referenced after the swaps (see above; also a handle the
// caller keeps), every swap is undone and the error names its path and parent.
int64_t quantize_linears(Module& model, const QuantizeSkip& skip = {});

}  // namespace mox::nn
