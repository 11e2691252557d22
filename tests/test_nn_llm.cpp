// test_nn_llm.cpp — the language-model layers: embedding, layer_norm, rms_norm, bias_gelu,
// scaled_dot_product_attention, apply_rotary (autograd/functions_llm.cpp) and the modules
// Embedding, LayerNorm, RMSNorm, CausalSelfAttention (+ KV cache), Mlp, SwiGluMlp, and
// weight tying through Linear(shared_weight).
//
// Every function has a float64 gradcheck (contiguous and strided inputs); the fused
// kernels are compared with naive references written here from ordinary ops (mean/rsqrt
// norms; GPT-2's tanh GELU; matmul, additive −inf mask, softmax, matmul attention; Hugging
// Face's x·cos + rotate_half(x)·sin), including inputs large enough for the multi-threaded
// paths, and f32 bias_gelu (fast tanh) against f64. The attention module is checked against
// a reference built from its own weights, and token-by-token generation through the KV
// cache against the full causal forward (f32, 1e-5), also after nn::quantize_linears has
// swapped the layers' Linears. Error messages: an out-of-range id names the id, its
// position and the vocabulary size; a full KV cache names its length and block_size.
// Everything is small: the file runs in well under a second.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moe/moe_layer.h"
#include "nn/attention.h"
#include "nn/embedding.h"
#include "nn/mlp.h"
#include "nn/norm.h"
#include "nn/quantized.h"
#include "tests/attention_reference.h"
#include "tests/expect_error.h"
#include "tests/gradcheck.h"

namespace {

using namespace mox;
using namespace mox::nn;
using mox::testing::expect_error;
using mox::testing::heads_leaf;
using mox::testing::KernelScope;
using mox::testing::max_abs_diff;
using mox::testing::naive_attention;
using mox::testing::gradcheck;
using mox::testing::transposed_leaf;
using mox::testing::uniform_leaf;
using Names = std::vector<std::string>;
using Inputs = std::vector<Tensor>;

// The Linear behind a module pointer (the layers hold their projections as Modules).
Linear& lin(const std::shared_ptr<Module>& m) { return dynamic_cast<Linear&>(*m); }

Names names_of(const NamedTensors& nt) {
  Names out;
  for (auto& [n, t] : nt) out.push_back(n);
  return out;
}

// ---- naive references from ordinary differentiable ops ----

Tensor naive_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  Tensor xc = x - mean(x, {-1}, true);
  Tensor y = xc * rsqrt(mean(xc * xc, {-1}, true) + eps);
  if (w.defined()) y = y * w;
  return b.defined() ? y + b : y;
}

Tensor naive_rms_norm(const Tensor& x, const Tensor& w, double eps) {
  return x * rsqrt(mean(x * x, {-1}, true) + eps) * w;
}

// GPT-2's GELU: u/2·(1 + tanh(√(2/π)·(u + 0.044715·u³))).
Tensor naive_gelu_tanh(const Tensor& u) {
  return 0.5 * u * (1.0 + tanh(0.7978845608028654 * (u + 0.044715 * u * u * u)));
}

// Hugging Face Llama: x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x2, x1), angles
// (start + t)·theta^(−2i/D) repeated for both halves.
Tensor naive_rotary(const Tensor& x, int64_t start, double theta = 10000.0) {
  const int64_t T = x.size(2), D = x.size(3), half = D / 2;
  std::vector<double> c(size_t(T * D)), s(size_t(T * D));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) {
      const double a = double(start + t) * std::pow(theta, -2.0 * double(i % half) / double(D));
      c[size_t(t * D + i)] = std::cos(a);
      s[size_t(t * D + i)] = std::sin(a);
    }
  Tensor rotated = cat({-x.narrow(3, half, half), x.narrow(3, 0, half)}, 3);
  return x * from_doubles(c, {T, D}, x.dtype()) + rotated * from_doubles(s, {T, D}, x.dtype());
}

// The attention module computed from its own weights with the references above.
Tensor naive_self_attention(const CausalSelfAttention& m, const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = m.n_embd, H = m.n_head, D = C / H;
  const Linear &c_attn = lin(m.c_attn), &c_proj = lin(m.c_proj);
  Tensor qkv = matmul(x, c_attn.weight.transpose(0, 1));
  if (c_attn.bias.defined()) qkv = qkv + c_attn.bias;
  auto head = [&](int64_t i) { return qkv.narrow(2, i * C, C).reshape({B, T, H, D}).permute({0, 2, 1, 3}); };
  Tensor q = head(0), k = head(1), v = head(2);
  if (m.rotary) { q = naive_rotary(q, 0); k = naive_rotary(k, 0); }
  Tensor y = naive_attention(q, k, v, true, 1.0 / std::sqrt(double(D))).permute({0, 2, 1, 3}).reshape({B, T, C});
  y = matmul(y, c_proj.weight.transpose(0, 1));
  return c_proj.bias.defined() ? y + c_proj.bias : y;
}

// ================================================================================ embedding

TEST(LlmEmbedding, PicksRowsAndGradcheck) {
  Tensor w = uniform_leaf({5, 3}, 1);
  Tensor ids = from_vector<int64_t>({4, 0, 4, 2, 1, 4}, {2, 3});
  Tensor out = embedding(w, ids);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 3}));
  std::vector<double> wv = w.to_vector<double>(), ov = out.to_vector<double>();
  std::vector<int64_t> iv = ids.to_vector<int64_t>();
  for (size_t n = 0; n < iv.size(); ++n)
    for (size_t c = 0; c < 3; ++c) EXPECT_EQ(ov[n * 3 + c], wv[size_t(iv[n]) * 3 + c]);
  // Repeated ids (4 three times) sum their gradients; row 3 gets none.
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return embedding(in[0], ids); }, {w}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return embedding(in[0], ids); }, {transposed_leaf(w)}));
}

TEST(LlmEmbedding, OutOfRangeIdNamesTheIdItsPositionAndTheVocabulary) {
  Tensor w = zeros({5, 3});
  expect_error([&] { embedding(w, from_vector<int64_t>({0, 1, 2, 3, 4, 7}, {2, 3})); },
               {"id 7", "position [1, 2]", "flat index 5", "vocabulary of 5"});
  expect_error([&] { embedding(w, from_vector<int64_t>({-1}, {1})); }, {"id -1", "position [0]", "vocabulary of 5"});
  expect_error([&] { embedding(w, from_vector<int32_t>({0}, {1})); }, {"i64", "i32"});
  Embedding emb(5, 3);
  expect_error([&] { emb.forward(from_vector<int64_t>({5}, {1, 1})); }, {"id 5", "[0, 0]", "vocabulary of 5"});
}

TEST(LlmEmbedding, ModuleInitAndNames) {
  Generator gen(3);
  Embedding emb(1000, 64, &gen);
  EXPECT_EQ(names_of(emb.named_parameters()), (Names{"weight"}));
  EXPECT_EQ(emb.weight.shape(), (Shape{1000, 64}));
  std::vector<double> v = emb.weight.to_vector<double>();
  double s = 0, s2 = 0;
  for (double x : v) { s += x; s2 += x * x; }
  const double m = s / double(v.size()), sd = std::sqrt(s2 / double(v.size()) - m * m);
  EXPECT_NEAR(m, 0.0, 1e-3);
  EXPECT_NEAR(sd, 0.02, 1e-3);
  EXPECT_EQ(emb.forward(from_vector<int64_t>({1, 2}, {2})).shape(), (Shape{2, 64}));
  EXPECT_EQ(emb.repr(), "Embedding(1000, 64)");
}

// ================================================================================ norms

TEST(LlmNorm, LayerNormMatchesReferenceAndGradchecks) {
  Tensor x = uniform_leaf({3, 4, 6}, 10, -2.0, 2.0);
  Tensor w = uniform_leaf({6}, 11, 0.5, 1.5), b = uniform_leaf({6}, 12);
  EXPECT_LT(max_abs_diff(layer_norm(x, w, b, 1e-5), naive_layer_norm(x, w, b, 1e-5)), 1e-12);
  EXPECT_LT(max_abs_diff(layer_norm(x), naive_layer_norm(x, Tensor(), Tensor(), 1e-5)), 1e-12);
  auto full = [](const Inputs& in) { return layer_norm(in[0], in[1], in[2], 1e-5); };
  EXPECT_TRUE(gradcheck(full, {x, w, b}));
  EXPECT_TRUE(gradcheck(full, {transposed_leaf(x), w, b}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return layer_norm(in[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return layer_norm(in[0], in[1]); }, {x, w}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return layer_norm(in[0], w.detach(), in[1]); }, {x, b}));
}

TEST(LlmNorm, RmsNormMatchesReferenceAndGradchecks) {
  Tensor x = uniform_leaf({2, 5, 8}, 20, -2.0, 2.0);
  Tensor w = uniform_leaf({8}, 21, 0.5, 1.5);
  EXPECT_LT(max_abs_diff(rms_norm(x, w, 1e-6), naive_rms_norm(x, w, 1e-6)), 1e-12);
  auto fn = [](const Inputs& in) { return rms_norm(in[0], in[1], 1e-6); };
  EXPECT_TRUE(gradcheck(fn, {x, w}));
  EXPECT_TRUE(gradcheck(fn, {transposed_leaf(x), w}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return rms_norm(in[0]); }, {x}));
}

// Enough rows for the multi-threaded kernels (per-thread weight-gradient partials), and f32.
TEST(LlmNorm, LargeInputsMatchReferenceInValuesAndGradients) {
  for (bool center : {true, false}) {
    Tensor x = uniform_leaf({300, 128}, 30, -3.0, 3.0);
    Tensor w = uniform_leaf({128}, 31, 0.5, 1.5), b = uniform_leaf({128}, 32);
    Tensor y = center ? layer_norm(x, w, b) : rms_norm(x, w);
    Generator g(33);
    Tensor seed = raw::normal(y.shape(), 0.0, 1.0, DType::f64, Device::cpu(), &g);
    y.backward(seed);
    Tensor gx = x.grad(), gw = w.grad(), gb = center ? b.grad() : Tensor();
    x.set_grad(Tensor()); w.set_grad(Tensor()); b.set_grad(Tensor());
    Tensor r = center ? naive_layer_norm(x, w, b, 1e-5) : naive_rms_norm(x, w, 1e-5);
    r.backward(seed);
    EXPECT_LT(max_abs_diff(y, r), 1e-12);
    EXPECT_LT(max_abs_diff(gx, x.grad()), 1e-10);
    EXPECT_LT(max_abs_diff(gw, w.grad()), 1e-10);
    if (center) {
      EXPECT_LT(max_abs_diff(gb, b.grad()), 1e-10);
    }
    Tensor x32 = x.detach().to(DType::f32), w32 = w.detach().to(DType::f32), b32 = b.detach().to(DType::f32);
    Tensor y32 = center ? layer_norm(x32, w32, b32) : rms_norm(x32, w32);
    EXPECT_LT(max_abs_diff(y32, y), 1e-5);
  }
}

TEST(LlmNorm, ModulesNamesAndErrors) {
  EXPECT_EQ(names_of(LayerNorm(8).named_parameters()), (Names{"weight", "bias"}));
  EXPECT_EQ(names_of(LayerNorm(8, 1e-5, /*bias=*/false).named_parameters()), (Names{"weight"}));
  EXPECT_EQ(names_of(RMSNorm(8).named_parameters()), (Names{"weight"}));
  LayerNorm ln(4);
  EXPECT_EQ(ln.weight.to_vector<float>(), std::vector<float>(4, 1.0f));
  EXPECT_EQ(ln.bias.to_vector<float>(), std::vector<float>(4, 0.0f));
  Tensor x = from_vector<float>({1, 2, 3, 4}, {1, 4});
  std::vector<float> y = ln.forward(x).to_vector<float>();   // (x − 2.5)/√(1.25 + 1e-5)
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[size_t(i)], (float(i + 1) - 2.5f) / std::sqrt(1.25f + 1e-5f), 1e-6);
  std::vector<float> r = RMSNorm(4).forward(x).to_vector<float>();   // x/√(7.5 + 1e-5)
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(r[size_t(i)], float(i + 1) / std::sqrt(7.5f + 1e-5f), 1e-6);
  expect_error([&] { ln.forward(zeros({2, 5})); }, {"layer_norm", "weight", "[4]", "[2, 5]"});
  expect_error([&] { rms_norm(zeros({2, 4}), zeros({4}, DType::f64)); }, {"rms_norm", "weight", "f64", "f32"});
  // f16 is a storage format on the CPU (run through f32); mixing it with an f32 weight is an error.
  EXPECT_EQ(layer_norm(from_vector<float>({1, 2, 3, 4}, {1, 4}).to(DType::f16)).dtype(), DType::f16);
  expect_error([&] { layer_norm(zeros({2, 4}, DType::f16), ones({4})); }, {"layer_norm", "weight", "f32", "f16"});
  EXPECT_EQ(LayerNorm(8, 1e-5, false).repr(), "LayerNorm(8, eps=1e-05, bias=false)");
}

// ================================================================================ bias + GELU

TEST(LlmBiasGelu, MatchesFormulaAndGradchecks) {
  Tensor x = uniform_leaf({3, 4, 6}, 35, -4.0, 4.0), b = uniform_leaf({6}, 36);
  EXPECT_LT(max_abs_diff(bias_gelu(x, b), naive_gelu_tanh(x + b)), 1e-12);
  EXPECT_LT(max_abs_diff(bias_gelu(x), gelu(x, /*tanh_approximation=*/true)), 1e-12);
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bias_gelu(in[0], in[1]); }, {x, b}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bias_gelu(in[0], in[1]); }, {transposed_leaf(x), b}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return bias_gelu(in[0]); }, {x}));
  expect_error([&] { bias_gelu(x, zeros({5}, DType::f64)); }, {"bias_gelu", "[5]", "[3, 4, 6]"});
}

// f32 (fast tanh) against f64, on inputs large enough for the multi-threaded kernels.
TEST(LlmBiasGelu, Float32IsCloseToFloat64) {
  Tensor x = uniform_leaf({300, 128}, 37, -8.0, 8.0), b = uniform_leaf({128}, 38);
  Tensor y = bias_gelu(x, b);
  Generator g(39);
  Tensor seed = raw::normal(y.shape(), 0.0, 1.0, DType::f64, Device::cpu(), &g);
  y.backward(seed);
  Tensor x32 = x.detach().to(DType::f32).set_requires_grad(), b32 = b.detach().to(DType::f32).set_requires_grad();
  Tensor y32 = bias_gelu(x32, b32);
  y32.backward(seed.to(DType::f32));
  EXPECT_LT(max_abs_diff(y32, y), 5e-6);
  EXPECT_LT(max_abs_diff(x32.grad(), x.grad()), 5e-6);
  EXPECT_LT(max_abs_diff(b32.grad(), b.grad()), 1e-4);   // sums of 300 rows
}

TEST(LlmBiasGelu, Float32SaturatesAndKeepsNaN) {
  std::vector<float> y = bias_gelu(from_vector<float>({NAN, -100.f, 100.f, INFINITY, 0.f}, {5})).to_vector<float>();
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 100.0f);
  EXPECT_EQ(y[3], INFINITY);
  EXPECT_EQ(y[4], 0.0f);
  Tensor q = from_vector<float>({NAN, 0, 0, 0}, {1, 1, 2, 2}), k = ones({1, 1, 2, 2});
  std::vector<float> o = scaled_dot_product_attention(q, k, k).to_vector<float>();
  EXPECT_TRUE(std::isnan(o[0]));
  EXPECT_EQ(o[2], 1.0f);   // the other query's row is untouched
}

// ================================================================================ attention

TEST(LlmAttention, SdpaMatchesNaiveReference) {
  struct Case { int64_t T, Tk; bool causal; };
  for (Case c : {Case{5, 5, false}, Case{5, 5, true}, Case{3, 7, false}, Case{3, 7, true}, Case{1, 6, true}}) {
    Tensor q = uniform_leaf({2, 3, c.T, 4}, 40), k = uniform_leaf({2, 3, c.Tk, 4}, 41);
    Tensor v = uniform_leaf({2, 3, c.Tk, 4}, 42);
    Tensor out = scaled_dot_product_attention(q, k, v, c.causal);
    EXPECT_LT(max_abs_diff(out, naive_attention(q, k, v, c.causal, 0.5)), 1e-12) << c.T << " " << c.Tk << " " << c.causal;
    EXPECT_LT(max_abs_diff(scaled_dot_product_attention(q, k, v, c.causal, 1.7), naive_attention(q, k, v, c.causal, 1.7)),
              1e-12);
    // The result is a view of (B, T, H, D) memory: merging heads needs no copy.
    EXPECT_TRUE(raw::transpose(out, 1, 2).is_contiguous());
  }
  // Causal with T == Tk: the first query sees only the first key.
  Tensor q = uniform_leaf({1, 1, 3, 2}, 43), k = uniform_leaf({1, 1, 3, 2}, 44), v = uniform_leaf({1, 1, 3, 2}, 45);
  std::vector<double> o = scaled_dot_product_attention(q, k, v, true).to_vector<double>(), vv = v.to_vector<double>();
  EXPECT_DOUBLE_EQ(o[0], vv[0]);
  EXPECT_DOUBLE_EQ(o[1], vv[1]);
}

TEST(LlmAttention, SdpaGradchecks) {
  struct Case { int64_t T, Tk; bool causal; };
  for (Case c : {Case{4, 4, false}, Case{4, 4, true}, Case{2, 5, true}, Case{3, 5, false}}) {
    Tensor q = uniform_leaf({2, 2, c.T, 3}, 50), k = uniform_leaf({2, 2, c.Tk, 3}, 51);
    Tensor v = uniform_leaf({2, 2, c.Tk, 3}, 52);
    auto fn = [&](const Inputs& in) { return scaled_dot_product_attention(in[0], in[1], in[2], c.causal); };
    EXPECT_TRUE(gradcheck(fn, {q, k, v})) << c.T << " " << c.Tk << " " << c.causal;
  }
  // Strided inputs: head views of (B, T, H, D) memory (read in place) and a transposed D (copied).
  Tensor q = heads_leaf({2, 2, 4, 3}, 53), k = heads_leaf({2, 2, 4, 3}, 54);
  Tensor v = transposed_leaf(uniform_leaf({2, 2, 4, 3}, 55));
  auto causal = [](const Inputs& in) { return scaled_dot_product_attention(in[0], in[1], in[2], true, 0.8); };
  EXPECT_TRUE(gradcheck(causal, {q, k, v}));
  // Attention dropout: the same mask on every evaluation (the generator restarts).
  auto dropped = [](const Inputs& in) {
    Generator gen(7);
    return scaled_dot_product_attention(in[0], in[1], in[2], true, std::nullopt, 0.3, &gen);
  };
  EXPECT_TRUE(gradcheck(dropped, {uniform_leaf({1, 2, 4, 3}, 56), uniform_leaf({1, 2, 4, 3}, 57),
                                  uniform_leaf({1, 2, 4, 3}, 58)}));
}

// Sizes that take the multi-threaded path; f64 values and gradients against the reference.
TEST(LlmAttention, LargeSdpaMatchesReferenceInValuesAndGradients) {
  Tensor q = heads_leaf({2, 4, 32, 32}, 60), k = heads_leaf({2, 4, 32, 32}, 61), v = heads_leaf({2, 4, 32, 32}, 62);
  Tensor out = scaled_dot_product_attention(q, k, v, true);
  Generator g(63);
  Tensor seed = raw::normal(out.shape(), 0.0, 1.0, DType::f64, Device::cpu(), &g);
  out.backward(seed);
  Tensor gq = q.grad(), gk = k.grad(), gv = v.grad();
  for (const Tensor* t : {&q, &k, &v}) t->impl()->grad.reset();
  Tensor ref = naive_attention(q, k, v, true, 1.0 / std::sqrt(32.0));
  ref.backward(seed);
  EXPECT_LT(max_abs_diff(out, ref), 1e-12);
  EXPECT_LT(max_abs_diff(gq, q.grad()), 1e-10);
  EXPECT_LT(max_abs_diff(gk, k.grad()), 1e-10);
  EXPECT_LT(max_abs_diff(gv, v.grad()), 1e-10);
}

TEST(LlmAttention, SdpaDropoutOnlyWhenAskedAndReproducible) {
  Tensor q = uniform_leaf({1, 2, 6, 4}, 70), k = uniform_leaf({1, 2, 6, 4}, 71), v = uniform_leaf({1, 2, 6, 4}, 72);
  Generator a(5), b(5);
  Tensor da = scaled_dot_product_attention(q, k, v, true, std::nullopt, 0.5, &a);
  Tensor db = scaled_dot_product_attention(q, k, v, true, std::nullopt, 0.5, &b);
  EXPECT_EQ(max_abs_diff(da, db), 0.0);
  EXPECT_GT(max_abs_diff(da, scaled_dot_product_attention(q, k, v, true)), 1e-3);
  EXPECT_EQ(a.offset(), uint64_t(2 * 6 * 6));   // one draw per probability
}

TEST(LlmAttention, SdpaErrorsNameTheShapes) {
  Tensor q = zeros({1, 2, 4, 8}), k = zeros({1, 2, 3, 8});
  expect_error([&] { scaled_dot_product_attention(q, k, k, true); }, {"causal", "4 queries", "Tk=3"});
  expect_error([&] { scaled_dot_product_attention(q, zeros({1, 2, 4, 6}), zeros({1, 2, 4, 6})); },
               {"[1, 2, 4, 6]", "[1, 2, 4, 8]"});
  expect_error([&] { scaled_dot_product_attention(zeros({2, 4, 8}), k, k); }, {"(B, H, T, D)", "[2, 4, 8]"});
  expect_error([&] { scaled_dot_product_attention(q, q, q.to(DType::f64)); }, {"v", "f64", "f32"});
}

// The packed op against the three head views of the same qkv through the general op: the
// same values and gradients, bit for bit (the same kernel on the same memory; only the
// gradient's assembly differs), with dropout too, for both attention kernels (T = 67 crosses
// the fused kernel's 64-row tiles).
TEST(LlmAttention, PackedQkvEqualsHeadViewsBitForBit) {
  const int64_t B = 2, T = 67, H = 2, D = 3, C = H * D;
  for (const auto& [kernel, p] : {std::pair{AttentionKernel::materialized, 0.0}, {AttentionKernel::materialized, 0.4},
                                  {AttentionKernel::fused, 0.0}, {AttentionKernel::fused, 0.4}}) {
    KernelScope scope(kernel);
    SCOPED_TRACE(std::string(kernel == AttentionKernel::fused ? "fused" : "materialized") + " kernel, dropout " +
                 std::to_string(p));
    Tensor qkv = uniform_leaf({B, T, 3 * C}, 90);
    Generator ga(11), gb(11);
    Tensor packed = causal_self_attention_qkv(qkv, H, std::nullopt, p, &ga);
    Generator seed_gen(91);
    Tensor seed = raw::normal(packed.shape(), 0.0, 1.0, DType::f64, Device::cpu(), &seed_gen);
    packed.backward(seed);
    const Tensor g_packed = qkv.grad();
    qkv.impl()->grad.reset();
    auto head_view = [&](int64_t i) { return qkv.narrow(2, i * C, C).view({B, T, H, D}).transpose(1, 2); };
    Tensor views = scaled_dot_product_attention(head_view(0), head_view(1), head_view(2), true, std::nullopt, p, &gb);
    views.backward(seed);
    EXPECT_EQ(packed.to_vector<double>(), views.to_vector<double>());
    EXPECT_EQ(g_packed.to_vector<double>(), qkv.grad().to_vector<double>());
    EXPECT_TRUE(raw::transpose(packed, 1, 2).is_contiguous());   // heads merge without a copy
  }
}

TEST(LlmAttention, PackedQkvGradchecksAndNamesBadShapes) {
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return causal_self_attention_qkv(in[0], 2); },
                        {uniform_leaf({2, 4, 12}, 92)}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return causal_self_attention_qkv(in[0], 3, 0.7); },
                        {transposed_leaf(uniform_leaf({2, 3, 9}, 93))}));   // a strided qkv
  auto dropped = [](const Inputs& in) {
    Generator gen(7);
    return causal_self_attention_qkv(in[0], 1, std::nullopt, 0.3, &gen);
  };
  EXPECT_TRUE(gradcheck(dropped, {uniform_leaf({1, 4, 6}, 94)}));
  expect_error([] { causal_self_attention_qkv(zeros({2, 4, 10}), 2); }, {"3·C", "n_head=2", "[2, 4, 10]"});
  expect_error([] { causal_self_attention_qkv(zeros({4, 12}), 2); }, {"(B, T, 3·C)", "[4, 12]"});
}

// ================================================================================ rotary

TEST(LlmRotary, MatchesRotateHalfReferenceAndGradchecks) {
  Tensor x = uniform_leaf({2, 3, 5, 8}, 80);
  for (int64_t start : {0, 3, 1000})
    EXPECT_LT(max_abs_diff(apply_rotary(x, start), naive_rotary(x, start)), 1e-12) << start;
  EXPECT_LT(max_abs_diff(apply_rotary(x, 2, 500.0), naive_rotary(x, 2, 500.0)), 1e-12);
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return apply_rotary(in[0], 4); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return apply_rotary(in[0], 1); }, {heads_leaf({2, 3, 5, 8}, 81)}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return apply_rotary(in[0], 0); }, {transposed_leaf(x)}));
}

TEST(LlmRotary, ConventionPairsIWithIPlusHalfD) {
  // D = 4: pairs (0, 2) at frequency 1 and (1, 3) at 10000^(−1/2) = 0.01; position 5.
  Tensor e0 = from_vector<double>({1, 0, 0, 0}, {1, 1, 1, 4}), e1 = from_vector<double>({0, 1, 0, 0}, {1, 1, 1, 4});
  std::vector<double> r0 = apply_rotary(e0, 5).to_vector<double>(), r1 = apply_rotary(e1, 5).to_vector<double>();
  const std::vector<double> want0{std::cos(5.0), 0, std::sin(5.0), 0}, want1{0, std::cos(0.05), 0, std::sin(0.05)};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(r0[i], want0[i], 1e-12);
    EXPECT_NEAR(r1[i], want1[i], 1e-12);
  }
  // Scores depend on relative position only: ⟨R_m q, R_n k⟩ = ⟨R_{m+s} q, R_{n+s} k⟩.
  Tensor q = uniform_leaf({1, 1, 1, 8}, 82), k = uniform_leaf({1, 1, 1, 8}, 83);
  auto score = [&](int64_t m, int64_t n) { return sum(apply_rotary(q, m) * apply_rotary(k, n)).item<double>(); };
  EXPECT_NEAR(score(2, 7), score(12, 17), 1e-12);
  EXPECT_GT(std::abs(score(2, 7) - score(2, 9)), 1e-6);
  expect_error([] { apply_rotary(zeros({1, 1, 2, 5}), 0); }, {"D=5", "even"});
}

// ================================================================================ attention module

TEST(LlmCausalSelfAttention, MatchesReferenceAndGradchecks) {
  for (bool rotary : {false, true}) {
    Generator gen(90);
    CausalSelfAttention m(8, 2, /*bias=*/true, 0.0, rotary, 16, &gen);
    m.to(DType::f64);
    EXPECT_EQ(names_of(m.named_parameters()), (Names{"c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"}));
    Tensor x = uniform_leaf({2, 5, 8}, 91);
    EXPECT_LT(max_abs_diff(m.forward(x), naive_self_attention(m, x)), 1e-12) << rotary;
    EXPECT_TRUE(gradcheck([&](const Inputs& in) { return m.forward(in[0]); },
                          {x, lin(m.c_attn).weight, lin(m.c_attn).bias, lin(m.c_proj).weight, lin(m.c_proj).bias}))
        << rotary;
  }
  CausalSelfAttention nobias(8, 4, /*bias=*/false);
  EXPECT_EQ(names_of(nobias.named_parameters()), (Names{"c_attn.weight", "c_proj.weight"}));
  EXPECT_EQ(nobias.repr(), "CausalSelfAttention(n_embd=8, n_head=4, block_size=1024)");
}

TEST(LlmCausalSelfAttention, DropoutInTrainingOnlyAndGradcheck) {
  Generator gen(100);
  CausalSelfAttention m(8, 2, true, 0.25, true, 16, &gen);
  m.to(DType::f64);
  Tensor x = uniform_leaf({2, 4, 8}, 101);
  m.eval();
  EXPECT_LT(max_abs_diff(m.forward(x), naive_self_attention(m, x)), 1e-12);
  m.train();
  auto fn = [&](const Inputs& in) {
    gen.set_state(100, 0);   // the same attention and residual masks on every evaluation
    return m.forward(in[0]);
  };
  EXPECT_GT(max_abs_diff(fn({x}), naive_self_attention(m, x)), 1e-3);
  EXPECT_TRUE(gradcheck(fn, {x, lin(m.c_attn).weight, lin(m.c_proj).weight}));
}

// Generation: feeding tokens one at a time (after a prefill) through the cache reproduces
// the full causal forward.
TEST(LlmCausalSelfAttention, KvCacheTokenByTokenEqualsFullForward) {
  for (bool rotary : {false, true}) {
    Generator gen(110);
    CausalSelfAttention m(16, 4, true, 0.1, rotary, 8, &gen);
    m.eval();
    Generator xg(111);
    Tensor x = raw::uniform({2, 7, 16}, -1.0, 1.0, DType::f32, Device::cpu(), &xg);   // (B, T, C)
    Tensor full = m.forward(x);
    for (int64_t prefill : {1, 3}) {
      KVCache cache;
      std::vector<Tensor> parts{m.forward(x.narrow(1, 0, prefill), &cache)};
      for (int64_t t = prefill; t < 7; ++t) parts.push_back(m.forward(x.narrow(1, t, 1), &cache));
      EXPECT_EQ(cache.length, 7);
      EXPECT_EQ(cache.k.shape(), (Shape{2, 4, 8, 4}));
      EXPECT_LT(max_abs_diff(cat(parts, 1), full), 1e-5) << rotary << " " << prefill;
    }
    // Under no_grad too, and a reset cache (length 0) is reused for a new sequence.
    autograd::NoGradGuard no_grad;
    KVCache cache;
    m.forward(x.narrow(1, 0, 4), &cache);
    cache.length = 0;
    Tensor first = m.forward(x.narrow(1, 0, 2), &cache);
    EXPECT_LT(max_abs_diff(first, full.narrow(1, 0, 2)), 1e-5);
    EXPECT_FALSE(first.requires_grad());
  }
}

TEST(LlmCausalSelfAttention, KvCacheOverflowAndMismatchAreErrors) {
  CausalSelfAttention m(8, 2, true, 0.0, true, /*block_size=*/6);
  KVCache cache;
  m.forward(zeros({1, 4, 8}), &cache);
  expect_error([&] { m.forward(zeros({1, 3, 8}), &cache); }, {"3 positions", "after the 4", "block_size=6"});
  EXPECT_EQ(cache.length, 4);   // unchanged by the failed call
  expect_error([&] { m.forward(zeros({2, 1, 8}), &cache); }, {"KV cache", "[1, 2, 6, 4]", "[2, 2, 6, 4]"});
  expect_error([&] { m.forward(zeros({1, 7, 8})); }, {"7 positions", "block_size=6"});
  expect_error([&] { m.forward(zeros({1, 2, 6})); }, {"[1, 2, 6]", "(B, T, 8)"});
  expect_error([] { CausalSelfAttention(10, 4); }, {"n_embd=10", "n_head=4"});
  expect_error([] { CausalSelfAttention(6, 2, true, 0.0, true); }, {"rotary", "even", "3"});
}

// ================================================================================ MLPs

TEST(LlmMlp, MlpAndSwiGluMatchFormulasAndGradcheck) {
  Generator gen(120);
  Mlp mlp(6, 12, true, 0.0, &gen);
  mlp.to(DType::f64);
  EXPECT_EQ(names_of(mlp.named_parameters()), (Names{"c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"}));
  Tensor x = uniform_leaf({2, 3, 6}, 121, -2.0, 2.0);
  const Linear &fc = lin(mlp.c_fc), &proj = lin(mlp.c_proj);
  Tensor h = naive_gelu_tanh(matmul(x, fc.weight.transpose(0, 1)) + fc.bias);
  EXPECT_LT(max_abs_diff(mlp.forward(x), matmul(h, proj.weight.transpose(0, 1)) + proj.bias), 1e-12);
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return mlp.forward(in[0]); },
                        {x, fc.weight, fc.bias, proj.weight, proj.bias}));

  SwiGluMlp swi(6, 10, false, &gen);
  swi.to(DType::f64);
  EXPECT_EQ(names_of(swi.named_parameters()), (Names{"w1.weight", "w2.weight", "w3.weight"}));
  Tensor a = matmul(x, lin(swi.w1).weight.transpose(0, 1)), b = matmul(x, lin(swi.w3).weight.transpose(0, 1));
  Tensor ref = matmul(a * sigmoid(a) * b, lin(swi.w2).weight.transpose(0, 1));
  EXPECT_LT(max_abs_diff(swi.forward(x), ref), 1e-12);
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return swi.forward(in[0]); },
                        {x, lin(swi.w1).weight, lin(swi.w2).weight, lin(swi.w3).weight}));
  EXPECT_EQ(names_of(SwiGluMlp(4, 8, true).named_parameters()),
            (Names{"w1.weight", "w1.bias", "w2.weight", "w2.bias", "w3.weight", "w3.bias"}));
}

TEST(LlmMlp, DropoutInTrainingOnly) {
  Generator gen(130);
  Mlp mlp(4, 8, true, 0.5, &gen);
  Tensor x = ones({16, 4});
  mlp.eval();
  Tensor e1 = mlp.forward(x), e2 = mlp.forward(x);
  EXPECT_EQ(max_abs_diff(e1, e2), 0.0);
  mlp.train();
  EXPECT_GT(max_abs_diff(mlp.forward(x), e1), 1e-3);
}

TEST(LlmMlp, BothServeAsMoEExperts) {
  moe::MoEConfig cfg;
  cfg.gate.num_experts = 3;
  cfg.gate.k = 2;
  Generator gen(140);
  std::vector<std::shared_ptr<moe::MoE>> layers{
      std::make_shared<moe::MoE>(8, [&] { return std::make_shared<Mlp>(8, 16, true, 0.0, &gen); }, cfg),
      std::make_shared<moe::MoE>(8, [&] { return std::make_shared<SwiGluMlp>(8, 12, false, &gen); }, cfg)};
  EXPECT_EQ(layers[0]->named_parameters()[1].first, "experts.0.c_fc.weight");
  EXPECT_EQ(layers[1]->named_parameters()[1].first, "experts.0.w1.weight");
  for (auto& layer : layers) {
    Tensor x = uniform_leaf({12, 8}, 141).to(DType::f32).detach().set_requires_grad();
    moe::MoEOutput o = layer->forward_moe(x);
    EXPECT_EQ(o.output.shape(), (Shape{12, 8}));
    (sum(o.output) + o.l_aux).backward();
    EXPECT_TRUE(x.grad().defined());
    EXPECT_TRUE(layer->experts->named_parameters()[0].second.grad().defined());
  }
}

// ================================================================================ quantisation

// The layers hold their Linears as Modules, so quantize_linears can swap every one.
TEST(LlmQuantize, LinearsOfTheLayersAreSwappedAndGenerationStillMatches) {
  Generator gen(145);
  CausalSelfAttention attn(16, 4, true, 0.0, true, 8, &gen);
  Mlp mlp(16, 32, true, 0.0, &gen);
  SwiGluMlp swi(16, 24, false, &gen);
  attn.eval();
  Generator xg(146);
  Tensor x = raw::uniform({2, 5, 16}, -1.0, 1.0, DType::f32, Device::cpu(), &xg);
  autograd::NoGradGuard no_grad;
  Tensor fa = attn.forward(x), fm = mlp.forward(x), fs = swi.forward(x);
  EXPECT_EQ(quantize_linears(attn), 2);
  EXPECT_EQ(quantize_linears(mlp), 2);
  EXPECT_EQ(quantize_linears(swi), 3);
  EXPECT_NE(dynamic_cast<QuantizedLinear*>(attn.c_attn.get()), nullptr);
  EXPECT_NE(dynamic_cast<QuantizedLinear*>(mlp.c_fc.get()), nullptr);
  EXPECT_NE(dynamic_cast<QuantizedLinear*>(swi.w3.get()), nullptr);
  Tensor qa = attn.forward(x);
  EXPECT_LT(max_abs_diff(qa, fa), 0.02);
  EXPECT_LT(max_abs_diff(mlp.forward(x), fm), 0.02);
  EXPECT_LT(max_abs_diff(swi.forward(x), fs), 0.02);
  KVCache cache;
  std::vector<Tensor> parts;
  for (int64_t t = 0; t < 5; ++t) parts.push_back(attn.forward(x.narrow(1, t, 1), &cache));
  EXPECT_LT(max_abs_diff(cat(parts, 1), qa), 1e-5);
}

// ================================================================================ weight tying

// wte (V, C) used as the input embedding and, through Linear(shared_weight), as the output head.
class TiedLm : public Module {
 public:
  TiedLm(int64_t V, int64_t C, bool head_bias) {
    wte = register_module("wte", std::make_shared<Embedding>(V, C));
    lm_head = register_module("lm_head", std::make_shared<Linear>(wte->weight, head_bias));
  }
  Tensor forward(const Tensor& ids) override { return lm_head->forward(wte->forward(ids)); }
  std::shared_ptr<Embedding> wte;
  std::shared_ptr<Linear> lm_head;
};

TEST(LlmWeightTying, OneParameterOneKeyGradientsOfBothUses) {
  TiedLm m(7, 4, false);
  EXPECT_EQ(names_of(m.named_parameters()), (Names{"wte.weight"}));
  EXPECT_EQ(names_of(m.state_dict()), (Names{"wte.weight"}));
  EXPECT_EQ(names_of(TiedLm(7, 4, true).state_dict()), (Names{"wte.weight", "lm_head.bias"}));
  EXPECT_TRUE(m.lm_head->weight.is_same(m.wte->weight));
  EXPECT_EQ(m.lm_head->in_features, 4);
  EXPECT_EQ(m.lm_head->out_features, 7);

  m.to(DType::f64);   // converts the shared parameter once; both handles see it
  EXPECT_EQ(m.lm_head->weight.dtype(), DType::f64);
  Tensor ids = from_vector<int64_t>({1, 3, 3, 6}, {2, 2});
  Tensor out = m.forward(ids);   // (2, 2, 7)
  EXPECT_EQ(out.shape(), (Shape{2, 2, 7}));
  EXPECT_TRUE(gradcheck([&](const Inputs& in) { return m.forward(ids); }, {m.wte->weight}));

  // The gradient is the sum of the embedding's and the head's contributions.
  Generator g(150);
  Tensor seed = raw::normal(out.shape(), 0.0, 1.0, DType::f64, Device::cpu(), &g);
  m.zero_grad();
  m.forward(ids).backward(seed);
  Tensor tied = raw::clone(m.wte->weight.grad());
  Tensor emb_w = m.wte->weight.detach().clone().set_requires_grad(), head_w = m.wte->weight.detach().clone().set_requires_grad();
  linear(embedding(emb_w, ids), head_w).backward(seed);
  EXPECT_LT(max_abs_diff(tied, raw::add(emb_w.grad(), head_w.grad())), 1e-12);

  // A state_dict round trip writes the shared tensor once and both uses see it.
  TiedLm other(7, 4, false);
  other.to(DType::f64);
  other.load_state_dict(m.state_dict());
  EXPECT_EQ(max_abs_diff(other.lm_head->weight, m.wte->weight), 0.0);
  expect_error([] { Linear(Tensor(), false); }, {"shared weight", "undefined"});
  expect_error([] { Linear(zeros({3, 2})); }, {"shared weight", "registered", "[3, 2]"});
}

}  // namespace
