// test_quantized.cpp — int8 per-channel quantisation, QuantizedLinear and quantize_linears.
//
// The float Linear is the reference: a QuantizedLinear output may differ from it by at most
// Σ_k |x_k|·scale_n/2 (the per-weight rounding bound) plus f32 rounding, and must match
// x·(q·scale)ᵀ + b computed in double to f32 rounding on both kernel paths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "moe/moe_layer.h"
#include "nn/basic.h"
#include "nn/container.h"
#include "nn/quantized.h"
#include "nn/safetensors.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

using namespace mox;
using mox::testing::expect_error;

namespace {

std::vector<int8_t> int8_values(const Tensor& q) {
  std::vector<uint8_t> bytes = q.to_vector<uint8_t>();
  std::vector<int8_t> v(bytes.size());
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

// y = x·(q·scale)ᵀ + b in double, (M, N) row-major, from x (M, K).
std::vector<double> reference(const nn::QuantizedLinear& layer, const Tensor& x) {
  const int64_t K = layer.in_features, N = layer.out_features, M = x.numel() / K;
  std::vector<float> xv = x.to_vector<float>(), s = layer.weight_scale.to_vector<float>();
  std::vector<int8_t> q = int8_values(layer.weight_q);
  std::vector<float> b = layer.bias.defined() ? layer.bias.to_vector<float>() : std::vector<float>(size_t(N), 0.f);
  std::vector<double> y(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(xv[size_t(m * K + k)]) * q[size_t(n * K + k)];
      y[size_t(m * N + n)] = acc * s[size_t(n)] + b[size_t(n)];
    }
  return y;
}

// Checks `layer` on x against the double reference (tight) and against the float Linear
// `fp` (within the quantisation bound).
void check_against(nn::QuantizedLinear& layer, nn::Linear& fp, const Tensor& x) {
  autograd::NoGradGuard no_grad;
  const int64_t K = layer.in_features, N = layer.out_features, M = x.numel() / K;
  std::vector<float> y = layer.forward(x).to_vector<float>(), yf = fp.forward(x).to_vector<float>();
  std::vector<double> ref = reference(layer, x);
  std::vector<float> xv = x.to_vector<float>(), s = layer.weight_scale.to_vector<float>();
  std::vector<float> w = fp.weight.to_vector<float>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double abs_x = 0, abs_xw = 0;
      for (int64_t k = 0; k < K; ++k) {
        abs_x += std::fabs(xv[size_t(m * K + k)]);
        abs_xw += std::fabs(xv[size_t(m * K + k)] * w[size_t(n * K + k)]);
      }
      const size_t i = size_t(m * N + n);
      const double f32_slop = 1e-5 * (abs_xw + abs_x * s[size_t(n)] * 127 + 1.0);
      EXPECT_NEAR(y[i], ref[i], f32_slop) << "row " << m << " col " << n;
      EXPECT_NEAR(y[i], yf[i], abs_x * s[size_t(n)] / 2 + f32_slop) << "row " << m << " col " << n;
    }
}

}  // namespace

// ---------------------------------------------------------------- quantize_per_channel

TEST(Quantize, PerChannelErrorIsAtMostHalfAScale) {
  Generator gen(3);
  Tensor w = raw::normal({16, 37}, 0.0, 0.5, DType::f32, Device::cpu(), &gen);   // (16, 37)
  raw::fill_(raw::select(w, 0, 2), 0.0);                                          // an all-zero row
  raw::mul_(raw::select(w, 0, 5), 1e-30);                                          // a tiny row
  nn::QuantizedWeight qw = nn::quantize_per_channel(w);
  ASSERT_EQ(qw.q.shape(), Shape({16, 37}));
  ASSERT_EQ(qw.q.dtype(), DType::u8);
  ASSERT_EQ(qw.scale.shape(), Shape({16}));
  std::vector<float> wv = w.to_vector<float>(), s = qw.scale.to_vector<float>();
  std::vector<int8_t> q = int8_values(qw.q);
  for (int64_t n = 0; n < 16; ++n) {
    float max_abs = 0;
    int max_q = 0;
    for (int64_t k = 0; k < 37; ++k) {
      const size_t i = size_t(n * 37 + k);
      max_abs = std::max(max_abs, std::fabs(wv[i]));
      max_q = std::max(max_q, std::abs(int(q[i])));
      EXPECT_LE(std::fabs(wv[i] - float(q[i]) * s[size_t(n)]), s[size_t(n)] / 2 * (1 + 1e-6f)) << n << "," << k;
    }
    EXPECT_TRUE(std::isfinite(s[size_t(n)]) && s[size_t(n)] > 0) << n;
    if (n == 2) {
      EXPECT_EQ(s[size_t(n)], 1.0f);
      EXPECT_EQ(max_q, 0);
    } else {
      EXPECT_FLOAT_EQ(s[size_t(n)], max_abs / 127);
      EXPECT_EQ(max_q, 127) << n;
    }
  }
  // dequantize_per_channel is q·scale.
  std::vector<float> d = nn::dequantize_per_channel(qw.q, qw.scale).to_vector<float>();
  for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d[i], float(q[i]) * s[i / 37]);
}

TEST(Quantize, RoundsToNearestEvenAndStoresTwosComplementBytes) {
  Tensor w = from_vector<float>({127, 0.5f, 1.5f, 2.5f, -1, -127, -2.5f, 0}, {2, 4});   // scale 1 each
  nn::QuantizedWeight qw = nn::quantize_per_channel(w);
  EXPECT_EQ(qw.scale.to_vector<float>(), (std::vector<float>{1, 1}));
  EXPECT_EQ(int8_values(qw.q), (std::vector<int8_t>{127, 0, 2, 2, -1, -127, -2, 0}));
  EXPECT_EQ(qw.q.to_vector<uint8_t>()[4], 0xFF);   // -1
  EXPECT_EQ(qw.q.to_vector<uint8_t>()[5], 0x81);   // -127
}

TEST(Quantize, RefusesNonFiniteAndNonMatrixWeights) {
  Tensor w = zeros({3, 4});
  raw::fill_(raw::narrow(raw::select(w, 0, 1), 0, 2, 1), std::nan(""));
  expect_error([&] { nn::quantize_per_channel(w); }, {"non-finite", "row 1", "column 2"});
  expect_error([] { nn::quantize_per_channel(zeros({4})); }, {"(out, in)", "[4]"});
  expect_error([] { nn::quantize_per_channel(zeros({2, 2}, DType::i64)); }, {"floating-point"});
}

// ---------------------------------------------------------------- QuantizedLinear

TEST(QuantizedLinear, MatchesFloatLinearOnBothKernelPaths) {
  Generator gen(11);
  nn::Linear fp(64, 48, true, &gen);
  auto q = nn::QuantizedLinear::from_linear(fp);
  EXPECT_EQ(q->repr(), "QuantizedLinear(in=64, out=48, int8)");
  EXPECT_TRUE(q->named_parameters().empty());   // buffers only: nothing to train
  Tensor few = raw::normal({2, 64}, 0, 1, DType::f32, Device::cpu(), &gen);         // M = 2: int8 loop
  Tensor many = raw::normal({3, 5, 64}, 0, 1, DType::f32, Device::cpu(), &gen);     // M = 15: dequant + BLAS
  check_against(*q, fp, few);
  check_against(*q, fp, many);
  autograd::NoGradGuard no_grad;
  EXPECT_EQ(q->forward(many).shape(), Shape({3, 5, 48}));
  EXPECT_EQ(q->forward(zeros({0, 64})).shape(), Shape({0, 48}));
}

TEST(QuantizedLinear, DequantisesInSeveralBlocksWhenTheWeightIsLarge) {
  const int64_t K = 4096, N = 300;   // 256 weight rows per scratch block: blocks of 256 and 44
  ASSERT_LT(nn::QuantizedLinear::kScratchFloats / K, N);
  Generator gen(5);
  nn::Linear fp(K, N, false, &gen);
  auto q = nn::QuantizedLinear::from_linear(fp);
  EXPECT_FALSE(q->bias.defined());
  check_against(*q, fp, raw::normal({nn::QuantizedLinear::kDirectRows + 1, K}, 0, 1, DType::f32, Device::cpu(), &gen));
  check_against(*q, fp, raw::normal({1, K}, 0, 1, DType::f32, Device::cpu(), &gen));
}

TEST(QuantizedLinear, StateDictRoundTripsThroughSafetensors) {
  const mox::testing::TempDir dir("mox-quant");
  const std::string path = dir.path("q.safetensors");
  Generator gen(1);
  nn::Linear a(24, 10, true, &gen), b(24, 10, true, &gen);
  auto qa = nn::QuantizedLinear::from_linear(a), qb = nn::QuantizedLinear::from_linear(b);
  nn::save_safetensors(path, qa->state_dict());
  nn::SafetensorsFile f = nn::load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[0].first, "weight_q");
  EXPECT_EQ(f.tensors[0].second.dtype(), DType::u8);
  EXPECT_EQ(f.tensors[1].first, "weight_scale");
  EXPECT_EQ(f.tensors[2].first, "bias");
  qb->load_state_dict(f.tensors);
  Tensor x = raw::normal({12, 24}, 0, 1, DType::f32, Device::cpu(), &gen);
  autograd::NoGradGuard no_grad;
  EXPECT_EQ(qb->forward(x).to_vector<float>(), qa->forward(x).to_vector<float>());
}

TEST(QuantizedLinear, RefusesWhatItCannotCompute) {
  Generator gen(2);
  nn::Linear fp(8, 4, true, &gen);
  auto q = nn::QuantizedLinear::from_linear(fp);
  Tensor x = raw::normal({2, 8}, 0, 1, DType::f32, Device::cpu(), &gen);
  x.set_requires_grad(true);
  expect_error([&] { q->forward(x); }, {"inference-only", "NoGradGuard"});
  autograd::NoGradGuard no_grad;
  expect_error([&] { q->forward(zeros({2, 7})); }, {"[2, 7]", "in_features=8"});
  expect_error([&] { q->forward(zeros({2, 8}, DType::f64)); }, {"f32", "f64"});
  expect_error([] { nn::QuantizedLinear(zeros({2, 3}), ones({2})); }, {"weight_q", "u8"});
  expect_error([] { nn::QuantizedLinear(zeros({2, 3}, DType::u8), ones({3})); }, {"weight_scale", "(2) f32"});
  expect_error([] { nn::QuantizedLinear(zeros({2, 3}, DType::u8), ones({2}), ones({3})); }, {"bias", "(2) f32"});
}

// ---------------------------------------------------------------- quantize_linears

TEST(QuantizeLinears, SwapsEveryLinearOfASequentialTree) {
  Generator gen(4);
  auto inner = std::make_shared<nn::Sequential>(
      std::initializer_list<std::shared_ptr<nn::Module>>{std::make_shared<nn::Linear>(6, 6, true, &gen)});
  nn::Sequential model{std::make_shared<nn::Linear>(5, 6, true, &gen), std::make_shared<nn::ReLU>(), inner,
                       std::make_shared<nn::Linear>(6, 3, false, &gen)};
  Tensor x = raw::normal({4, 5}, 0, 1, DType::f32, Device::cpu(), &gen);
  autograd::NoGradGuard no_grad;
  std::vector<float> y_float = model.forward(x).to_vector<float>();

  EXPECT_EQ(nn::quantize_linears(model), 3);
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(&model[0]), nullptr);   // Sequential::forward's list too
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(&(*inner)[0]), nullptr);
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(&model[3]), nullptr);
  std::vector<std::string> keys;
  for (auto& [name, t] : model.state_dict()) keys.push_back(name);
  EXPECT_EQ(keys, (std::vector<std::string>{"0.weight_q", "0.weight_scale", "0.bias", "2.0.weight_q",
                                            "2.0.weight_scale", "2.0.bias", "3.weight_q", "3.weight_scale"}));
  std::vector<float> y = model.forward(x).to_vector<float>();
  ASSERT_EQ(y.size(), y_float.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], y_float[i], 0.05) << i;
  EXPECT_NE(y, y_float);   // the int8 layers ran
  EXPECT_EQ(nn::quantize_linears(model), 0);   // nothing left to swap
}

TEST(QuantizeLinears, ReplaceModuleKeepsTheNameAndPlace) {
  nn::Sequential model{std::make_shared<nn::Linear>(4, 4), std::make_shared<nn::ReLU>(),
                       std::make_shared<nn::Linear>(4, 2)};
  auto tanh = std::make_shared<nn::Tanh>();
  std::shared_ptr<nn::Module> old = model.replace_module("1", tanh);
  EXPECT_NE(dynamic_cast<nn::ReLU*>(old.get()), nullptr);
  EXPECT_EQ(&model[1], tanh.get());
  EXPECT_EQ(model.children()[1].first, "1");
  EXPECT_EQ(model.children()[1].second, tanh);
  expect_error([&] { model.replace_module("3", tanh); }, {"no child module '3'", "children: 0, 1, 2"});
  expect_error([&] { model.replace_module("0", nullptr); }, {"'0'", "null"});
}

TEST(QuantizeLinears, SkipLeavesChosenLinearsInFloat) {
  nn::Sequential model{std::make_shared<nn::Linear>(4, 4), std::make_shared<nn::Linear>(4, 2)};
  EXPECT_EQ(nn::quantize_linears(model, [](const std::string& path, const nn::Linear& l) {
              return path == "1" && l.out_features == 2;
            }),
            1);
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(&model[0]), nullptr);
  EXPECT_NE(dynamic_cast<nn::Linear*>(&model[1]), nullptr);
}

namespace {
// A parent that calls a Linear through its own typed member: swapping it in the registry
// alone would not change what forward() runs.
struct TypedHolder : nn::Module {
  TypedHolder() {
    list = register_module("list", std::make_shared<nn::ModuleList>());
    list->push_back(std::make_shared<nn::Linear>(3, 3));
    fc = register_module("fc", std::make_shared<nn::Linear>(3, 3));
  }
  Tensor forward(const Tensor& x) override { return fc->forward((*list)[0].forward(x)); }
  std::string repr() const override { return "TypedHolder"; }
  std::shared_ptr<nn::ModuleList> list;
  std::shared_ptr<nn::Linear> fc;
};
}  // namespace

TEST(QuantizeLinears, RefusesALinearHeldOutsideTheRegistryAndChangesNothing) {
  TypedHolder model;
  expect_error([&] { nn::quantize_linears(model); }, {"'fc'", "TypedHolder", "replace_module", "skip"});
  EXPECT_NE(dynamic_cast<nn::Linear*>(&(*model.list)[0]), nullptr);   // the list's swap was undone
  EXPECT_EQ(model.state_dict()[0].first, "list.0.weight");
  EXPECT_EQ(nn::quantize_linears(model, [](const std::string& p, const nn::Linear&) { return p == "fc"; }), 1);
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(&(*model.list)[0]), nullptr);
}

TEST(QuantizeLinears, ReachesLinearsInsideMoEExperts) {
  moe::MoEConfig cfg;
  cfg.gate.num_experts = 2;
  cfg.gate.capacity_factor = cfg.gate.eval_capacity_factor = 2.0;
  Generator init(9);
  auto mlp_expert = [&] {
    return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(8, 16, true, &init), std::make_shared<nn::ReLU>(),
        std::make_shared<nn::Linear>(16, 8, true, &init)});
  };
  moe::MoE layer(8, mlp_expert, cfg);
  // The router is a typed member of the gate (and stays f32 by design): it must be skipped.
  expect_error([&] { nn::quantize_linears(layer); }, {"'gate.wg'"});
  auto not_router = [](const std::string& path, const nn::Linear&) { return path == "gate.wg"; };
  EXPECT_EQ(nn::quantize_linears(layer, not_router), 4);   // 2 experts × 2 Linears
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(&dynamic_cast<nn::Sequential&>((*layer.experts)[1])[2]), nullptr);
  layer.eval();
  autograd::NoGradGuard no_grad;
  EXPECT_EQ(layer.forward(raw::normal({5, 8}, 0, 1)).shape(), Shape({5, 8}));

  // Experts that are a bare Linear are swapped in the Experts list itself.
  moe::MoE bare(8, [&] { return std::make_shared<nn::Linear>(8, 8, true, &init); }, cfg);
  EXPECT_EQ(nn::quantize_linears(bare, not_router), 2);
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(&(*bare.experts)[0]), nullptr);
  EXPECT_EQ(bare.forward(raw::normal({5, 8}, 0, 1)).shape(), Shape({5, 8}));
}
