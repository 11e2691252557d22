// test_fused_attention.cpp — the fused (flash-style) attention kernel, selected with
// set_attention_kernel(AttentionKernel::fused): tensor/cpu/fused_attention.cpp, which is also
// the reference the CUDA kernels are held to (tests/test_cuda_layers.cpp).
//
// Against the naive reference (tests/attention_reference.h) and the materialised kernel, in
// values and in gradients: float64 to 1e-12 / 1e-10, float32 to 2e-6, across key-block
// boundaries (Tk > 64), causal attention with Tk > T (a KV cache), head views of (B, T, H, D)
// memory, the packed-qkv op (its bit-for-bit equality with the head views, for both kernels,
// is tests/test_nn_llm.cpp's) and sizes that take the multi-threaded path. Float64 gradchecks,
// with and without dropout. Under dropout the fused kernel draws the mask the materialised
// one draws (same generator counters: equal results, equal generator offsets). The setting:
// "auto" on the CPU is the materialised kernel below 512 keys and the fused one from there,
// bit for bit; a bad name is an error naming it.
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <vector>

#include "autograd/functions.h"
#include "tests/attention_reference.h"
#include "tests/expect_error.h"
#include "tests/gradcheck.h"

namespace {

using namespace mox;
using mox::testing::expect_error;
using mox::testing::gradcheck;
using mox::testing::heads_leaf;
using mox::testing::KernelScope;
using mox::testing::max_abs_diff;
using mox::testing::naive_attention;
using mox::testing::transposed_leaf;
using mox::testing::uniform_leaf;
using Inputs = std::vector<Tensor>;

struct Result {
  Tensor out, gq, gk, gv;
  uint64_t generator_offset;
};

// Forward and backward (seeded with fixed normal weights) of attention on fresh inputs.
Result run(AttentionKernel kernel, const std::function<Inputs()>& make_inputs, bool causal, double dropout_p = 0.0) {
  KernelScope scope(kernel);
  Inputs in = make_inputs();
  Generator gen(17);
  Tensor out = scaled_dot_product_attention(in[0], in[1], in[2], causal, std::nullopt, dropout_p, &gen);
  Generator weights(18);
  out.backward(raw::normal(out.shape(), 0.0, 1.0, out.dtype(), Device::cpu(), &weights));
  return {out, in[0].grad(), in[1].grad(), in[2].grad(), gen.offset()};
}

void expect_close(const Result& a, const Result& b, double out_tol, double grad_tol, const std::string& what) {
  EXPECT_LT(max_abs_diff(a.out, b.out), out_tol) << what;
  EXPECT_LT(max_abs_diff(a.gq, b.gq), grad_tol) << what << " gq";
  EXPECT_LT(max_abs_diff(a.gk, b.gk), grad_tol) << what << " gk";
  EXPECT_LT(max_abs_diff(a.gv, b.gv), grad_tol) << what << " gv";
}

struct Case {
  int64_t T, Tk, D;
  bool causal;
};

std::function<Inputs()> inputs_of(const Case& c, DType dtype = DType::f64, int64_t B = 2, int64_t H = 3) {
  return [=] {
    Inputs in = {uniform_leaf({B, H, c.T, c.D}, 40), uniform_leaf({B, H, c.Tk, c.D}, 41),
                 uniform_leaf({B, H, c.Tk, c.D}, 42)};
    if (dtype == DType::f64) return in;
    for (Tensor& t : in) {
      t = t.detach().to(dtype);
      t.set_requires_grad();
    }
    return in;
  };
}

const std::vector<Case> kCases = {
    {5, 5, 4, false}, {5, 5, 4, true},    {3, 7, 4, true},     {1, 6, 4, true},    {3, 7, 4, false},
    {70, 70, 8, true}, {65, 130, 3, true}, {40, 100, 16, false}, {129, 129, 5, true},
};

TEST(FusedAttention, MatchesNaiveReferenceAndMaterialisedKernelInFloat64) {
  for (const Case& c : kCases) {
    const std::string what = "T=" + std::to_string(c.T) + " Tk=" + std::to_string(c.Tk) + " D=" +
                             std::to_string(c.D) + (c.causal ? " causal" : "");
    const Result fused = run(AttentionKernel::fused, inputs_of(c), c.causal);
    const Result materialised = run(AttentionKernel::materialized, inputs_of(c), c.causal);
    expect_close(fused, materialised, 1e-12, 1e-10, what);
    Inputs in = inputs_of(c)();
    EXPECT_LT(max_abs_diff(fused.out, naive_attention(in[0], in[1], in[2], c.causal, 1.0 / std::sqrt(double(c.D)))),
              1e-12)
        << what;
    EXPECT_TRUE(raw::transpose(fused.out, 1, 2).is_contiguous()) << what;   // heads merge without a copy
  }
}

// float32 on sizes that take the multi-threaded path (and the vectorised exp).
TEST(FusedAttention, Float32MatchesMaterialisedKernel) {
  for (const Case& c : {Case{96, 96, 32, true}, Case{33, 200, 64, true}, Case{50, 50, 24, false}}) {
    const Result fused = run(AttentionKernel::fused, inputs_of(c, DType::f32), c.causal);
    const Result materialised = run(AttentionKernel::materialized, inputs_of(c, DType::f32), c.causal);
    expect_close(fused, materialised, 2e-6, 2e-6, "T=" + std::to_string(c.T) + " Tk=" + std::to_string(c.Tk));
  }
}

TEST(FusedAttention, Gradchecks) {
  KernelScope scope(AttentionKernel::fused);
  for (const Case& c : {Case{4, 4, 3, false}, Case{4, 4, 3, true}, Case{2, 5, 3, true}, Case{3, 5, 3, false}}) {
    auto fn = [&](const Inputs& in) { return scaled_dot_product_attention(in[0], in[1], in[2], c.causal); };
    EXPECT_TRUE(gradcheck(fn, {uniform_leaf({2, 2, c.T, 3}, 50), uniform_leaf({2, 2, c.Tk, 3}, 51),
                               uniform_leaf({2, 2, c.Tk, 3}, 52)}))
        << c.T << " " << c.Tk << " " << c.causal;
  }
  // Head views of (B, T, H, D) memory (read in place) and a transposed D (copied).
  auto causal = [](const Inputs& in) { return scaled_dot_product_attention(in[0], in[1], in[2], true, 0.8); };
  EXPECT_TRUE(gradcheck(causal, {heads_leaf({2, 2, 4, 3}, 53), heads_leaf({2, 2, 4, 3}, 54),
                                 transposed_leaf(uniform_leaf({2, 2, 4, 3}, 55))}));
  // Dropout: the same mask on every evaluation (the generator restarts).
  auto dropped = [](const Inputs& in) {
    Generator gen(7);
    return scaled_dot_product_attention(in[0], in[1], in[2], true, std::nullopt, 0.3, &gen);
  };
  EXPECT_TRUE(gradcheck(dropped, {uniform_leaf({1, 2, 4, 3}, 56), uniform_leaf({1, 2, 4, 3}, 57),
                                  uniform_leaf({1, 2, 4, 3}, 58)}));
  auto packed = [](const Inputs& in) {
    Generator gen(7);
    return causal_self_attention_qkv(in[0], 2, std::nullopt, 0.25, &gen);
  };
  EXPECT_TRUE(gradcheck(packed, {uniform_leaf({2, 4, 12}, 59)}));
  EXPECT_TRUE(gradcheck([](const Inputs& in) { return causal_self_attention_qkv(in[0], 3, 0.7); },
                        {transposed_leaf(uniform_leaf({2, 3, 9}, 60))}));   // a strided qkv
}

// The fused kernel draws each probability's keep decision from the counter the materialised
// kernel's mask uses, so both give the same result and leave the generator at the same offset.
TEST(FusedAttention, DropoutDrawsTheMaterialisedMask) {
  for (DType dt : {DType::f64, DType::f32}) {
    for (const Case& c : {Case{6, 6, 4, true}, Case{70, 90, 8, true}, Case{20, 20, 5, false}}) {
      const Result fused = run(AttentionKernel::fused, inputs_of(c, dt), c.causal, 0.3);
      const Result materialised = run(AttentionKernel::materialized, inputs_of(c, dt), c.causal, 0.3);
      const double tol = dt == DType::f64 ? 1e-10 : 1e-5;
      expect_close(fused, materialised, tol, tol, "dropout, " + std::string(dtype_name(dt)));
      EXPECT_EQ(fused.generator_offset, uint64_t(2 * 3 * c.T * c.Tk));   // one counter per probability
      EXPECT_EQ(fused.generator_offset, materialised.generator_offset);
      const Result kept = run(AttentionKernel::fused, inputs_of(c, dt), c.causal, 0.0);
      EXPECT_GT(max_abs_diff(fused.out, kept.out), 1e-3) << "dropout changed nothing";
    }
  }
}

// automatic on the CPU: the materialised kernel below kCpuFusedAttentionMinKeys keys, the
// fused one from there on (bit for bit the explicit choice's results).
TEST(FusedAttention, AutomaticChoosesByKeyCountOnTheCpuAndNamesAreChecked) {
  for (const Case& c : {Case{40, 40, 8, true}, Case{3, kCpuFusedAttentionMinKeys, 4, true}}) {
    const bool long_context = c.Tk >= kCpuFusedAttentionMinKeys;
    const Result automatic = run(AttentionKernel::automatic, inputs_of(c, DType::f32, 1, 2), true, 0.2);
    const Result fused = run(AttentionKernel::fused, inputs_of(c, DType::f32, 1, 2), true, 0.2);
    const Result materialised = run(AttentionKernel::materialized, inputs_of(c, DType::f32, 1, 2), true, 0.2);
    const Result& chosen = long_context ? fused : materialised;
    const Result& other = long_context ? materialised : fused;
    EXPECT_EQ(automatic.out.to_vector<float>(), chosen.out.to_vector<float>()) << c.Tk << " keys";
    EXPECT_EQ(automatic.gq.to_vector<float>(), chosen.gq.to_vector<float>()) << c.Tk << " keys";
    EXPECT_NE(automatic.gk.to_vector<float>(), other.gk.to_vector<float>()) << c.Tk << " keys: the kernels round alike";
  }
  EXPECT_EQ(attention_kernel(), AttentionKernel::automatic);   // every scope restored the default
  EXPECT_EQ(parse_attention_kernel("auto"), AttentionKernel::automatic);
  EXPECT_EQ(parse_attention_kernel("fused"), AttentionKernel::fused);
  EXPECT_EQ(parse_attention_kernel("materialized"), AttentionKernel::materialized);
  expect_error([] { parse_attention_kernel("flash"); }, {"'flash'", "auto, fused, materialized"});
}

}  // namespace
