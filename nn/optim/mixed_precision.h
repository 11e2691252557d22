// mixed_precision.h — MixedPrecision: training a model in f16 or bf16 with fp32 master weights
// and, for f16, DeepSpeed's dynamic loss scaling (nn/optim/loss_scaler.h). Device-independent
// bookkeeping over raw ops: it runs wherever the model's tensors are.
//
//   optim::MixedPrecision mp(model, DType::bf16, moe::is_router);   // f32 model → bf16, masters kept
//   optim::AdamW opt(mp.master_groups(groups));                      // the optimizer updates the masters
//   for (...) {
//     mp.zero_grad();
//     Tensor loss = cross_entropy(model.forward(x.to(mp.dtype())).to(DType::f32), y);
//     mp.backward(loss);              // (loss · loss_scale).backward(): 16-bit gradients
//     [data parallel: average the 16-bit gradients]
//     mp.grads_to_masters();          // f32 copies on the masters
//     const bool overflow = mp.overflowed();   [data parallel: OR it over the ranks]
//     if (mp.unscale_or_skip(overflow)) { [clip mp.masters()]; opt.step(); mp.masters_to_params(); }
//   }
//
// Construction converts every floating parameter and buffer of the model to `dtype` except those
// of the modules `keep_f32` selects, children included (DeepSpeed keeps MoE routers in fp32: pass
// moe::is_router), after taking an fp32 copy — the master — of every trainable parameter it
// converts. The kept tensors are never converted, so none is rounded (frozen parameters and
// buffers included); a parameter left in f32 (a router's) is its own master. With dtype f32
// nothing is converted, every master is its parameter and the calls above cost nothing, so one
// training loop serves every dtype.
//
// fp16: a step whose gradients hold an inf or NaN is skipped (parameters and optimizer state
// unchanged) and the scaler counts the overflow (halving the scale once `hysteresis` overflows
// were absorbed; an overflow at min_loss_scale is an error saying what to do); otherwise the
// master gradients are divided by the scale the loss was multiplied with. bf16 has f32's range:
// no scaler, no skipped steps.
//
// Checkpoints: state_dict() / model_state() give the model's tensors with each converted
// parameter replaced by its fp32 master, so a checkpoint holds the same f32 values whatever the
// dtype trained with, and loads into an f32 model (generation, evaluation) unchanged. Frozen
// parameters and buffers are saved as the model holds them. The loss scaler's state is the
// caller's to save (scaler()->state()).
//
// Not here: reducing gradients or the overflow flag over ranks (dist/: the engine, the
// examples), gradient clipping, the optimizer, the LR schedule (a skipped step does not advance
// it in DeepSpeed; the caller decides), casting inputs and losses (the caller's loop).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/module.h"
#include "nn/optim/loss_scaler.h"
#include "nn/optim/optimizer.h"

namespace mox::optim {

class MixedPrecision {
 public:
  // Selects the modules whose parameters stay f32 (with their children).
  using KeepF32 = std::function<bool(const nn::Module&)>;

  // dtype f32, f16 or bf16. For f16 and bf16 every trainable parameter must be f32 (the error
  // names the first that is not). `scaler` configures the f16 loss scaler (ignored otherwise).
  // `model` must outlive this object.
  MixedPrecision(nn::Module& model, DType dtype, const KeepF32& keep_f32 = {}, const LossScalerConfig& scaler = {});

  DType dtype() const { return dtype_; }

  // One entry per trainable parameter of the model, in registration order.
  struct Weight {
    std::string name;   // the model's parameter name
    Tensor param;       // the model's parameter (dtype(), or f32 when kept)
    Tensor master;      // its fp32 master: param itself when it is f32
  };
  const std::vector<Weight>& weights() const { return weights_; }
  std::vector<Tensor> masters() const;
  // The master of one of the model's trainable parameters; throws when it is not one.
  Tensor master(const Tensor& param) const;
  // `groups` (built over the model's parameters) with every parameter replaced by its master,
  // names and hyper-parameters unchanged: the groups to build the optimizer from.
  std::vector<ParamGroup> master_groups(std::vector<ParamGroup> groups) const;

  // f16: the loss scaler; null for f32 and bf16.
  LossScaler* scaler() { return scaler_.get(); }
  const LossScaler* scaler() const { return scaler_.get(); }
  double loss_scale() const { return scaler_ ? scaler_->scale() : 1.0; }

  // Zeroes the model's gradients (Module::zero_grad) and drops the masters' copies.
  void zero_grad();
  // Backpropagates loss / accumulation_steps · loss_scale(), the loss taken in f32 (a 16-bit
  // loss is widened first). The loss must be a single value.
  void backward(const Tensor& loss, int64_t accumulation_steps = 1);
  // Each converted parameter's gradient, in f32, becomes its master's (an undefined gradient
  // leaves the master without one). Call after backward and any gradient reduction.
  void grads_to_masters();
  // f16: true when a master gradient holds an inf or NaN (this process only). Always false
  // without a scaler.
  bool overflowed() const;
  // f16, with the overflow flag every rank agrees on: on overflow records it in the scaler
  // (which may halve the scale; throws at the minimum scale) and returns false — skip the
  // optimizer step; otherwise divides the master gradients by the scale, records a clean step
  // and returns true. Without a scaler: returns true (an overflow flag is then an error).
  bool unscale_or_skip(bool overflow);
  // After the optimizer step: every converted parameter ← its master, rounded to dtype().
  void masters_to_params();

  // The model's state_dict() with every converted parameter replaced by its fp32 master.
  nn::NamedTensors state_dict() const;
  // Strict and all-or-nothing, as Module::load_state_dict, against the names, shapes and
  // dtypes of state_dict(); then the converted parameters are refreshed from the masters.
  void load_state_dict(const nn::NamedTensors& state);
  // state_dict / load_state_dict as the "model.*" side of nn::save_checkpoint/load_checkpoint.
  nn::ModelState model_state();

 private:
  nn::Module& model_;
  DType dtype_;
  std::vector<Weight> weights_;
  std::unique_ptr<LossScaler> scaler_;
};

}  // namespace mox::optim
