// node.h — the define-by-run graph: one Node per differentiable op application.
//
// A differentiable function computes its result with raw ops and, when grad mode is on
// and an input requires grad, attaches a Node to the result. The node holds only what
// backward needs (captured by its backward lambda) and one Edge per input. Nodes never
// hold their own output with its grad_fn (that would be a reference cycle): they save
// `out.detach()` instead.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace mox::autograd {

// Where an input's gradient goes: the node that produced the input, or — for a leaf that
// requires grad — the leaf itself (its .grad accumulates). Neither: gradient not needed.
struct Edge {
  std::shared_ptr<Node> node;
  std::shared_ptr<TensorImpl> leaf;
  bool needed() const { return node != nullptr || leaf != nullptr; }
};

// grad of the output → one gradient per input (an undefined Tensor where not needed).
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_out)>;

struct Node {
  const char* op = "";         // the op's name, for error messages and anomaly mode
  std::vector<Edge> edges;     // one per input, in the op's argument order
  BackwardFn backward;         // released (empty) after a backward without retain_graph
  Shape out_shape;             // shape and dtype of the output: incoming gradients must match
  DType out_dtype = DType::f32;
  uint64_t sequence = 0;       // creation order: a node runs after every node created later
};

// Grad mode (thread-local): when off, functions record no graph.
bool grad_enabled();
void set_grad_enabled(bool on);

class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Anomaly mode (process-wide, off by default; slows every op by a finiteness scan): every
// recorded op's output and every gradient a backward rule produces are checked, and the
// first NaN/inf is an error naming the op, its creation number and the ops that produced
// its inputs — instead of a NaN loss many steps later.
bool anomaly_mode();
void set_anomaly_mode(bool on);

class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool on = true) : prev_(anomaly_mode()) { set_anomaly_mode(on); }
  ~DetectAnomalyGuard() { set_anomaly_mode(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and some input requires grad: then the op must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
inline bool needs_grad(const Tensor& a) { return needs_grad({&a}); }

// f16/bf16 are storage formats on the CPU: the CPU backend's convolution and transformer-layer
// kernels (conv2d, layer/rms norm, bias_gelu, attention, rotary) compute in f32 and f64 only.
// True when `inputs` (undefined ones skipped) are CPU tensors of one 16-bit dtype: the op then
// runs on f32 copies (widened) and rounds its result back, through differentiable casts, so
// gradients come back in the inputs' dtype. Mixed dtypes return false and meet the op's own
// dtype check. The CUDA backend runs these ops in 16-bit natively.
bool widen_on_cpu(std::initializer_list<const Tensor*> inputs);
inline Tensor widened(const Tensor& t) { return t.defined() ? t.to(DType::f32) : t; }

// Attach a node computing `backward` to `out`, with edges to `inputs`. Returns out.
Tensor record(const char* op, Tensor out, const std::vector<const Tensor*>& inputs, BackwardFn backward);

// Run backward from `root` with seed gradient `grad` (ones for a scalar when undefined).
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

}  // namespace mox::autograd
