// test_cuda_modules.cpp — modules and models on CUDA against the same modules on the CPU.
//
// One helper, expect_module_matches_cpu(device, make, inputs, forward), builds a module on the
// CPU with a fixed seed, builds a second one, loads the first one's state into it and moves it
// to `device` (Module::to), runs forward + backward on both with the same inputs and the same
// output gradient, and compares the output, every floating input's gradient and every
// parameter's gradient, matched by name (named_parameters): f32 within rtol = atol = 1e-3
// (PyTorch's CPU/CUDA tolerance), copies and index results exactly. Each case below is a
// function of the device under test; its TEST(CudaModules, ...) runs it on CUDA after
// REQUIRE_CUDA() (skipped, saying why and counted, without a GPU). Covered: Linear, Conv2d,
// MaxPool2d, LayerNorm, RMSNorm, Embedding (and its out-of-range id error), causal
// self-attention, Mlp/SwiGLU, cross-entropy, TopKGate k = 1, 2, 3 (routing decisions exactly
// the CPU's), the MoE layer at k = 1, 2, 3 with dropping, dropless and PR-MoE residual, the
// CIFAR-10 tutorial Net dense and MoE, the mox-llm Transformer (gpt and llama, dense and MoE)
// loss and gradients, SGD-momentum and AdamW steps, and f16/bf16 forwards of Linear and MoE.
//
// The harness itself runs without a GPU: CudaModulesHarness runs every case with the CPU as
// the device under test (a fresh copy of the module, state loaded by name), checks that the
// harness reports a differing or missing gradient by its parameter's name, and checks that
// the inputs of the cases sit far enough from ReLU kinks, pooling ties and routing ties that
// the last-bit differences of CUDA arithmetic cannot flip a decision.
//
// What it is not: the kernels' own CPU/CUDA comparisons (test_cuda_ops.cpp,
// test_cuda_layers.cpp), gradchecks (test_nn*.cpp, test_moe.cpp), multi-GPU or NCCL.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "examples/cifar10/net.h"
#include "examples/llm/model.h"
#include "moe/moe_layer.h"
#include "nn/attention.h"
#include "nn/basic.h"
#include "nn/conv.h"
#include "nn/embedding.h"
#include "nn/loss.h"
#include "nn/mlp.h"
#include "nn/norm.h"
#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "tests/cuda_test.h"
#include "tests/expect_error.h"
#include "tests/tiny_llm.h"

namespace mox {
namespace {

using nn::Module;
using nn::NamedTensors;
using testing::expect_close;
using testing::error_of;
using testing::expect_error;

// ------------------------------------------------------------------------ the harness

struct Tol {
  double rtol, atol;
};
constexpr Tol kF32{1e-3, 1e-3};   // PyTorch's CPU/CUDA comparison for f32
constexpr Tol kExact{0, 0};       // copies, index_add in the CPU's order, pooling
// 16-bit runs are compared with the CPU's f32 result on the same (rounded) parameters and
// inputs, so only the 16-bit arithmetic differs: each rounding of a result costs at most 2⁻⁹
// (bf16, 8-bit significand) or 2⁻¹² (f16) relative, and a layer here rounds 2–4 times (GEMM
// output, activation, combine weight, index_add), accumulating in f32 in between. Hence
// 1e-2 for bf16 and 5e-3 for f16, the tolerances PyTorch's own half-precision tests use.
constexpr Tol kBf16{1e-2, 1e-2};
constexpr Tol kF16{5e-3, 5e-3};

// Uniform values in [lo, hi) on the CPU (f32), the same for a seed.
Tensor rnd(const Shape& shape, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  return raw::uniform(shape, lo, hi, DType::f32, Device::cpu(), &g);
}

// i64 ids in [0, n), the same for a seed.
Tensor ids(const Shape& shape, int64_t n, uint64_t seed) {
  Generator g(seed);
  std::vector<int64_t> v(size_t(shape.numel()));
  for (int64_t& id : v) id = int64_t(g.next_below(uint64_t(n)));
  return from_vector<int64_t>(v, shape);
}

// manual_seed(seed) for a scope, then the default generator's state as it was: the modules
// are built from a fixed seed without changing what later tests draw.
class SeedGuard {
 public:
  explicit SeedGuard(uint64_t seed) : seed_(default_generator().seed()), offset_(default_generator().offset()) {
    manual_seed(seed);
  }
  ~SeedGuard() { default_generator().set_state(seed_, offset_); }

 private:
  uint64_t seed_, offset_;
};

using Inputs = std::vector<Tensor>;
using Factory = std::function<std::shared_ptr<Module>()>;
// Runs the module on the inputs; returns the tensor that is compared and differentiated.
using Forward = std::function<Tensor(Module&, const Inputs&)>;
Tensor plain_forward(Module& m, const Inputs& in) { return m.forward(in[0]); }

struct Options {
  Tol tol = kF32;
  DType dtype = DType::f32;   // the device-side module's dtype (16-bit: see kBf16)
  bool backward = true;
  uint64_t seed = 1;          // of the default generator while building; of the output gradient
};

struct Side {
  std::shared_ptr<Module> module;
  Inputs inputs;   // the leaves given to forward (floating ones require grad)
  Tensor out;
};
struct Run {
  Side cpu, dev;   // the CPU reference runs first
};

// `got` (any device, any float dtype) against the CPU's `want`; both undefined is a match
// (a parameter no gradient reaches), one undefined is one failure naming `what`.
void expect_matches(const Tensor& got, const Tensor& want, Tol tol, const std::string& what) {
  if (!got.defined() || !want.defined()) {
    EXPECT_EQ(got.defined(), want.defined()) << what << ": defined on the " << (got.defined() ? "device" : "CPU")
                                             << " side only";
    return;
  }
  expect_close(raw::to_dtype(raw::to_device(got, Device::cpu()), want.dtype()), want, tol.rtol, tol.atol, what);
}

// Same names in the same order, and each tensor within tolerance of the CPU's.
void expect_same_tensors(const NamedTensors& got, const NamedTensors& want, Tol tol, const std::string& what) {
  std::vector<std::string> gn, wn;
  for (auto& [name, t] : got) gn.push_back(name);
  for (auto& [name, t] : want) wn.push_back(name);
  ASSERT_EQ(gn, wn) << what << ": names differ";
  for (size_t i = 0; i < got.size(); ++i) expect_matches(got[i].second, want[i].second, tol, what + " " + wn[i]);
}

// Replaces every floating value by its `dtype` rounding (kept in f32): the CPU reference of a
// 16-bit run then holds exactly the values the device holds.
Tensor rounded(const Tensor& t, DType dtype) { return raw::to_dtype(raw::to_dtype(t, dtype), t.dtype()); }
void round_state(Module& m, DType dtype) {
  autograd::NoGradGuard no_grad;
  for (auto& [name, t] : m.state_dict())
    if (is_floating(t.dtype())) raw::copy_(t, rounded(t, dtype));
}

Run expect_module_matches_cpu(Device device, const Factory& make, const Inputs& inputs,
                              const Forward& forward = plain_forward, const Options& opt = {}) {
  const bool half = opt.dtype != DType::f32;
  Run r;
  SeedGuard seeded(opt.seed);
  r.cpu.module = make();
  if (half) round_state(*r.cpu.module, opt.dtype);
  r.dev.module = make();
  r.dev.module->load_state_dict(r.cpu.module->state_dict());
  if (half) r.dev.module->to(opt.dtype);
  r.dev.module->to(device);
  const NamedTensors sc = r.cpu.module->state_dict(), sd = r.dev.module->state_dict();
  for (size_t i = 0; i < sd.size() && i < sc.size(); ++i) {
    EXPECT_EQ(sd[i].second.device(), device) << sd[i].first << " was not moved";
    EXPECT_NE(sd[i].second.storage(), sc[i].second.storage()) << sd[i].first << " is shared, not copied";
  }

  for (const Tensor& t : inputs) {
    const bool f = is_floating(t.dtype());
    Tensor c = f && half ? rounded(t, opt.dtype) : raw::clone(t);
    Tensor d = raw::to_device(raw::clone(f ? c.to(opt.dtype) : c), device);
    if (f) {
      c.set_requires_grad();
      d.set_requires_grad();
    }
    r.cpu.inputs.push_back(c);
    r.dev.inputs.push_back(d);
  }
  r.cpu.out = forward(*r.cpu.module, r.cpu.inputs);
  r.dev.out = forward(*r.dev.module, r.dev.inputs);
  EXPECT_EQ(r.dev.out.device(), device);
  EXPECT_EQ(r.dev.out.dtype(), half ? opt.dtype : r.cpu.out.dtype());
  if (r.dev.out.shape() != r.cpu.out.shape()) {
    ADD_FAILURE() << "output shape " << r.dev.out.shape() << " on " << device << ", " << r.cpu.out.shape() << " on the CPU";
    return r;
  }
  expect_matches(r.dev.out, r.cpu.out, opt.tol, "output");
  if (!opt.backward) return r;

  const Tensor gy = rnd(r.cpu.out.shape(), opt.seed + 1);
  r.cpu.out.backward(gy);
  r.dev.out.backward(raw::to_device(gy, device));
  for (size_t i = 0; i < inputs.size(); ++i)
    if (is_floating(inputs[i].dtype()))
      expect_matches(r.dev.inputs[i].grad(), r.cpu.inputs[i].grad(), opt.tol, "gradient of input " + std::to_string(i));
  NamedTensors gd, gc;
  for (auto& [name, p] : r.dev.module->named_parameters()) gd.emplace_back(name, p.grad());
  for (auto& [name, p] : r.cpu.module->named_parameters()) gc.emplace_back(name, p.grad());
  expect_same_tensors(gd, gc, opt.tol, "gradient of");
  return r;
}

// Routing decisions are host loops over the router's scores: the device's must be exactly the
// CPU's. Weights and losses are the device's arithmetic: within tolerance.
void expect_same_routing(const moe::GateOutput& dev, const moe::GateOutput& cpu, Tol tol, const std::string& what) {
  SCOPED_TRACE(what);
  for (auto [d, c, name] : {std::tuple{&dev.token, &cpu.token, "token"}, std::tuple{&dev.expert, &cpu.expert, "expert"},
                            std::tuple{&dev.slot, &cpu.slot, "slot"}})
    expect_matches(*d, *c, kExact, name);
  EXPECT_EQ(dev.kept_per_expert, cpu.kept_per_expert);
  EXPECT_EQ(dev.exp_counts, cpu.exp_counts);
  EXPECT_EQ(dev.capacity, cpu.capacity);
  EXPECT_EQ(dev.dropped, cpu.dropped);
  EXPECT_EQ(dev.dropped_tokens, cpu.dropped_tokens);
  expect_matches(dev.weight, cpu.weight, tol, "combine weights");
  expect_matches(dev.l_aux, cpu.l_aux, tol, "l_aux");
  expect_matches(dev.z_loss, cpu.z_loss, tol, "z_loss");
  EXPECT_NEAR(dev.entropy, cpu.entropy, tol.atol + tol.rtol * std::abs(cpu.entropy));
}

// ------------------------------------------------------------------------ margins
// A CUDA result differs from the CPU's in the last bits (~1e-6 here). That flips a decision
// only where the CPU's value sits that close to a kink or a tie; the cases' seeds are chosen
// so that none does, and CudaModulesHarness checks it on the CPU.

// The smallest gap between two router logits of a token (top-k choices) and between two
// tokens' probabilities for one expert (capacity ranking): logits (S, E).
double routing_margin(const Tensor& logits) {
  const int64_t S = logits.size(0), E = logits.size(1);
  const std::vector<double> L = logits.to_vector<double>(), P = softmax(logits, -1).to_vector<double>();
  double m = INFINITY;
  auto min_gap = [&](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    for (size_t i = 1; i < v.size(); ++i) m = std::min(m, v[i] - v[i - 1]);
  };
  for (int64_t s = 0; s < S; ++s) min_gap(std::vector<double>(L.begin() + s * E, L.begin() + (s + 1) * E));
  for (int64_t e = 0; e < E; ++e) {
    std::vector<double> col;
    for (int64_t s = 0; s < S; ++s) col.push_back(P[size_t(s * E + e)]);
    min_gap(col);
  }
  return m;
}

double router_margin(moe::TopKGate& gate, const Tensor& x) {
  autograd::NoGradGuard no_grad;
  return routing_margin(linear(x.reshape({-1, gate.wg->in_features}), gate.wg->weight));
}

// The Net's pre-ReLU values from 0 and each 2×2 pooling window's positive maximum from its
// runner-up, on the CPU; the MoE layers' routing margins.
double net_margin(cifar10::Net& net, const Tensor& x) {
  autograd::NoGradGuard no_grad;
  double m = INFINITY;
  auto pre_relu = [&](const Tensor& t) {
    for (double v : t.to_vector<double>()) m = std::min(m, std::abs(v));
    return relu(t);
  };
  auto pool = [&](const Tensor& t) {   // (N, C, H, W), H and W even
    const std::vector<double> v = t.to_vector<double>();
    const int64_t H = t.size(2), W = t.size(3);
    for (int64_t p = 0; p < t.size(0) * t.size(1); ++p)
      for (int64_t i = 0; i < H; i += 2)
        for (int64_t j = 0; j < W; j += 2) {
          const double* b = v.data() + p * H * W;
          std::vector<double> w = {b[i * W + j], b[i * W + j + 1], b[(i + 1) * W + j], b[(i + 1) * W + j + 1]};
          std::sort(w.rbegin(), w.rend());
          if (w[0] > 0) m = std::min(m, w[0] - w[1]);
        }
    return net.pool->forward(t);
  };
  Tensor h = pool(pre_relu(net.conv1->forward(x)));
  h = pool(pre_relu(net.conv2->forward(h))).flatten(1);
  h = pre_relu(net.fc1->forward(h));
  h = pre_relu(net.fc2->forward(h));
  for (size_t i = 0; i < net.num_moe_layers(); ++i) {
    m = std::min(m, router_margin(*net.layer(i).gate, h));
    h = net.layer(i).forward(h);
  }
  return m;
}

// The Transformer's MoE layer (the last block, top-2, dropless): its first choice ranks the
// router logits, its second the logits plus the Gumbel noise the model's generator will draw.
double llm_margin(llm::Transformer& t, const Tensor& idx) {
  autograd::NoGradGuard no_grad;
  const int64_t T = idx.size(1);
  Tensor x = t.wte->forward(idx);   // (B, T, C)
  if (t.wpe) {
    std::vector<int64_t> pos(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) pos[size_t(i)] = i;
    x = x + t.wpe->forward(from_vector<int64_t>(pos, {T}));
  }
  for (size_t l = 0; l + 1 < t.h->size(); ++l) x = (*t.h)[l].forward(x);
  auto& last = static_cast<llm::Block&>((*t.h)[t.h->size() - 1]);
  Tensor hidden = last.norm_2->forward(x + last.attn->forward(last.norm_1->forward(x)));
  Tensor logits = linear(hidden.reshape({-1, t.config().n_embd}), last.moe->gate->wg->weight);   // (S, E)
  Generator g = t.generator();   // a copy: the state the gate will draw from (f64, as moe/gate.cpp)
  Tensor noise = raw::gumbel(logits.shape(), DType::f64, Device::cpu(), &g);
  return std::min(routing_margin(logits), routing_margin(logits.to(DType::f64) + noise));
}

// ------------------------------------------------------------------------ nn layers

Factory linear_module() {
  return [] { return std::make_shared<nn::Linear>(12, 7); };
}

void case_linear(Device d) {
  expect_module_matches_cpu(d, linear_module(), {rnd({3, 4, 12}, 10)});
  expect_module_matches_cpu(d, [] { return std::make_shared<nn::Linear>(12, 7, /*bias=*/false); }, {rnd({5, 12}, 11)});
}

void case_conv2d(Device d) {
  expect_module_matches_cpu(d, [] { return std::make_shared<nn::Conv2d>(3, 4, 3, /*stride=*/2, /*padding=*/1); },
                            {rnd({2, 3, 7, 7}, 20)});
  expect_module_matches_cpu(d, [] { return std::make_shared<nn::Conv2d>(4, 5, 5); }, {rnd({2, 4, 9, 8}, 21)});
}

void case_max_pool2d(Device d) {
  // Distinct values 0.01 apart: no ties. Overlapping windows add several gradients into one
  // input, in a fixed order on both devices: values, and gradients, are exact.
  Generator g(30);
  std::vector<float> v;
  for (int64_t p : g.permutation(2 * 3 * 8 * 8)) v.push_back(0.01f * float(p) - 1.0f);
  const Tensor x = from_vector<float>(v, {2, 3, 8, 8});
  for (auto [k, s, p] : {std::tuple{2, 2, 0}, std::tuple{3, 2, 1}}) {
    SCOPED_TRACE(::testing::Message() << "kernel " << k << " stride " << s << " padding " << p);
    expect_module_matches_cpu(d, [k = k, s = s, p = p] { return std::make_shared<nn::MaxPool2d>(k, s, p); }, {x},
                              plain_forward, {kExact});
  }
}

// Norm scales start at 1 and biases at 0, values that hide a kernel ignoring them: redrawn.
Factory randomised(Factory make) {
  return [make] {
    auto m = make();
    Generator g(40);
    for (auto& [name, p] : m->named_parameters()) raw::copy_(p, raw::uniform(p.shape(), 0.5, 1.5, p.dtype(), p.device(), &g));
    return m;
  };
}

void case_norms(Device d) {
  const Tensor x = rnd({3, 4, 24}, 41, -2, 3);
  expect_module_matches_cpu(d, randomised([] { return std::make_shared<nn::LayerNorm>(24); }), {x});
  expect_module_matches_cpu(d, randomised([] { return std::make_shared<nn::LayerNorm>(24, 1e-5, /*bias=*/false); }), {x});
  expect_module_matches_cpu(d, randomised([] { return std::make_shared<nn::RMSNorm>(24); }), {x});
}

void case_embedding(Device d) {
  // index_select forward, index_add backward (repeated ids sum in the CPU's order): exact.
  expect_module_matches_cpu(d, [] { return std::make_shared<nn::Embedding>(10, 6); }, {ids({3, 7}, 10, 50)},
                            plain_forward, {kExact});
}

void case_bad_ids(Device d) {
  // The ids are checked on the host before any kernel runs: the same message on every device,
  // naming the id, its position and the vocabulary (or the class count).
  SeedGuard seeded(1);
  nn::Embedding cpu(10, 4), dev(10, 4);
  dev.to(d);
  for (int64_t bad : {10, -3}) {
    const Tensor idx = from_vector<int64_t>({1, 2, 3, bad, 4, 5}, {2, 3});
    expect_error([&] { dev.forward(raw::to_device(idx, d)); },
                 {"id " + std::to_string(bad), "position [1, 0]", "vocabulary of 10"});
    EXPECT_EQ(error_of([&] { dev.forward(raw::to_device(idx, d)); }), error_of([&] { cpu.forward(idx); }));
  }
  const Tensor logits = rnd({3, 5}, 51), target = from_vector<int64_t>({0, 7, 1}, {3});
  expect_error([&] { nn::cross_entropy(raw::to_device(logits, d), raw::to_device(target, d)); },
               {"target 7", "position 1", "5 classes"});
  EXPECT_EQ(error_of([&] { nn::cross_entropy(raw::to_device(logits, d), raw::to_device(target, d)); }),
            error_of([&] { nn::cross_entropy(logits, target); }));
}

void case_attention(Device d) {
  for (bool rotary : {false, true}) {
    SCOPED_TRACE(rotary ? "rotary" : "learned positions");
    expect_module_matches_cpu(
        d, [rotary] { return std::make_shared<nn::CausalSelfAttention>(16, 2, /*bias=*/true, 0.0, rotary, 16); },
        {rnd({2, 5, 16}, 60)});
  }
}

void case_mlps(Device d) {
  const Tensor x = rnd({2, 3, 8}, 70, -2, 2);
  expect_module_matches_cpu(d, [] { return std::make_shared<nn::Mlp>(8, 32); }, {x});
  expect_module_matches_cpu(d, [] { return std::make_shared<nn::SwiGluMlp>(8, 24); }, {x});
}

void case_cross_entropy(Device d) {
  // The loss alone (a module without parameters) and after a Linear; targets with
  // ignore_index and label smoothing.
  const Tensor logits = rnd({6, 5}, 80, -3, 3), target = from_vector<int64_t>({0, 4, -100, 2, 2, 1}, {6});
  for (double smoothing : {0.0, 0.1}) {
    SCOPED_TRACE(::testing::Message() << "label_smoothing " << smoothing);
    expect_module_matches_cpu(d, [] { return std::make_shared<Module>(); }, {logits, target},
                              [smoothing](Module&, const Inputs& in) { return nn::cross_entropy(in[0], in[1], -100, smoothing); });
    expect_module_matches_cpu(d, [] { return std::make_shared<nn::Linear>(4, 5); }, {rnd({6, 4}, 81), target},
                              [smoothing](Module& m, const Inputs& in) {
                                return nn::cross_entropy(m.forward(in[0]), in[1], -100, smoothing);
                              });
  }
}

// ------------------------------------------------------------------------ MoE

constexpr int64_t kHidden = 6;

moe::GateConfig gate_config(int64_t k, bool drop) {
  moe::GateConfig c;
  c.num_experts = 4;
  c.k = k;
  c.capacity_factor = 0.5;   // C = ceil(k·S/E·0.5): about half the assignments dropped
  c.min_capacity = 0;
  c.drop_tokens = drop;
  c.top2_2nd_expert_sampling = false;   // k=2's Gumbel draws would come from the gate's seed too,
                                        // but hide the routing margin from routing_margin()
  c.z_loss_coef = 0.1;
  c.seed = 7;                           // k=1: random token selection, the same draws on both sides
  return c;
}

// Decisive routing: router weights ×3 (as test_moe.cpp), drawn under the harness's seed.
void sharpen(moe::TopKGate& gate) { raw::mul_(gate.wg->weight, 3.0); }

// k=1 also with jitter noise: the gate draws its multipliers on the input's device from its
// own generator, and Philox gives both devices the same numbers for a seed.
struct GateCase {
  int64_t k;
  bool jitter;
};
const GateCase kGateCases[] = {{1, false}, {1, true}, {2, false}, {3, false}};
Tensor gate_input() { return rnd({16, kHidden}, 90, -2, 2); }

Factory gate_module(GateCase c) {
  return [c] {
    moe::GateConfig cfg = gate_config(c.k, true);
    if (c.jitter) cfg.noisy_gate_policy = moe::NoisyGatePolicy::jitter;
    auto g = std::make_shared<moe::TopKGate>(kHidden, cfg);
    sharpen(*g);
    return g;
  };
}

void case_gate(Device d) {
  for (GateCase c : kGateCases) {
    SCOPED_TRACE(::testing::Message() << "k=" << c.k << (c.jitter ? " jitter" : ""));
    std::vector<moe::GateOutput> seen;   // CPU, then device
    expect_module_matches_cpu(d, gate_module(c), {gate_input()}, [&seen](Module& m, const Inputs& in) {
      seen.push_back(static_cast<moe::TopKGate&>(m).route(in[0]));
      const moe::GateOutput& g = seen.back();
      return cat({g.weight, g.l_aux.reshape({1}), g.z_loss.reshape({1})});   // what backward reaches
    });
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_GT(seen[0].dropped, 0);
    EXPECT_EQ(seen[1].token.device(), d);
    expect_same_routing(seen[1], seen[0], kF32, "routing");
  }
}

// An expert with a kink-free nonlinearity: Linear, tanh, Linear.
moe::ExpertFactory mlp_expert() {
  return [] {
    auto s = std::make_shared<nn::Sequential>();
    s->push_back(std::make_shared<nn::Linear>(kHidden, 2 * kHidden));
    s->push_back(std::make_shared<nn::Tanh>());
    s->push_back(std::make_shared<nn::Linear>(2 * kHidden, kHidden));
    return s;
  };
}

Factory moe_layer(int64_t k, bool drop, bool residual, const moe::ExpertFactory& expert = mlp_expert()) {
  return [=] {
    moe::MoEConfig c;
    c.gate = gate_config(k, drop);
    c.use_residual = residual;
    auto m = std::make_shared<moe::MoE>(kHidden, expert, c);
    // Experts start as copies of one; distinct values make a misrouted token visible.
    Generator g(100);
    for (auto& [name, p] : m->experts->named_parameters())
      raw::copy_(p, raw::uniform(p.shape(), -0.8, 0.8, p.dtype(), p.device(), &g));
    sharpen(*m->gate);
    return m;
  };
}

// Output + l_aux + z-loss, so that backward reaches the router through both.
Tensor moe_forward(Module& m, const Inputs& in) {
  Tensor y = m.forward(in[0]);
  const moe::MoEOutput& o = static_cast<moe::MoE&>(m).last();
  return add(y, add(o.l_aux, o.z_loss));
}

const moe::MoE& as_moe(const Side& s) { return static_cast<const moe::MoE&>(*s.module); }

Tensor moe_input() { return rnd({2, 9, kHidden}, 110, -2, 2); }   // S = 18 tokens

void case_moe_layer(Device d) {
  const Tensor x = moe_input();
  for (int64_t k : {1, 2, 3})
    for (bool drop : {true, false})
      for (bool residual : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "k=" << k << (drop ? " dropping" : " dropless")
                                          << (residual ? " PR-MoE" : ""));
        Run r = expect_module_matches_cpu(d, moe_layer(k, drop, residual), {x}, moe_forward);
        const moe::GateOutput &gc = as_moe(r.cpu).last().routing, &gd = as_moe(r.dev).last().routing;
        EXPECT_EQ(gc.dropped > 0, drop);
        expect_same_routing(gd, gc, kF32, "routing");
        EXPECT_EQ(as_moe(r.dev).last().exp_counts, as_moe(r.cpu).last().exp_counts);
      }
}

// ------------------------------------------------------------------------ models

// The tutorial's gate (k=1, capacity factor 1, min_capacity 4, random token selection) on a
// pyramid of two MoE layers. (With drops, a dropped token's zero row would reach the second
// router as an exact tie: harmless, as both devices break it alike, but it hides the margin.)
cifar10::MoeOptions cifar_moe() {
  cifar10::MoeOptions o;
  o.num_experts = {2, 4};
  o.gate.seed = 5;
  return o;
}

// Four images: enough tokens for min_capacity. About 13k ReLU inputs and 3k pooling windows
// make values within ~1e-5 of a kink common; this seed's nearest is 3e-5 away (checked below).
Tensor cifar_input() { return rnd({4, 3, 32, 32}, 138); }

void case_cifar_net(Device d) {
  const Tensor x = cifar_input();
  for (bool with_moe : {false, true}) {
    SCOPED_TRACE(with_moe ? "MoE" : "dense");
    const Factory make = [with_moe] {
      const cifar10::MoeOptions o = cifar_moe();
      return std::make_shared<cifar10::Net>(with_moe ? &o : nullptr);
    };
    Run r = expect_module_matches_cpu(d, make, {x});   // logits (4, 10)
    auto& net_c = static_cast<cifar10::Net&>(*r.cpu.module);
    auto& net_d = static_cast<cifar10::Net&>(*r.dev.module);
    EXPECT_EQ(net_c.num_moe_layers(), with_moe ? 2u : 0u);
    for (size_t i = 0; i < net_c.num_moe_layers(); ++i)
      expect_same_routing(net_d.layer(i).last().routing, net_c.layer(i).last().routing, kF32,
                          "MoE layer " + std::to_string(i));
  }
}

// test_llm.cpp's tiny model, vocabulary 11 (layer 2 MoE when experts > 1: top-2, dropless,
// second expert sampled with the model's generator).
llm::ModelConfig tiny_llm(const std::string& arch, int64_t experts) { return testing::tiny_llm_config(arch, experts, 11); }

Factory transformer(const llm::ModelConfig& cfg) {
  return [cfg] { return std::make_shared<llm::Transformer>(cfg, std::make_shared<Generator>(130)); };
}

// Next-token loss + 0.01·(l_aux + z-loss), as mox-llm trains.
Tensor llm_loss(Module& m, const Inputs& in) {
  auto& t = static_cast<llm::Transformer&>(m);
  Tensor logits = t.forward(in[0]);   // (B, T, V)
  return nn::cross_entropy(logits.reshape({-1, t.config().vocab_size}), in[1].reshape({-1})) + t.aux_loss(0.01);
}

Tensor llm_ids() { return ids({2, 8}, 11, 131); }

void case_llm(Device d) {
  const Tensor idx = llm_ids(), targets = ids({2, 8}, 11, 132);
  for (const std::string arch : {"gpt", "llama"})
    for (int64_t experts : {1, 4}) {
      SCOPED_TRACE(::testing::Message() << arch << ", " << experts << " experts");
      Run r = expect_module_matches_cpu(d, transformer(tiny_llm(arch, experts)), {idx, targets}, llm_loss);
      auto& tc = static_cast<llm::Transformer&>(*r.cpu.module);
      auto& td = static_cast<llm::Transformer&>(*r.dev.module);
      ASSERT_EQ(tc.moe_layers().size(), experts > 1 ? 1u : 0u);
      for (size_t i = 0; i < tc.moe_layers().size(); ++i)
        expect_same_routing(td.moe_layers()[i]->last().routing, tc.moe_layers()[i]->last().routing, kF32, "MoE layer");
    }
}

// ------------------------------------------------------------------------ optimizers

void case_optimizer_step(Device d) {
  // Two steps from the harness's gradients: the second reads the state the first wrote
  // (momentum buffer; exp_avg, exp_avg_sq). Parameters and state compared by name.
  for (bool adamw : {false, true}) {
    SCOPED_TRACE(adamw ? "AdamW" : "SGD momentum");
    Run r = expect_module_matches_cpu(d, [] { return std::make_shared<nn::Mlp>(8, 16); }, {rnd({4, 8}, 140)});
    auto make = [adamw](Module& m) -> std::unique_ptr<optim::Optimizer> {
      if (adamw) {
        optim::AdamWOptions o;
        o.lr = 1e-2;
        return std::make_unique<optim::AdamW>(m.named_parameters(), o);
      }
      optim::SgdOptions o;
      o.lr = 0.1;
      o.momentum = 0.9;
      o.weight_decay = 1e-2;
      return std::make_unique<optim::Sgd>(m.named_parameters(), o);
    };
    std::unique_ptr<optim::Optimizer> oc = make(*r.cpu.module), od = make(*r.dev.module);
    for (int step = 0; step < 2; ++step) {
      oc->step();
      od->step();
    }
    expect_same_tensors(r.dev.module->named_parameters(), r.cpu.module->named_parameters(), kF32, "parameter");
    expect_same_tensors(od->state_dict().tensors, oc->state_dict().tensors, kF32, "optimizer state");
  }
}

// ------------------------------------------------------------------------ 16-bit

Factory half_moe_layer(bool residual) {
  return moe_layer(2, true, residual, [] { return std::make_shared<nn::Linear>(kHidden, kHidden); });
}
Tensor half_moe_input() { return rnd({16, kHidden}, 151, -2, 2); }

void case_half_forward(Device d) {
  for (DType dt : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dt));
    Options o;
    o.dtype = dt;
    o.tol = dt == DType::bf16 ? kBf16 : kF16;
    o.backward = false;
    expect_module_matches_cpu(d, linear_module(), {rnd({3, 4, 12}, 150)}, plain_forward, o);
    // The router runs in f32 on the rounded values on both sides: the same decisions.
    for (bool residual : {false, true}) {
      Run r = expect_module_matches_cpu(d, half_moe_layer(residual), {half_moe_input()}, plain_forward, o);
      expect_same_routing(as_moe(r.dev).last().routing, as_moe(r.cpu).last().routing, kF32, "routing");
    }
  }
}

// ------------------------------------------------------------------------ the CUDA tests

const Device kCuda = Device::cuda();

TEST(CudaModules, Linear) { REQUIRE_CUDA(); case_linear(kCuda); }
TEST(CudaModules, Conv2d) { REQUIRE_CUDA(); case_conv2d(kCuda); }
TEST(CudaModules, MaxPool2dExact) { REQUIRE_CUDA(); case_max_pool2d(kCuda); }
TEST(CudaModules, LayerNormAndRmsNorm) { REQUIRE_CUDA(); case_norms(kCuda); }
TEST(CudaModules, EmbeddingExact) { REQUIRE_CUDA(); case_embedding(kCuda); }
TEST(CudaModules, OutOfRangeIdsGiveTheCpuError) { REQUIRE_CUDA(); case_bad_ids(kCuda); }
TEST(CudaModules, CausalSelfAttention) { REQUIRE_CUDA(); case_attention(kCuda); }
TEST(CudaModules, MlpAndSwiGlu) { REQUIRE_CUDA(); case_mlps(kCuda); }
TEST(CudaModules, CrossEntropy) { REQUIRE_CUDA(); case_cross_entropy(kCuda); }
TEST(CudaModules, TopKGateRoutesExactlyAsTheCpu) { REQUIRE_CUDA(); case_gate(kCuda); }
TEST(CudaModules, MoELayerDroppingDroplessResidual) { REQUIRE_CUDA(); case_moe_layer(kCuda); }
TEST(CudaModules, CifarNetDenseAndMoE) { REQUIRE_CUDA(); case_cifar_net(kCuda); }
TEST(CudaModules, LlmLossAndGradients) { REQUIRE_CUDA(); case_llm(kCuda); }
TEST(CudaModules, SgdMomentumAndAdamWSteps) { REQUIRE_CUDA(); case_optimizer_step(kCuda); }
TEST(CudaModules, HalfPrecisionForward) { REQUIRE_CUDA(); case_half_forward(kCuda); }

// ------------------------------------------------------------------------ the harness, on the CPU

TEST(CudaModulesHarness, EveryCaseRunsWithTheCpuAsTheDevice) {
  // A fresh module with the reference's state loaded by name, so this checks the copying,
  // the matching by name and the comparisons of every case, and that the cases run at all.
  const std::vector<std::pair<const char*, void (*)(Device)>> cases = {
      {"linear", case_linear},         {"conv2d", case_conv2d},       {"max_pool2d", case_max_pool2d},
      {"norms", case_norms},           {"embedding", case_embedding}, {"bad ids", case_bad_ids},
      {"attention", case_attention},   {"mlps", case_mlps},           {"cross_entropy", case_cross_entropy},
      {"gate", case_gate},             {"moe layer", case_moe_layer}, {"cifar net", case_cifar_net},
      {"llm", case_llm},               {"optimizer", case_optimizer_step},
      {"half forward", case_half_forward}};
  for (auto [name, run] : cases) {
    SCOPED_TRACE(name);
    run(Device::cpu());
  }
}

// The failures a statement reports, without failing the test.
std::vector<std::string> failures_of(const std::function<void()>& f) {
  ::testing::TestPartResultArray results;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
    f();
  }
  std::vector<std::string> out;
  for (int i = 0; i < results.size(); ++i) out.push_back(results.GetTestPartResult(i).message());
  return out;
}

TEST(CudaModulesHarness, ReportsADifferingOrMissingGradientByName) {
  // The second (device-side) call of forward changes only the bias's gradient — by a term
  // whose value is zero — or cuts the bias off the graph: one failure, naming the bias.
  for (bool missing : {false, true}) {
    SCOPED_TRACE(missing ? "missing" : "differing");
    int calls = 0;
    const std::vector<std::string> f = failures_of([&] {
      expect_module_matches_cpu(Device::cpu(), linear_module(), {rnd({3, 12}, 160)}, [&](Module& m, const Inputs& in) {
        auto& lin = static_cast<nn::Linear&>(m);
        if (++calls == 1) return lin.forward(in[0]);
        if (missing) return linear(in[0], lin.weight, lin.bias.detach());
        return lin.forward(in[0]) + (lin.bias - lin.bias.detach()) * 0.5;
      });
    });
    ASSERT_EQ(f.size(), 1u) << (f.empty() ? "" : f[0]);
    EXPECT_CONTAINS(f[0], "gradient of bias");
    EXPECT_CONTAINS(f[0], missing ? "defined on the CPU side only" : "elements differ");
  }
  // A different output: the output, the input's gradient and the weight's are reported.
  int calls = 0;
  const std::vector<std::string> f = failures_of([&] {
    expect_module_matches_cpu(Device::cpu(), linear_module(), {rnd({3, 12}, 161)}, [&](Module& m, const Inputs& in) {
      return ++calls == 1 ? m.forward(in[0]) : m.forward(in[0] * 1.01);
    });
  });
  ASSERT_EQ(f.size(), 3u);
  EXPECT_CONTAINS(f[0], "output");
  EXPECT_CONTAINS(f[1], "gradient of input 0");
  EXPECT_CONTAINS(f[2], "gradient of weight");
}

TEST(CudaModulesHarness, CaseInputsAreFarFromKinksAndTies) {
  // A CUDA result differs from the CPU's by ~1e-6 here; margins of 1e-5 and more leave every
  // ReLU sign, pooling argmax and routing decision of the CUDA cases as the CPU's.
  const double kMargin = 1e-5;
  for (GateCase c : kGateCases) {
    SeedGuard seeded(Options{}.seed);   // as the harness builds them
    std::shared_ptr<Module> m = gate_module(c)();
    auto& gate = static_cast<moe::TopKGate&>(*m);
    Tensor x = gate_input();
    if (c.jitter)   // the multipliers of the gate's first call
      x = x * raw::uniform(x.shape(), 1 - 1e-2, 1 + 1e-2, DType::f32, Device::cpu(), &gate.generator());
    EXPECT_GT(router_margin(gate, x), kMargin) << "gate k=" << c.k << (c.jitter ? " jitter" : "");
  }
  for (int64_t k : {1, 2, 3})
    for (bool drop : {true, false})
      for (bool residual : {false, true}) {
        SeedGuard seeded(Options{}.seed);
        auto m = std::static_pointer_cast<moe::MoE>(moe_layer(k, drop, residual)());
        EXPECT_GT(router_margin(*m->gate, moe_input()), kMargin) << "MoE layer k=" << k;
      }
  for (DType dt : {DType::bf16, DType::f16})
    for (bool residual : {false, true}) {
      SeedGuard seeded(Options{}.seed);
      std::shared_ptr<Module> m = half_moe_layer(residual)();
      round_state(*m, dt);
      EXPECT_GT(router_margin(*static_cast<moe::MoE&>(*m).gate, rounded(half_moe_input(), dt)), kMargin)
          << dtype_name(dt) << " MoE layer";
    }
  for (const std::string arch : {"gpt", "llama"}) {
    SeedGuard seeded(Options{}.seed);
    auto m = std::static_pointer_cast<llm::Transformer>(transformer(tiny_llm(arch, 4))());
    EXPECT_GT(llm_margin(*m, llm_ids()), kMargin) << arch << " with an MoE layer";
  }
  for (bool with_moe : {false, true}) {
    SeedGuard seeded(Options{}.seed);
    const cifar10::MoeOptions o = cifar_moe();
    cifar10::Net net(with_moe ? &o : nullptr);
    EXPECT_GT(net_margin(net, cifar_input()), kMargin) << (with_moe ? "MoE" : "dense") << " Net";
  }
}

}  // namespace
}  // namespace mox
