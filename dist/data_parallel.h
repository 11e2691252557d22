// data_parallel.h — GradientReducer: data-parallel gradient averaging, dense and expert, in buckets.
//
// Every rank holds a replica of the model, runs forward and backward on its own shard of the
// global batch, then calls reduce() so that every rank holds the gradient of the mean loss over
// the global batch, and optimizer.step() keeps the replicas identical:
//
//   dense parameters   : all-reduced over the data-parallel group (the world) and divided by its
//                        size W — the average of the ranks' gradients (PyTorch DDP, DeepSpeed).
//   expert parameters  : (moe::expert_parameters, grouped by their group name "ep_size_<p>")
//                        all-reduced over that name's expert-data-parallel group (the W/p ranks
//                        holding the same experts) and divided by W, not by W/p — DeepSpeed's
//                        engine does the same (_reduce_expert_gradients), so an expert's gradient
//                        does not depend on p: through the all-to-all backward an expert has
//                        already received the gradient of every token routed to it from its p
//                        expert-parallel peers.
//
// Buckets. Gradients are copied into a flat contiguous staging buffer, one all_reduce per bucket,
// then scaled by 1/W and copied back. A bucket holds parameters of one group and one dtype, in
// registration order, and closes before it would exceed bucket_bytes (default 25 MiB, PyTorch
// DDP's bucket_cap_mb; a parameter larger than that gets a bucket of its own, never split).
// f32, f16 and bf16 gradients travel in f32 buckets (16-bit gradients are summed in f32 and
// rounded once), f64 gradients in f64 buckets. The bucket layout is fixed when the reducer is
// built, from the parameters alone, so it is the same on every rank.
//
// Undefined gradients. A parameter whose grad is undefined on this rank (an expert that got no
// tokens, a branch not taken) counts as zeros: every rank calls the same collectives in the same
// order, never skips one. The ranks first agree (one small max-reduce per group) on which
// parameters have a gradient anywhere in the group; those get a defined, reduced grad on every
// rank; a parameter with no gradient on any rank of its group keeps an undefined grad — as in a
// single process, where the optimizer then skips it (PyTorch DDP does the same).
//
// Consistency. Building a reducer is collective over the world: the ranks compare their
// parameter counts and a hash of names, shapes, dtypes and expert groups, and a model that
// differs across ranks is an error naming both counts — before any expert group is created.
// reduce() validates every gradient (shape, dtype of its parameter) before any collective and
// the ranks agree on the outcome, so a bad gradient on one rank makes every rank throw, none hang.
//
// What it is not: no overlap with backward (reduce() runs after backward, bucket after bucket;
// autograd hooks that launch a bucket as soon as its gradients are ready would come with NCCL
// streams), no gradient accumulation bookkeeping (call reduce() once per optimizer step, after
// the last micro-batch), no ZeRO sharding of gradients or optimizer state, no sparse gradients,
// no buffers (mox modules keep no running statistics; broadcast_parameters() moves parameters only).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/process_group.h"
#include "nn/module.h"

namespace mox::dist {

struct GradientReducerOptions {
  int64_t bucket_bytes = 25 * 1024 * 1024;   // cap of one bucket, in bytes of the bucket's dtype
};

class GradientReducer {
 public:
  // Collective over the world (dist::init() first): checks that every rank holds the same model,
  // builds the expert groups its expert parameters name and the bucket layout. Parameters that do
  // not require grad are left out. Throws when bucket_bytes < 1, a parameter is not floating
  // point, or the model differs across ranks (naming both counts).
  explicit GradientReducer(const nn::Module& model, GradientReducerOptions options = {});

  // After backward, on every rank: average the gradients as described above. Collective.
  // Throws when a gradient does not match its parameter's shape and dtype, or a parameter
  // changed shape or dtype since the reducer was built (e.g. model.to(DType::f64)).
  void reduce();

  // Start-up consistency, for the parameters the reducer covers: every dense parameter ← its
  // value on world rank 0; every expert parameter ← its value on rank 0 of its
  // expert-data-parallel group (the W/p ranks holding the same experts). Collective.
  void broadcast_parameters();

  // Introspection (tests, logs).
  int64_t num_buckets() const;                  // over dense and expert parameters
  int64_t num_dense_parameters() const;         // tensors reduced over the world
  int64_t num_expert_parameters() const;        // tensors reduced over expert-data-parallel groups
  std::vector<std::string> expert_group_names() const;   // "ep_size_<p>", in order of first use
  const GradientReducerOptions& options() const { return opt_; }

 private:
  struct Param {
    std::string name;   // "fc1.weight", "moe.experts.0.weight"
    Tensor param;
    DType dtype;        // at construction (checked at every reduce)
    Shape shape;
  };
  struct Bucket {
    DType dtype;                  // of the staging buffer: f32 or f64
    std::vector<size_t> params;   // indices into the reduction's params
    int64_t numel = 0;
  };
  // One set of parameters reduced over one group: the dense set over the world, or the expert
  // parameters of one "ep_size_<p>" over this rank's expert-data-parallel group of that p.
  struct Reduction {
    std::string name;                     // "dense" or "ep_size_<p>"
    std::shared_ptr<ProcessGroup> group;  // where the sum is taken
    std::vector<Param> params;
    std::vector<Bucket> buckets;
  };

  void check_same_model_everywhere(const std::vector<Param>& dense,
                                   const std::vector<std::pair<std::string, std::vector<Param>>>& experts) const;
  void build_buckets(Reduction& r) const;
  std::string invalid_gradient(const Reduction& r) const;   // "" when every gradient is fine
  std::vector<int32_t> used_in_group(const Reduction& r) const;
  void reduce_bucket(const Reduction& r, const Bucket& b, const std::vector<int32_t>& used);
  Tensor staging(DType dtype, Device device, int64_t numel);

  GradientReducerOptions opt_;
  std::shared_ptr<ProcessGroup> world_;
  std::vector<Reduction> reductions_;   // [0] dense, then one per expert group name
  std::vector<Tensor> staging_;         // reusable flat buffers, one per dtype/device in use
};

}  // namespace mox::dist
