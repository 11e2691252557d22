// test_grouped_gemm.cpp — grouped_linear (autograd/functions_grouped.cpp), the backends'
// grouped_gemm, and the MoE layer's grouped experts (moe/grouped_experts.h).
//
// grouped_linear against one linear() per group: bit for bit on the CPU (the CPU grouped GEMM
// is the same single GEMM per group) in f32, f16 and bf16, forward and every gradient, with
// empty groups and groups large enough for oneDNN; float64 gradchecks w.r.t. x, every weight
// and bias (empty groups, one group); errors naming the group and shapes. The MoE layer with
// grouped experts against the same layer run expert by expert (MoEConfig::grouped_gemm =
// false): Linear experts bit for bit, Mlp experts bit for bit without bias and
// within 1e-5 with it (the c_fc bias enters the GEMM's sum), Sequential (GELU) experts within
// 1e-5 (see the test), x's gradient within 1e-6, for k = 1, 2, 3, dropping and
// dropless, PR-MoE, f16/bf16 experts, Mlp dropout in training; which expert types are
// recognised (not a quantized swap, SwiGluMlp, a Linear subclass). CUDA (skipped without a
// GPU): the CUDA grouped GEMM forward and backward against the CPU in f32/f64/f16/bf16.
#include <gtest/gtest.h>

#include <cmath>

#include "moe/experts.h"
#include "moe/grouped_experts.h"
#include "moe/moe_layer.h"
#include "nn/basic.h"
#include "nn/container.h"
#include "nn/mlp.h"
#include "nn/quantized.h"
#include "tests/cuda_test.h"
#include "tests/expect_error.h"
#include "tests/gradcheck.h"

using namespace mox;
using mox::testing::expect_error;

namespace {

struct Problem {
  Tensor x;                          // (N, in), requires grad
  std::vector<int64_t> counts;
  std::vector<Tensor> weights;       // (out, in) each, require grad
  std::vector<Tensor> biases;        // (out) each or none, require grad
};

Problem make_problem(const std::vector<int64_t>& counts, int64_t in, int64_t out, bool bias, DType dt, uint64_t seed) {
  Generator gen(seed);
  Problem p;
  p.counts = counts;
  int64_t N = 0;
  for (int64_t n : counts) N += n;
  auto leaf = [&](const Shape& s) {
    return raw::uniform(s, -1, 1, DType::f32, Device::cpu(), &gen).to(dt).set_requires_grad(true);
  };
  p.x = leaf({N, in});
  for (size_t g = 0; g < counts.size(); ++g) {
    p.weights.push_back(leaf({out, in}));
    if (bias) p.biases.push_back(leaf({out}));
  }
  return p;
}

std::vector<Tensor> leaves(const Problem& p) {
  std::vector<Tensor> v{p.x};
  v.insert(v.end(), p.weights.begin(), p.weights.end());
  v.insert(v.end(), p.biases.begin(), p.biases.end());
  return v;
}

void clear_grads(const Problem& p) {
  for (const Tensor& t : leaves(p)) t.impl()->grad.reset();
}

// Σ y·w backward; returns the output and every leaf's gradient (undefined stays undefined).
std::vector<Tensor> run(const Problem& p, const Tensor& y, const Tensor& w) {
  sum(mul(y, w)).backward();
  std::vector<Tensor> r{y.detach()};
  for (const Tensor& t : leaves(p)) r.push_back(t.grad());
  clear_grads(p);
  return r;
}

// The reference: one linear() per non-empty group, cat.
Tensor per_group(const Problem& p) {
  std::vector<Tensor> ys;
  int64_t off = 0;
  for (size_t g = 0; g < p.counts.size(); ++g) {
    if (p.counts[g] > 0)
      ys.push_back(linear(p.x.narrow(0, off, p.counts[g]), p.weights[g], p.biases.empty() ? Tensor() : p.biases[g]));
    off += p.counts[g];
  }
  return cat(ys, 0);
}

void expect_bitwise(const std::vector<Tensor>& got, const std::vector<Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].defined(), want[i].defined()) << "tensor " << i;
    if (!got[i].defined()) continue;
    EXPECT_EQ(got[i].dtype(), want[i].dtype()) << "tensor " << i;
    EXPECT_EQ(got[i].to_vector<double>(), want[i].to_vector<double>()) << "tensor " << i;
  }
}

}  // namespace

TEST(GroupedLinear, EqualsPerGroupLinearBitForBitOnCpu) {
  struct Case { std::vector<int64_t> counts; int64_t in, out; };
  // The last case's big group passes the oneDNN size switch (≥ 2^21 multiply-adds).
  const std::vector<Case> cases = {{{3, 0, 5, 1}, 7, 4}, {{6}, 5, 3}, {{0, 2, 0}, 4, 4}, {{2, 300, 0, 17}, 96, 80}};
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    for (const Case& c : cases) {
      for (bool bias : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " groups=" << c.counts.size() << " in=" << c.in
                                          << " bias=" << bias);
        Problem p = make_problem(c.counts, c.in, c.out, bias, dt, 11);
        Tensor w = raw::normal({p.x.size(0), c.out}, 0, 1).to(dt);
        std::vector<Tensor> got = run(p, grouped_linear(p.x, p.counts, p.weights, p.biases), w);
        std::vector<Tensor> want = run(p, per_group(p), w);
        expect_bitwise(got, want);
        for (size_t g = 0; g < c.counts.size(); ++g)
          if (c.counts[g] == 0) {
            EXPECT_FALSE(got[2 + g].defined()) << "an empty group's weight gets no gradient";
          }
      }
    }
  }
}

TEST(GroupedLinear, GradcheckFloat64WrtInputEveryWeightAndBias) {
  for (const std::vector<int64_t>& counts : std::vector<std::vector<int64_t>>{{2, 0, 3}, {4}, {0, 3, 0}, {1, 2}}) {
    for (bool bias : {true, false}) {
      SCOPED_TRACE(::testing::Message() << "groups=" << counts.size() << " bias=" << bias);
      Problem p = make_problem(counts, 3, 2, bias, DType::f64, 5);
      const size_t G = counts.size();
      auto fn = [&](const std::vector<Tensor>& v) {
        std::vector<Tensor> ws(v.begin() + 1, v.begin() + 1 + long(G)), bs(v.begin() + 1 + long(G), v.end());
        return grouped_linear(v[0], counts, ws, bs);
      };
      EXPECT_TRUE(mox::testing::gradcheck(fn, leaves(p)));
    }
  }
  // A transposed (non-contiguous) weight and input are read through their strides.
  Problem p = make_problem({2, 3}, 4, 3, true, DType::f64, 9);
  Tensor xt = mox::testing::transposed_leaf(p.x);
  Tensor w1t = mox::testing::transposed_leaf(p.weights[1]);
  auto fn = [&](const std::vector<Tensor>& v) { return grouped_linear(v[0], {2, 3}, {v[1], v[2]}, {v[3], v[4]}); };
  EXPECT_TRUE(mox::testing::gradcheck(fn, {xt, p.weights[0], w1t, p.biases[0], p.biases[1]}));
}

TEST(GroupedLinear, MismatchesNameTheGroupAndShapes) {
  Problem p = make_problem({2, 3}, 4, 3, true, DType::f32, 1);
  expect_error([&] { grouped_linear(p.x, {2, 2}, p.weights, p.biases); }, {"sum to 4", "[5, 4]", "5 rows"});
  expect_error([&] { grouped_linear(p.x, {6, -1}, p.weights, p.biases); }, {"group 1", "negative", "-1"});
  expect_error([&] { grouped_linear(p.x, {5}, p.weights, {}); }, {"1 group sizes but 2 weights"});
  expect_error([&] { grouped_linear(p.x, {2, 3}, p.weights, {p.biases[0]}); }, {"1 biases for 2 groups"});
  expect_error([&] { grouped_linear(p.x, {2, 3}, {p.weights[0], zeros({3, 5})}, p.biases); },
               {"weight of group 1", "[3, 5]", "[3, 4]", "[5, 4]"});
  expect_error([&] { grouped_linear(p.x, {2, 3}, p.weights, {p.biases[0], zeros({4})}); },
               {"bias of group 1", "[4]", "[3]"});
  expect_error([&] { grouped_linear(p.x, {2, 3}, {p.weights[0], p.weights[1].to(DType::f64)}, p.biases); },
               {"weight of group 1", "f64", "f32", "dtype and device"});
  expect_error([&] { grouped_linear(p.x, {2, 3}, {p.weights[0], Tensor()}, p.biases); },
               {"weight of group 1", "undefined"});
  expect_error([&] { grouped_linear(p.x.reshape({-1}), {20}, p.weights, p.biases); }, {"(N, in)", "[20]"});
}

// ------------------------------------------------------------------------- CUDA vs CPU

TEST(GroupedGemmCuda, ForwardAndBackwardMatchTheCpu) {
  REQUIRE_CUDA();
  struct Tol { DType dt; double tol; };
  // 48 → 40: every group's rows start on 16-byte boundaries (one grouped cuBLAS call); 7 → 5:
  // most do not, and those problems run through the strided API instead.
  struct Shape { std::vector<int64_t> counts; int64_t in, out; };
  for (const Shape& shape : {Shape{{5, 0, 33, 1, 0, 64}, 48, 40}, Shape{{3, 0, 1, 2, 5}, 7, 5}})
    for (const Tol& t : {Tol{DType::f32, 1e-3}, Tol{DType::f64, 1e-10}, Tol{DType::f16, 1e-2}, Tol{DType::bf16, 3e-2}}) {
      for (bool bias : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(t.dt) << " bias=" << bias << " in=" << shape.in);
        Problem cpu = make_problem(shape.counts, shape.in, shape.out, bias, t.dt, 3);
        Problem gpu;
        gpu.counts = cpu.counts;
        auto to_gpu = [](const Tensor& l) { return mox::testing::cuda(l.detach()).set_requires_grad(true); };
        gpu.x = to_gpu(cpu.x);
        for (const Tensor& w : cpu.weights) gpu.weights.push_back(to_gpu(w));
        for (const Tensor& b : cpu.biases) gpu.biases.push_back(to_gpu(b));
        Tensor w = raw::normal({cpu.x.size(0), shape.out}, 0, 1).to(t.dt);
        std::vector<Tensor> want = run(cpu, grouped_linear(cpu.x, cpu.counts, cpu.weights, cpu.biases), w);
        std::vector<Tensor> got =
            run(gpu, grouped_linear(gpu.x, gpu.counts, gpu.weights, gpu.biases), mox::testing::cuda(w));
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_EQ(got[i].defined(), want[i].defined()) << "tensor " << i;
          if (want[i].defined()) mox::testing::expect_close(got[i], want[i], t.tol, t.tol, str("tensor ", i));
        }
      }
    }
}

// ------------------------------------------------------------------- MoE grouped experts

namespace {

constexpr int64_t kM = 6;   // hidden

using Factory = moe::ExpertFactory;

Factory linear_expert(bool bias = true) {
  return [bias] { return std::make_shared<nn::Linear>(kM, kM, bias); };
}
Factory sequential_expert() {
  return [] {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(kM, 2 * kM), std::make_shared<nn::GELU>(), std::make_shared<nn::Linear>(2 * kM, kM)});
  };
}
Factory mlp_expert(bool bias, double dropout = 0.0, Generator* gen = nullptr) {
  return [=] { return std::make_shared<nn::Mlp>(kM, 3 * kM, bias, dropout, gen); };
}

moe::MoEConfig moe_config(int64_t k, bool drop, bool residual, bool grouped) {
  moe::MoEConfig c;
  c.gate.num_experts = 4;
  c.gate.k = k;
  c.gate.capacity_factor = 0.75;
  c.gate.min_capacity = 0;
  c.gate.use_rts = false;
  c.gate.top2_2nd_expert_sampling = false;
  c.gate.drop_tokens = drop;
  c.use_residual = residual;
  c.grouped_gemm = grouped;
  return c;
}

std::shared_ptr<moe::MoE> make_layer(const Factory& f, const moe::MoEConfig& c) {
  auto m = std::make_shared<moe::MoE>(kM, f, c);
  Generator gen(1234);   // distinct values per expert, the same in both layers
  for (auto& [name, p] : m->named_parameters()) raw::copy_(p, raw::uniform(p.shape(), -0.8, 0.8, DType::f32, Device::cpu(), &gen));
  raw::mul_(m->gate->wg->weight, 3.0);   // decisive routing
  return m;
}

// Output, then the gradients of x and of every parameter in registration order (index 1 is x's).
std::vector<Tensor> layer_run(moe::MoE& m, const Tensor& x0, const Tensor& w) {
  m.zero_grad();
  Tensor x = x0.detach().clone().set_requires_grad(true);
  Tensor y = m.forward(x);   // keeps the routing in m.last()
  add(sum(mul(y, w)).to(DType::f32), m.last().l_aux).backward();
  std::vector<Tensor> r{y.detach(), x.grad()};
  for (auto& [name, p] : m.named_parameters()) r.push_back(p.grad());
  return r;
}

double max_rel(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
  }
  return num / den;
}

// The layer with grouped experts against the same layer run expert by expert: bit for bit when
// `bitwise`, else within 1e-5 relative (f16 1e-2, bf16 3e-2: a few units of their last place).
// x's gradient sums a token's contributions (k experts, router, residual) in another order —
// one index_select instead of one per expert — so it is compared within those tolerances
// (f32: 1e-6) even where the rest is bitwise.
void compare_paths(const Factory& f, bool bitwise, DType dt = DType::f32) {
  Generator gen(77);
  Tensor x = raw::normal({2, 9, kM}, 0, 1, DType::f32, Device::cpu(), &gen).to(dt);   // S = 18
  Tensor w = raw::normal({2, 9, kM}, 0, 1, DType::f32, Device::cpu(), &gen).to(dt);
  struct Case { int64_t k; bool drop; };
  for (Case c : {Case{1, true}, Case{1, false}, Case{2, true}, Case{2, false}, Case{3, true}, Case{3, false}}) {
    for (bool residual : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "k=" << c.k << " drop=" << c.drop << " residual=" << residual << " "
                                        << dtype_name(dt));
      auto grouped = make_layer(f, moe_config(c.k, c.drop, residual, true));
      auto generic = make_layer(f, moe_config(c.k, c.drop, residual, false));
      ASSERT_TRUE(moe::GroupedExperts::recognise(*grouped->experts).has_value());
      for (moe::MoE* m : {grouped.get(), generic.get()}) {   // mixed precision: all but the f32 router
        m->experts->to(dt);
        if (residual) {
          m->mlp->to(dt);
          m->coefficient->to(dt);
        }
      }
      std::vector<Tensor> a = layer_run(*grouped, x, w), b = layer_run(*generic, x, w);
      if (c.drop) {
        EXPECT_GT(grouped->last().routing.dropped, 0);
      }
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].defined(), b[i].defined()) << "tensor " << i;
        if (!a[i].defined()) continue;
        const double tol = dt == DType::bf16 ? 3e-2 : dt == DType::f16 ? 1e-2 : i == 1 ? 1e-6 : 1e-5;
        if (bitwise && i != 1) EXPECT_EQ(a[i].to_vector<double>(), b[i].to_vector<double>()) << "tensor " << i;
        else EXPECT_LT(max_rel(a[i], b[i]), tol) << "tensor " << i;
      }
    }
  }
}

}  // namespace

TEST(MoeGroupedExperts, LinearExpertsEqualThePerExpertPathBitForBit) {
  compare_paths(linear_expert(), true);
  compare_paths(linear_expert(false), true);
}

// Bit for bit too: the GELU runs over one (N, ·) buffer here and one per expert there, so an
// element sits at another position in its loop — which once changed its gradient's last bit
// (FP contraction in the vector body only; tensor/cpu/vector_math.h now spells out each fma).
TEST(MoeGroupedExperts, SequentialExpertsEqualThePerExpertPath) { compare_paths(sequential_expert(), true); }

TEST(MoeGroupedExperts, MlpExpertsEqualThePerExpertPath) {
  compare_paths(mlp_expert(false), true);   // no c_fc bias: the same operations
  compare_paths(mlp_expert(true), false);   // c_fc's bias enters the GEMM's sum, not the GELU pass
}

TEST(MoeGroupedExperts, HalfPrecisionExpertsEqualThePerExpertPath) {
  for (DType dt : {DType::f16, DType::bf16}) {
    compare_paths(linear_expert(), true, dt);
    compare_paths(sequential_expert(), true, dt);
  }
}

TEST(MoeGroupedExperts, MlpDropoutDrawsTheSameMasksInTraining) {
  // One draw over all rows gives each row the mask the expert-by-expert draws give it.
  Generator g1(5), g2(5);
  Generator gen(77);
  Tensor x = raw::normal({18, kM}, 0, 1, DType::f32, Device::cpu(), &gen);
  Tensor w = raw::normal({18, kM}, 0, 1, DType::f32, Device::cpu(), &gen);
  auto grouped = make_layer(mlp_expert(false, 0.3, &g1), moe_config(2, true, false, true));
  auto generic = make_layer(mlp_expert(false, 0.3, &g2), moe_config(2, true, false, false));
  ASSERT_TRUE(moe::GroupedExperts::recognise(*grouped->experts).has_value());
  std::vector<Tensor> a = layer_run(*grouped, x, w), b = layer_run(*generic, x, w);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << "tensor " << i;
    if (a[i].defined()) {
      EXPECT_EQ(a[i].to_vector<double>(), b[i].to_vector<double>()) << "tensor " << i;
    }
  }
  EXPECT_EQ(g1.offset(), g2.offset());
}

TEST(MoeGroupedExperts, RecognisesOnlyExactLinearMlpAndSequentialExperts) {
  using moe::Experts;
  using moe::GroupedExperts;
  struct LinearSubclass : nn::Linear {
    LinearSubclass() : nn::Linear(kM, kM) {}
  };
  auto recognised = [](const Factory& f) { return GroupedExperts::recognise(Experts(f, 3, "g")).has_value(); };
  EXPECT_TRUE(recognised(linear_expert()));
  EXPECT_TRUE(recognised(mlp_expert(true)));
  EXPECT_TRUE(recognised(sequential_expert()));
  EXPECT_FALSE(recognised([] { return std::make_shared<nn::SwiGluMlp>(kM, 2 * kM); }));
  EXPECT_FALSE(recognised([] { return std::make_shared<LinearSubclass>(); }));
  EXPECT_FALSE(recognised([] {   // two dropouts: their draws would interleave differently
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(kM, kM), std::make_shared<nn::Dropout>(0.1), std::make_shared<nn::Linear>(kM, kM),
        std::make_shared<nn::Dropout>(0.1)});
  }));
  // Experts that differ: one in eval mode, or one with other activation settings.
  Experts mixed(sequential_expert(), 3, "g");
  mixed[1].eval();
  EXPECT_FALSE(GroupedExperts::recognise(mixed).has_value());
  mixed[1].train();
  EXPECT_TRUE(GroupedExperts::recognise(mixed).has_value());
  static_cast<nn::GELU&>(static_cast<nn::Sequential&>(mixed[2])[1]).tanh_approximation = true;
  EXPECT_FALSE(GroupedExperts::recognise(mixed).has_value());
  // A quantized expert is no longer a Linear: the layer runs expert by expert.
  auto layer = make_layer(linear_expert(), moe_config(1, true, false, true));
  layer->eval();
  nn::quantize_linears(*layer, [](const std::string& path, const nn::Linear&) { return path.rfind("gate", 0) == 0; });
  EXPECT_FALSE(GroupedExperts::recognise(*layer->experts).has_value());
  autograd::NoGradGuard no_grad;
  Tensor x = raw::normal({10, kM}, 0, 1);
  EXPECT_EQ(layer->forward(x).shape(), Shape({10, kM}));
}

TEST(MoeGroupedExperts, GradientsLandInTheExpertsOwnParameters) {
  auto layer = make_layer(mlp_expert(true), moe_config(2, false, false, true));
  Tensor x = raw::normal({12, kM}, 0, 1);
  sum(layer->forward(x)).backward();
  std::vector<moe::ExpertParameter> params = moe::expert_parameters(*layer);
  ASSERT_EQ(params.size(), size_t(4 * 4));   // 4 experts × (c_fc, c_proj) × (weight, bias)
  for (const moe::ExpertParameter& p : params) {
    const int64_t e = std::stoll(p.name.substr(std::string("experts.").size()));
    EXPECT_EQ(p.param.grad().defined(), layer->last().routing.kept_per_expert[size_t(e)] > 0) << p.name;
  }
}
