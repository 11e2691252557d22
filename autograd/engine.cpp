// engine.cpp — grad mode, graph recording and the backward walk.
//
// backward() collects the nodes reachable from the root and runs them in decreasing
// creation order — a valid reverse topological order, since a node is always created
// after the nodes of its inputs. Gradients for non-leaf tensors live only in a map for
// the duration of the walk; leaves accumulate into .grad (+=).
#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "autograd/node.h"
#include "tensor/ops.h"

namespace mox::autograd {

namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_sequence{0};
std::atomic<bool> g_anomaly{false};

// "op #sequence (inputs from: a #1, leaf, b #7)" — where a node sits in the graph.
std::string node_origin(const Node& n) {
  std::string inputs;
  for (const Edge& e : n.edges) {
    if (!inputs.empty()) inputs += ", ";
    if (e.node) inputs += std::string(e.node->op) + " #" + std::to_string(e.node->sequence);
    else inputs += e.leaf ? "a leaf" : "a constant";
  }
  return "'" + std::string(n.op) + "' #" + std::to_string(n.sequence) + " (inputs from: " + inputs + ")";
}

bool non_finite(const Tensor& t) { return t.defined() && is_floating(t.dtype()) && !raw::all_finite(t); }

void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  MOX_CHECK(g.shape() == leaf.shape, "gradient of shape ", g.shape(), " for a leaf of shape ",
            leaf.shape);
  if (!leaf.grad) {
    leaf.grad = raw::clone(raw::to_dtype(g, leaf.dtype)).impl_ptr();   // a fresh, unaliased buffer
  } else {
    raw::add_(Tensor(leaf.grad), raw::to_dtype(g, leaf.dtype));
  }
}
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
bool anomaly_mode() { return g_anomaly.load(std::memory_order_relaxed); }
void set_anomaly_mode(bool on) { g_anomaly.store(on, std::memory_order_relaxed); }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

bool widen_on_cpu(std::initializer_list<const Tensor*> inputs) {
  const Tensor* first = *inputs.begin();
  if (!first->device().is_cpu() || (first->dtype() != DType::f16 && first->dtype() != DType::bf16)) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && (t->dtype() != first->dtype() || t->device() != first->device())) return false;
  return true;
}

Tensor record(const char* op, Tensor out, const std::vector<const Tensor*>& inputs, BackwardFn backward) {
  auto node = std::make_shared<Node>();
  node->op = op;
  node->edges.reserve(inputs.size());
  for (const Tensor* t : inputs) {
    Edge e;
    if (t->defined() && t->requires_grad()) {
      if (t->grad_fn()) e.node = t->grad_fn();
      else e.leaf = t->impl_ptr();
    }
    node->edges.push_back(std::move(e));
  }
  node->backward = std::move(backward);
  node->out_shape = out.shape();
  node->out_dtype = out.dtype();
  node->sequence = g_sequence.fetch_add(1, std::memory_order_relaxed);
  MOX_CHECK(!anomaly_mode() || !non_finite(out), "anomaly: op ", node_origin(*node), " produced NaN or inf in its output ",
            describe(out), " (forward)");
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  MOX_CHECK(root.requires_grad(), "backward: the tensor ", describe(root),
            " does not require grad and has no grad_fn (was it computed under no_grad, or from "
            "tensors that do not require grad?)");
  Tensor seed = grad;
  if (!seed.defined()) {
    MOX_CHECK(root.numel() == 1, "backward: a gradient can be created implicitly only for a "
              "scalar output; got shape ", root.shape(), " — pass the gradient explicitly");
    seed = ones(root.shape(), root.dtype(), root.device());
  }
  MOX_CHECK(seed.shape() == root.shape() && seed.dtype() == root.dtype() && seed.device() == root.device(),
            "backward: gradient ", describe(seed), " on ", seed.device(), " does not match the output ",
            describe(root), " on ", root.device());
  NoGradGuard no_grad;
  if (!root.grad_fn()) {
    accumulate_leaf(*root.impl(), seed);
    return;
  }
  // Reachable nodes, newest first.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{root.grad_fn().get()};
  seen.insert(stack.back());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    order.push_back(n);
    for (const Edge& e : n->edges)
      if (e.node && seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  }
  std::sort(order.begin(), order.end(), [](Node* a, Node* b) { return a->sequence > b->sequence; });

  std::unordered_map<Node*, Tensor> grads;
  grads[root.grad_fn().get()] = seed;
  for (Node* n : order) {
    auto it = grads.find(n);
    if (it == grads.end()) continue;   // no gradient reached this node
    Tensor g = std::move(it->second);
    grads.erase(it);
    MOX_CHECK(n->backward, "backward: trying to backward through the graph a second time (op '",
              n->op, "'); its saved tensors were freed — call backward(grad, /*retain_graph=*/true) "
              "the first time if you need to");
    MOX_CHECK(g.shape() == n->out_shape && g.dtype() == n->out_dtype, "internal: op '", n->op,
              "' received a gradient ", describe(g), " for its output of shape ", n->out_shape, " ",
              n->out_dtype);
    std::vector<Tensor> input_grads = n->backward(g);
    if (!retain_graph) n->backward = nullptr;
    MOX_CHECK(input_grads.size() == n->edges.size(), "internal: op '", n->op, "' returned ",
              input_grads.size(), " gradients for ", n->edges.size(), " inputs");
    if (anomaly_mode())
      for (size_t i = 0; i < input_grads.size(); ++i)
        MOX_CHECK(!n->edges[i].needed() || !non_finite(input_grads[i]), "anomaly: the backward of op ", node_origin(*n),
                  " produced NaN or inf in the gradient of input ", i, " ", describe(input_grads[i]),
                  " (the incoming gradient was ", non_finite(g) ? "already non-finite" : "finite", ")");
    for (size_t i = 0; i < n->edges.size(); ++i) {
      const Edge& e = n->edges[i];
      const Tensor& gi = input_grads[i];
      if (!e.needed() || !gi.defined()) continue;
      if (e.leaf) {
        accumulate_leaf(*e.leaf, gi);
        continue;
      }
      auto slot = grads.find(e.node.get());
      if (slot == grads.end()) grads.emplace(e.node.get(), gi);
      else slot->second = raw::add(slot->second, gi);
    }
  }
}

}  // namespace mox::autograd
