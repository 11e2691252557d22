// data_parallel.cpp — GradientReducer: parameter split, model consistency check, bucket layout,
// and the per-step reduction (see data_parallel.h).
#include "dist/data_parallel.h"

#include <algorithm>
#include <set>
#include <utility>

#include "dist/groups.h"
#include "dist/world.h"
#include "moe/experts.h"
#include "tensor/ops.h"

namespace mox::dist {
namespace {

// The dtype a parameter's gradient travels in: f64 stays f64, everything else is summed in f32.
DType bucket_dtype(DType param) { return param == DType::f64 ? DType::f64 : DType::f32; }

// FNV-1a over the bytes of a string, chained.
uint64_t fnv1a(uint64_t h, const std::string& s) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return (h ^ 0xff) * 0x100000001b3ull;   // separator, so "ab"+"c" ≠ "a"+"bc"
}

// Elements [offset, offset + shape.numel()) of a flat buffer, viewed with `shape`.
Tensor slot(const Tensor& flat, int64_t offset, const Shape& shape) {
  return raw::view(raw::narrow(flat, 0, offset, shape.numel()), shape);
}

}  // namespace

GradientReducer::GradientReducer(const nn::Module& model, GradientReducerOptions options)
    : opt_(options), world_(world_ptr()) {
  MOX_CHECK(opt_.bucket_bytes >= 1, "GradientReducer: bucket_bytes=", opt_.bucket_bytes, " must be at least 1");
  auto make_param = [](const std::string& name, const Tensor& p) {
    MOX_CHECK(is_floating(p.dtype()), "GradientReducer: parameter '", name, "' is ", describe(p),
              "; only floating-point parameters have gradients to average");
    return Param{name, p, p.dtype(), p.shape()};
  };
  // Expert parameters, grouped by their expert-parallel group name in order of first use.
  std::set<const TensorImpl*> seen;
  std::vector<std::pair<std::string, std::vector<Param>>> experts;
  for (const moe::ExpertParameter& e : moe::expert_parameters(model)) {
    if (!seen.insert(e.param.impl()).second || !e.param.requires_grad()) continue;
    auto it = experts.begin();
    while (it != experts.end() && it->first != e.group) ++it;
    if (it == experts.end()) it = experts.insert(experts.end(), {e.group, {}});
    it->second.push_back(make_param(e.name, e.param));
  }
  // Dense parameters: the rest, each once (a tied weight is listed once by named_parameters).
  std::vector<Param> dense;
  for (const auto& [name, p] : model.named_parameters())
    if (seen.insert(p.impl()).second && p.requires_grad()) dense.push_back(make_param(name, p));

  check_same_model_everywhere(dense, experts);   // before any expert group is built

  reductions_.push_back({"dense", world_, std::move(dense), {}});
  for (auto& [group, params] : experts)
    reductions_.push_back({group, expert_groups(group).expert_data_parallel, std::move(params), {}});
  for (Reduction& r : reductions_) build_buckets(r);
}

// One max-reduce over the world of (count, elements, hash) and their negations: equal maxima
// and minima mean every rank agrees.
void GradientReducer::check_same_model_everywhere(
    const std::vector<Param>& dense, const std::vector<std::pair<std::string, std::vector<Param>>>& experts) const {
  int64_t count = 0, numel = 0;
  uint64_t hash = 0xcbf29ce484222325ull;
  auto add = [&](const Param& p) {
    ++count;
    numel += p.shape.numel();
    hash = fnv1a(fnv1a(fnv1a(hash, p.name), dtype_name(p.dtype)), str(p.shape));
  };
  for (const Param& p : dense) add(p);
  for (const auto& [group, params] : experts) {
    hash = fnv1a(hash, group);
    for (const Param& p : params) add(p);
  }
  const int64_t lo = int64_t(hash & 0xffffffffu), hi = int64_t(hash >> 32);
  Tensor t = from_vector<int64_t>({count, numel, lo, hi, -count, -numel, -lo, -hi}, {8});
  world_->all_reduce(t, ReduceOp::max);
  const std::vector<int64_t> v = t.to_vector<int64_t>();   // maxima at [0, 4), minus minima at [4, 8)
  MOX_CHECK(v[0] == -v[4] && v[1] == -v[5], "GradientReducer: the model differs across the ", world_->size(),
            " ranks: this rank (", world_->rank(), ") has ", count, " parameter tensors (", numel,
            " elements) to reduce, but the ranks have between ", -v[4], " and ", v[0], " tensors (", -v[5], " and ",
            v[1], " elements); build the same model, with the same configuration, on every rank");
  MOX_CHECK(v[2] == -v[6] && v[3] == -v[7], "GradientReducer: the model differs across the ", world_->size(),
            " ranks: every rank has ", count, " parameter tensors (", numel,
            " elements), but their names, shapes, dtypes or expert groups differ; build the same model on every rank");
}

// Parameters of one dtype, in registration order, fill a bucket until the next would push it
// past bucket_bytes; dtypes are taken in order of first appearance.
void GradientReducer::build_buckets(Reduction& r) const {
  std::vector<DType> dtypes;
  for (const Param& p : r.params)
    if (std::find(dtypes.begin(), dtypes.end(), p.dtype) == dtypes.end()) dtypes.push_back(p.dtype);
  for (DType dt : dtypes) {
    Bucket b{bucket_dtype(dt), {}, 0};
    const int64_t cap = opt_.bucket_bytes / int64_t(dtype_size(b.dtype));   // elements; 0 → one param each
    for (size_t i = 0; i < r.params.size(); ++i) {
      if (r.params[i].dtype != dt) continue;
      const int64_t n = r.params[i].shape.numel();
      if (!b.params.empty() && b.numel + n > cap) {
        r.buckets.push_back(b);
        b = Bucket{bucket_dtype(dt), {}, 0};
      }
      b.params.push_back(i);
      b.numel += n;
    }
    if (!b.params.empty()) r.buckets.push_back(b);
  }
}

std::string GradientReducer::invalid_gradient(const Reduction& r) const {
  for (const Param& p : r.params) {
    const Tensor& t = p.param;
    if (t.dtype() != p.dtype || !(t.shape() == p.shape))
      return str("GradientReducer: parameter '", p.name, "' is now ", describe(t), " but was ", p.shape, " ",
                 dtype_name(p.dtype), " when the reducer was built; build a new GradientReducer after changing the model");
    const Tensor g = t.grad();
    if (!g.defined()) continue;
    if (g.dtype() != p.dtype || !(g.shape() == p.shape) || g.device() != t.device())
      return str("GradientReducer: the gradient of '", p.name, "' is ", describe(g), " on ", g.device(),
                 " but its parameter is ", describe(t), " on ", t.device(),
                 "; a gradient must have its parameter's shape, dtype and device");
  }
  return "";
}

// 1 for each parameter of r that has a gradient on some rank of r's group, else 0.
std::vector<int32_t> GradientReducer::used_in_group(const Reduction& r) const {
  std::vector<int32_t> used;
  for (const Param& p : r.params) used.push_back(p.param.grad().defined() ? 1 : 0);
  if (used.empty()) return used;
  Tensor t = from_vector<int32_t>(used, {int64_t(used.size())});
  r.group->all_reduce(t, ReduceOp::max);
  return t.to_vector<int32_t>();
}

void GradientReducer::reduce() {
  std::string error;
  for (const Reduction& r : reductions_)
    if (error.empty()) error = invalid_gradient(r);
  // The world's first collective carries, besides the dense "used" flags, the highest rank
  // with an invalid gradient (+1), so that every rank throws together instead of hanging.
  std::vector<int32_t> flags = {error.empty() ? 0 : world_->rank() + 1};
  for (const Param& p : reductions_[0].params) flags.push_back(p.param.grad().defined() ? 1 : 0);
  Tensor t = from_vector<int32_t>(flags, {int64_t(flags.size())});
  world_->all_reduce(t, ReduceOp::max);
  flags = t.to_vector<int32_t>();
  if (!error.empty()) MOX_FAIL(error);
  MOX_CHECK(flags[0] == 0, "GradientReducer::reduce: rank ", flags[0] - 1,
            " of the world has an invalid gradient (its own error names it); no gradient was reduced");

  std::vector<std::vector<int32_t>> used(reductions_.size());
  used[0].assign(flags.begin() + 1, flags.end());
  for (size_t i = 1; i < reductions_.size(); ++i) used[i] = used_in_group(reductions_[i]);
  for (size_t i = 0; i < reductions_.size(); ++i)
    for (const Bucket& b : reductions_[i].buckets) reduce_bucket(reductions_[i], b, used[i]);
}

// Copy in (undefined → zeros), sum over the group, scale by 1/W, copy out. A bucket none of
// whose parameters has a gradient anywhere in the group is skipped by every rank alike.
void GradientReducer::reduce_bucket(const Reduction& r, const Bucket& b, const std::vector<int32_t>& used) {
  bool any = false;
  for (size_t i : b.params) any = any || used[i] != 0;
  if (!any) return;
  const Device device = r.params[b.params[0]].param.device();
  Tensor flat = staging(b.dtype, device, b.numel);   // (numel)
  int64_t offset = 0;
  for (size_t i : b.params) {
    const Param& p = r.params[i];
    const Tensor dst = slot(flat, offset, p.shape);
    const Tensor g = p.param.grad();
    if (g.defined()) raw::copy_(dst, g);
    else raw::fill_(dst, 0.0);
    offset += p.shape.numel();
  }
  r.group->all_reduce(flat, ReduceOp::sum);
  if (world_->size() > 1) raw::mul_(flat, 1.0 / world_->size());
  offset = 0;
  for (size_t i : b.params) {
    const Param& p = r.params[i];
    const Tensor src = slot(flat, offset, p.shape);
    offset += p.shape.numel();
    if (!used[i]) continue;   // no gradient anywhere in the group: stays undefined, as in one process
    Tensor g = p.param.grad();
    if (!g.defined()) {
      g = empty(p.shape, p.dtype, device);
      Tensor(p.param).set_grad(g);   // a handle copy: the grad lives in the shared TensorImpl
    }
    raw::copy_(g, src);
  }
}

void GradientReducer::broadcast_parameters() {
  for (const Reduction& r : reductions_) {
    for (const Bucket& b : r.buckets) {
      const Device device = r.params[b.params[0]].param.device();
      Tensor flat = staging(b.dtype, device, b.numel);   // (numel)
      int64_t offset = 0;
      for (size_t i : b.params) {
        raw::copy_(slot(flat, offset, r.params[i].shape), r.params[i].param);
        offset += r.params[i].shape.numel();
      }
      r.group->broadcast(flat, 0);
      offset = 0;
      for (size_t i : b.params) {
        raw::copy_(r.params[i].param, slot(flat, offset, r.params[i].shape));
        offset += r.params[i].shape.numel();
      }
    }
  }
}

// The first `numel` elements of a reusable flat buffer of `dtype` on `device`.
Tensor GradientReducer::staging(DType dtype, Device device, int64_t numel) {
  for (Tensor& s : staging_) {
    if (s.dtype() != dtype || s.device() != device) continue;
    if (s.numel() < numel) s = empty({numel}, dtype, device);
    return raw::narrow(s, 0, 0, numel);
  }
  staging_.push_back(empty({numel}, dtype, device));
  return staging_.back();
}

int64_t GradientReducer::num_buckets() const {
  int64_t n = 0;
  for (const Reduction& r : reductions_) n += int64_t(r.buckets.size());
  return n;
}

int64_t GradientReducer::num_dense_parameters() const { return int64_t(reductions_[0].params.size()); }

int64_t GradientReducer::num_expert_parameters() const {
  int64_t n = 0;
  for (size_t i = 1; i < reductions_.size(); ++i) n += int64_t(reductions_[i].params.size());
  return n;
}

std::vector<std::string> GradientReducer::expert_group_names() const {
  std::vector<std::string> names;
  for (size_t i = 1; i < reductions_.size(); ++i) names.push_back(reductions_[i].name);
  return names;
}

}  // namespace mox::dist
