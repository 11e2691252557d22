// test_tensor.cpp — the Tensor handle, shapes, dtypes, casts, views, printing, factories and
// the Philox random streams.
//
// Handles share storage; Shape arithmetic (numel overflow, broadcasting, dim wrapping);
// f16/bf16 conversions checked exhaustively (every one of the 65536 bit patterns round-trips)
// and against an independent double-precision round-to-nearest-even reference; casts
// between all dtypes; every view (reshape, view, transpose, permute, narrow, select, expand,
// squeeze, unsqueeze, flatten, contiguous) checked for shape, strides, storage sharing and
// values, plus its error message; the printed form; factories; and the random streams:
// Philox known-answer vector, determinism by (seed, offset), independence from the thread
// count, uniform/normal/Gumbel moments, randperm being a permutation.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"

namespace {

using namespace mox;

using mox::testing::expect_error;

Tensor arange_f(int64_t n, const Shape& shape, DType dt = DType::f32) {
  return raw::reshape(arange(0, n, 1, dt), shape);
}
std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// ================================================================================ handle

TEST(TensorHandle, CopiesShareTheImplementation) {
  Tensor a = zeros({2, 3});
  Tensor b = a;
  EXPECT_TRUE(a.is_same(b));
  b.data<float>()[4] = 7.0f;
  EXPECT_EQ(a.to_vector<float>()[4], 7.0f);
  Tensor c = a.clone();
  EXPECT_NE(c.storage(), a.storage());
  c.data<float>()[4] = 1.0f;
  EXPECT_EQ(a.to_vector<float>()[4], 7.0f);
}

TEST(TensorHandle, Accessors) {
  Tensor t = zeros({2, 3, 4}, DType::f64);
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 24u * 8u);
  EXPECT_EQ(t.size(0), 2);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.stride(-2), 4);
  EXPECT_EQ(t.offset(), 0);
  EXPECT_EQ(t.dtype(), DType::f64);
  EXPECT_EQ(t.device(), Device::cpu());
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_FALSE(t.requires_grad());
  EXPECT_TRUE(t.is_leaf());
  expect_error([&] { t.size(3); }, {"dim 3", "rank 3"});
  expect_error([&] { t.stride(-4); }, {"dim -4", "rank 3"});
  Tensor s = scalar_tensor(2.5);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item<float>(), 2.5f);
  expect_error([&] { s.size(0); }, {"0-d"});
}

TEST(TensorHandle, UndefinedTensorsAndWrongTypedAccessThrow) {
  Tensor u;
  EXPECT_FALSE(u.defined());
  expect_error([&] { u.shape(); }, {"undefined"});
  EXPECT_EQ(describe(u), "undefined");
  Tensor t = zeros({2}, DType::f32);
  expect_error([&] { t.data<double>(); }, {"f64", "f32"});
  expect_error([&] { t.item<float>(); }, {"[2]"});
}

TEST(TensorHandle, ItemAndToVectorConvert) {
  Tensor t = from_vector<float>({1.5f, -2.5f, 3.0f}, {3});
  EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{1.5, -2.5, 3.0}));
  EXPECT_EQ(t.to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(t.to_vector<bool>(), (std::vector<bool>{true, true, true}));
  EXPECT_EQ(raw::narrow(t, 0, 1, 1).item<double>(), -2.5);
  EXPECT_EQ(from_vector<uint8_t>({0}, {1}).item<bool>(), false);
}

// ================================================================================ shapes

TEST(Shapes, NumelStridesBroadcastAndWrap) {
  EXPECT_EQ(Shape({2, 3, 4}).numel(), 24);
  EXPECT_EQ(Shape().numel(), 1);
  EXPECT_EQ(Shape({3, 0}).numel(), 0);
  EXPECT_EQ(Shape({2, 3, 4}).last_dim_rows(), 6);   // the [6, 4] view row-wise kernels walk
  EXPECT_EQ(Shape({5}).last_dim_rows(), 1);
  EXPECT_EQ(Shape({3, 0}).last_dim_rows(), 0);      // empty rows: nothing to walk
  EXPECT_EQ(Shape({0, 4}).last_dim_rows(), 0);
  EXPECT_EQ(Shape().last_dim_rows(), 0);
  EXPECT_EQ(contiguous_strides({2, 3, 4}), Shape({12, 4, 1}));
  EXPECT_EQ(contiguous_strides({2, 0, 4}), Shape({4, 4, 1}));
  EXPECT_EQ(broadcast_shapes({3, 1}, {1, 4}), Shape({3, 4}));
  EXPECT_EQ(broadcast_shapes({4}, {2, 3, 4}), Shape({2, 3, 4}));
  EXPECT_EQ(broadcast_shapes({}, {2, 3}), Shape({2, 3}));
  EXPECT_EQ(broadcast_shapes({2, 1, 5}, {3, 1}), Shape({2, 3, 5}));
  expect_error([] { broadcast_shapes({2, 3}, {4, 5}); }, {"[2, 3]", "[4, 5]"});
  EXPECT_EQ(wrap_dim(-1, 3), 2);
  EXPECT_EQ(wrap_dim(0, 0), 0);
  expect_error([] { wrap_dim(3, 3); }, {"dim 3", "rank 3"});
  expect_error([] { Shape({int64_t(1) << 40, int64_t(1) << 40}).numel(); }, {"int64"});
  expect_error([] { Shape({2, -3}).numel(); }, {"-3"});
  // Bytes that fit size_t but not with the allocator's alignment slack: an error, not a wrap.
  expect_error([] { empty({(int64_t(1) << 61) - 1}, DType::f64); }, {"cannot allocate", "18446744073709551608 bytes"});
  expect_error([] { Shape({1, 1, 1, 1, 1, 1, 1, 1, 1}); }, {"at most 8"});
  std::ostringstream os;
  os << Shape({2, 3}) << Shape();
  EXPECT_EQ(os.str(), "[2, 3][]");
}

TEST(Shapes, DeviceParse) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::cuda(1).str(), "cuda:1");
  expect_error([] { Device::parse("gpu"); }, {"'gpu'"});
  expect_error([] { Device::parse("cuda:x"); }, {"'cuda:x'"});
  if (!backend_available(DeviceType::CUDA))
    expect_error([] { zeros({2}, DType::f32, Device::cuda()); }, {"cuda:0", "CUDA"});
}

// ================================================================================ dtypes

TEST(DTypes, NamesSizesKinds) {
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16,
                       DType::i32, DType::i64, DType::u8, DType::boolean};
  const char* names[] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8", "bool"};
  const size_t sizes[] = {4, 8, 2, 2, 4, 8, 1, 1};
  const bool floating[] = {true, true, true, true, false, false, false, false};
  for (int i = 0; i < 8; ++i) {
    EXPECT_STREQ(dtype_name(all[i]), names[i]);
    EXPECT_EQ(dtype_size(all[i]), sizes[i]);
    EXPECT_EQ(is_floating(all[i]), floating[i]);
    Tensor t = zeros({3}, all[i]);
    EXPECT_EQ(t.dtype(), all[i]);
    EXPECT_EQ(t.nbytes(), 3 * sizes[i]);
  }
}

TEST(DTypes, HalfRoundTripsEveryBitPattern) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = half::to_float(uint16_t(b));
    const uint16_t back = half::from_float(f);
    if ((b & 0x7c00u) == 0x7c00u && (b & 0x3ffu)) {   // NaN stays NaN
      ASSERT_TRUE(std::isnan(f)) << b;
      ASSERT_EQ(back & 0x7c00u, 0x7c00u);
      ASSERT_NE(back & 0x3ffu, 0u);
    } else {
      ASSERT_EQ(back, b) << "bits 0x" << std::hex << b << " → " << f;
    }
  }
}

TEST(DTypes, BFloat16RoundTripsEveryBitPattern) {
  for (uint32_t b = 0; b < 65536; ++b) {
    bfloat16 h;
    h.bits = uint16_t(b);
    const float f = float(h);
    const uint16_t back = bfloat16::from_float(f);
    if ((b & 0x7f80u) == 0x7f80u && (b & 0x7fu)) {
      ASSERT_TRUE(std::isnan(f));
      ASSERT_TRUE(std::isnan(float(bfloat16(f))));
    } else {
      ASSERT_EQ(back, b) << "bits 0x" << std::hex << b;
    }
  }
}

// Independent reference: round |f| to a multiple of the format's ulp at its binade (in
// double, where the division and rounding are exact), ties to even by nearbyint.
double ref_round(float f, int mant_bits, int min_exp, double overflow_at) {
  const double a = std::fabs(double(f));
  if (a >= overflow_at) return std::copysign(INFINITY, double(f));
  if (a == 0) return double(f);
  int e;
  std::frexp(a, &e);   // a = m·2^e, m in [0.5, 1): leading bit 2^(e-1)
  const int lead = std::max(e - 1, min_exp);
  const double ulp = std::ldexp(1.0, lead - mant_bits);
  return std::copysign(std::nearbyint(a / ulp) * ulp, double(f));
}

TEST(DTypes, HalfAndBFloat16RoundToNearestEven) {
  Generator gen(11);
  for (int i = 0; i < 200000; ++i) {
    // random floats spanning the half range (2^-26 .. 2^17) and beyond
    uint32_t w[4];
    Philox::draw4(99, uint64_t(i), w);
    const int exp = 127 - 27 + int(w[0] % 46);   // 2^-27 .. 2^18
    const uint32_t bits = (w[1] & 0x80000000u) | (uint32_t(exp) << 23) | (w[2] & 0x7fffffu);
    float f;
    std::memcpy(&f, &bits, 4);
    const double want_h = ref_round(f, 10, -14, 65520.0);
    ASSERT_EQ(double(float(half(f))), want_h) << "half(" << f << ")";
    const double want_b = ref_round(f, 7, -126, 0x1.ffp127 + 0x1p119);
    ASSERT_EQ(double(float(bfloat16(f))), want_b) << "bfloat16(" << f << ")";
  }
  // Hand-picked cases: ties, overflow, subnormals, signed zero, infinities.
  EXPECT_EQ(float(half(1.0f + 0x1p-11f)), 1.0f);                 // tie → even (down)
  EXPECT_EQ(float(half(1.0f + 3 * 0x1p-11f)), 1.0f + 0x1p-9f);   // tie → even (up)
  EXPECT_EQ(float(half(65504.0f)), 65504.0f);
  EXPECT_EQ(float(half(65519.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(float(half(65520.0f))));
  EXPECT_EQ(float(half(0x1p-24f)), 0x1p-24f);                    // smallest subnormal
  EXPECT_EQ(float(half(0x1p-25f)), 0.0f);                        // tie → even (zero)
  EXPECT_EQ(float(half(0x1.8p-25f)), 0x1p-24f);
  EXPECT_EQ(half(-0.0f).bits, 0x8000u);
  EXPECT_EQ(half(-INFINITY).bits, 0xfc00u);
  EXPECT_EQ(float(bfloat16(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(float(bfloat16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);
  EXPECT_TRUE(std::isinf(float(bfloat16(3.4e38f))));
  EXPECT_TRUE(std::isnan(float(bfloat16(NAN))));
}

TEST(DTypes, CastsBetweenAllDtypes) {
  Tensor f = from_vector<float>({-2.7f, -0.0f, 0.5f, 2.7f, 300.0f}, {5});
  EXPECT_EQ(f.to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{-2, 0, 0, 2, 300}));   // toward zero
  EXPECT_EQ(f.to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{-2, 0, 0, 2, 300}));
  EXPECT_EQ(f.to(DType::boolean).to_vector<bool>(), (std::vector<bool>{true, false, true, true, true}));
  EXPECT_EQ(vals(f.to(DType::f16)), (std::vector<double>{-2.69921875, -0.0, 0.5, 2.69921875, 300}));
  EXPECT_EQ(vals(f.to(DType::bf16)), (std::vector<double>{-2.703125, -0.0, 0.5, 2.703125, 300}));
  Tensor b = from_vector<uint8_t>({0, 1, 1}, {3}).to(DType::boolean);
  EXPECT_EQ(b.dtype(), DType::boolean);
  EXPECT_EQ(vals(b.to(DType::f32)), (std::vector<double>{0, 1, 1}));
  EXPECT_EQ(vals(b.to(DType::bf16)), (std::vector<double>{0, 1, 1}));
  Tensor big = from_vector<int64_t>({(int64_t(1) << 53) + 1, -(int64_t(1) << 40)}, {2});
  EXPECT_EQ(big.to(DType::f64).to_vector<double>()[1], -0x1p40);
  EXPECT_EQ(big.to(DType::f64).to(DType::i64).to_vector<int64_t>()[1], -(int64_t(1) << 40));
  Tensor u = from_vector<uint8_t>({0, 200, 255}, {3});
  EXPECT_EQ(vals(u.to(DType::f16)), (std::vector<double>{0, 200, 255}));
  EXPECT_EQ(u.to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{0, 200, 255}));
  Tensor d = from_vector<double>({1.0 + 1e-12, 0.1}, {2});
  EXPECT_EQ(d.to(DType::f32).to_vector<float>(), (std::vector<float>{1.0f, 0.1f}));
  // every dtype through every other and back, on values all of them hold exactly
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8};
  Tensor small = from_vector<double>({0, 1, 2, 7, 64, 100}, {2, 3});
  for (DType a : all)
    for (DType c : all) {
      Tensor r = small.to(a).to(c).to(DType::f64);
      EXPECT_EQ(vals(r), vals(small)) << dtype_name(a) << " → " << dtype_name(c);
      EXPECT_EQ(small.to(a).to(c).dtype(), c);
    }
  // same dtype: the same handle
  EXPECT_TRUE(small.to(DType::f64).is_same(small));
}

TEST(DTypes, CastOfANonContiguousView) {
  Tensor t = arange_f(6, {2, 3});
  Tensor tt = t.transpose(0, 1);   // (3, 2)
  EXPECT_EQ(vals(tt.to(DType::f16)), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(tt.to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(tt.to(DType::f64).is_contiguous());
}

// ================================================================================= views

TEST(Views, ReshapeSharesStorageWhenItCan) {
  Tensor t = arange_f(24, {2, 3, 4});
  Tensor r = t.reshape({6, 4});
  EXPECT_EQ(r.shape(), Shape({6, 4}));
  EXPECT_EQ(r.strides(), Shape({4, 1}));
  EXPECT_EQ(r.storage(), t.storage());
  EXPECT_EQ(t.reshape({4, -1}).shape(), Shape({4, 6}));
  EXPECT_EQ(t.reshape({-1}).shape(), Shape({24}));
  EXPECT_EQ(t.reshape({2, 1, 12, 1}).shape(), Shape({2, 1, 12, 1}));
  r.data<float>()[5] = 100.0f;
  EXPECT_EQ(t.to_vector<float>()[5], 100.0f);
  // A transposed tensor cannot be flattened without a copy: reshape copies, values in order.
  Tensor s = arange_f(6, {2, 3}).transpose(0, 1);
  Tensor f = s.reshape({6});
  EXPECT_NE(f.storage(), s.storage());
  EXPECT_EQ(vals(f), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  // ...but splitting a dim of it is a view
  Tensor g = s.reshape({3, 2, 1});
  EXPECT_EQ(g.storage(), s.storage());
  EXPECT_EQ(arange_f(1, {1, 1}).reshape({}).dim(), 0);
}

TEST(Views, ReshapeAndViewErrorsNameTheShapes) {
  Tensor t = arange_f(24, {2, 3, 4});
  expect_error([&] { t.reshape({5, 5}); }, {"[2, 3, 4]", "[5, 5]"});
  expect_error([&] { t.reshape({-1, -1}); }, {"[2, 3, 4]", "[-1, -1]"});
  expect_error([&] { t.reshape({-1, 5}); }, {"[2, 3, 4]", "[-1, 5]"});
  expect_error([&] { t.view({7}); }, {"[2, 3, 4]", "[7]"});
  Tensor tt = t.transpose(1, 2);
  expect_error([&] { tt.view({24}); }, {"[2, 4, 3]", "[24]", "reshape"});
  expect_error([&] { t.narrow(2, 0, 3).view({18}); }, {"[2, 3, 3]", "[18]"});
  EXPECT_EQ(t.narrow(2, 0, 3).view({6, 3}).shape(), Shape({6, 3}));
  EXPECT_EQ(tt.view({2, 2, 2, 3}).strides(), Shape({12, 2, 1, 4}));
}

TEST(Views, TransposeAndPermute) {
  Tensor t = arange_f(24, {2, 3, 4});
  Tensor tr = t.transpose(0, 2);
  EXPECT_EQ(tr.shape(), Shape({4, 3, 2}));
  EXPECT_EQ(tr.strides(), Shape({1, 4, 12}));
  EXPECT_EQ(tr.storage(), t.storage());
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(t.transpose(-1, -3).shape(), Shape({4, 3, 2}));
  EXPECT_EQ(t.transpose(1, 1).strides(), t.strides());
  // element (i, j, k) of the transpose is t(k, j, i)
  std::vector<double> v = vals(tr);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 2; ++k) EXPECT_EQ(v[size_t((i * 3 + j) * 2 + k)], k * 12 + j * 4 + i);
  Tensor p = t.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), Shape({4, 2, 3}));
  EXPECT_EQ(p.strides(), Shape({1, 12, 4}));
  EXPECT_EQ(t.permute({-1, 0, 1}).shape(), Shape({4, 2, 3}));
  EXPECT_EQ(vals(p.permute({1, 2, 0})), vals(t));
  expect_error([&] { t.permute({0, 0, 1}); }, {"[0, 0, 1]", "repeated"});
  expect_error([&] { t.permute({0, 1}); }, {"[0, 1]", "[2, 3, 4]"});
  expect_error([&] { t.transpose(0, 3); }, {"dim 3", "rank 3"});
}

TEST(Views, NarrowAndSelect) {
  Tensor t = arange_f(12, {3, 4});
  Tensor n = t.narrow(1, 1, 2);
  EXPECT_EQ(n.shape(), Shape({3, 2}));
  EXPECT_EQ(n.strides(), Shape({4, 1}));
  EXPECT_EQ(n.offset(), 1);
  EXPECT_EQ(vals(n), (std::vector<double>{1, 2, 5, 6, 9, 10}));
  EXPECT_EQ(vals(t.narrow(0, 2, 1)), (std::vector<double>{8, 9, 10, 11}));
  EXPECT_EQ(t.narrow(0, 3, 0).numel(), 0);
  raw::fill_(n, -1.0);   // writes through the view
  EXPECT_EQ(vals(t), (std::vector<double>{0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11}));
  expect_error([&] { t.narrow(1, 3, 2); }, {"[3, 5)", "[3, 4]"});
  expect_error([&] { t.narrow(0, -1, 1); }, {"[3, 4]"});
  Tensor s = raw::select(arange_f(12, {3, 4}), 1, 2);
  EXPECT_EQ(s.shape(), Shape({3}));
  EXPECT_EQ(vals(s), (std::vector<double>{2, 6, 10}));
  EXPECT_EQ(vals(raw::select(arange_f(12, {3, 4}), 0, -1)), (std::vector<double>{8, 9, 10, 11}));
  EXPECT_EQ(raw::select(arange_f(3, {3}), 0, 1).dim(), 0);
  expect_error([&] { raw::select(t, 1, 4); }, {"index 4", "[3, 4]"});
}

TEST(Views, ExpandSqueezeUnsqueeze) {
  Tensor t = arange_f(3, {3, 1});
  Tensor e = t.expand({2, 3, 4});
  EXPECT_EQ(e.shape(), Shape({2, 3, 4}));
  EXPECT_EQ(e.strides(), Shape({0, 1, 0}));
  EXPECT_EQ(e.storage(), t.storage());
  std::vector<double> v = vals(e);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(v[size_t(i)], (i / 4) % 3);
  EXPECT_EQ(t.expand({-1, 5}).shape(), Shape({3, 5}));
  EXPECT_EQ(scalar_tensor(4).expand({2, 2}).strides(), Shape({0, 0}));
  expect_error([&] { arange_f(6, {3, 2}).expand({3, 4}); }, {"[3, 2]", "[3, 4]"});
  expect_error([&] { t.expand({3}); }, {"[3, 1]", "[3]"});

  Tensor u = arange_f(3, {1, 3, 1});
  EXPECT_EQ(u.squeeze(0).shape(), Shape({3, 1}));
  EXPECT_EQ(u.squeeze(-1).shape(), Shape({1, 3}));
  EXPECT_EQ(u.squeeze(1).shape(), Shape({1, 3, 1}));   // extent 3: unchanged
  EXPECT_FALSE(u.squeeze(1).is_same(u));                // ...but a new handle
  EXPECT_EQ(arange_f(1, {1}).squeeze(0).dim(), 0);
  expect_error([&] { u.squeeze(3); }, {"dim 3", "rank 3"});

  Tensor w = arange_f(6, {2, 3});
  EXPECT_EQ(w.unsqueeze(0).shape(), Shape({1, 2, 3}));
  EXPECT_EQ(w.unsqueeze(1).shape(), Shape({2, 1, 3}));
  EXPECT_EQ(w.unsqueeze(2).shape(), Shape({2, 3, 1}));
  EXPECT_EQ(w.unsqueeze(-1).shape(), Shape({2, 3, 1}));
  EXPECT_TRUE(w.unsqueeze(1).is_contiguous());
  EXPECT_TRUE(w.transpose(0, 1).unsqueeze(0).transpose(0, 1).unsqueeze(0).dim() == 4);
  EXPECT_EQ(scalar_tensor(1).unsqueeze(0).shape(), Shape({1}));
  EXPECT_EQ(vals(w.transpose(0, 1).unsqueeze(1)), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  expect_error([&] { w.unsqueeze(4); }, {"dim 4", "rank 3"});
}

TEST(Views, FlattenAndContiguous) {
  Tensor t = arange_f(24, {2, 3, 4});
  EXPECT_EQ(t.flatten().shape(), Shape({24}));
  EXPECT_EQ(t.flatten(1).shape(), Shape({2, 12}));
  EXPECT_EQ(t.flatten(0, 1).shape(), Shape({6, 4}));
  EXPECT_EQ(t.flatten(-2, -1).shape(), Shape({2, 12}));
  EXPECT_EQ(t.flatten(1, 1).shape(), Shape({2, 3, 4}));
  EXPECT_EQ(scalar_tensor(3).flatten().shape(), Shape({1}));
  expect_error([&] { t.flatten(2, 1); }, {"start_dim 2", "end_dim 1", "[2, 3, 4]"});
  EXPECT_EQ(vals(t.transpose(0, 2).flatten()), vals(t.transpose(0, 2).contiguous()));

  EXPECT_TRUE(t.contiguous().is_same(t));
  Tensor tr = t.transpose(1, 2);
  Tensor c = tr.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), t.storage());
  EXPECT_EQ(vals(c), vals(tr));
  EXPECT_EQ(c.strides(), Shape({12, 3, 1}));
  // size-1 dims do not break contiguity whatever their stride
  Tensor odd = raw::as_strided(t, {2, 1, 12}, {12, 99, 1}, 0);
  EXPECT_TRUE(odd.is_contiguous());
  EXPECT_FALSE(t.narrow(2, 0, 2).is_contiguous());
  EXPECT_TRUE(t.narrow(0, 1, 1).is_contiguous());
  Tensor cl = t.narrow(2, 1, 2).clone();
  EXPECT_TRUE(cl.is_contiguous());
  EXPECT_EQ(cl.offset(), 0);
  EXPECT_EQ(vals(cl), vals(t.narrow(2, 1, 2)));
}

// A tensor without elements is contiguous whatever its strides (PyTorch's rule): a fresh
// (4, 0) tensor has strides (1, 1), and ops that need contiguous memory take it.
TEST(Views, EmptyTensorsAreContiguous) {
  for (const Shape& s : {Shape{4, 0}, Shape{0, 4}, Shape{2, 0, 3}, Shape{0}}) {
    SCOPED_TRACE(::testing::PrintToString(s));
    EXPECT_TRUE(zeros(s).is_contiguous());
    const Tensor u = raw::uniform(s, 0.0, 1.0);
    EXPECT_EQ(u.shape(), s);
    EXPECT_EQ(u.numel(), 0);
  }
  EXPECT_FALSE(arange_f(6, {2, 3}).transpose(0, 1).is_contiguous());
}

// ============================================================================== printing

TEST(Printing, NestedValuesLikeNumPy) {
  EXPECT_EQ(to_string(arange_f(6, {2, 3})),
            "Tensor(shape=[2, 3], dtype=f32, device=cpu)\n[[0, 1, 2],\n [3, 4, 5]]");
  EXPECT_EQ(to_string(arange_f(8, {2, 2, 2}, DType::i64)),
            "Tensor(shape=[2, 2, 2], dtype=i64, device=cpu)\n[[[0, 1],\n  [2, 3]],\n [[4, 5],\n  [6, 7]]]");
  EXPECT_EQ(to_string(from_vector<double>({0.1, -1e-5, 123456.0}, {3})),
            "Tensor(shape=[3], dtype=f64, device=cpu)\n[0.1, -1e-05, 1.235e+05]");
  EXPECT_EQ(to_string(scalar_tensor(2.5, DType::f64)), "Tensor(shape=[], dtype=f64, device=cpu)\n2.5");
  EXPECT_EQ(to_string(zeros({0, 3})), "Tensor(shape=[0, 3], dtype=f32, device=cpu)\n[]");
  EXPECT_EQ(to_string(from_vector<uint8_t>({1, 0}, {2}).to(DType::boolean)),
            "Tensor(shape=[2], dtype=bool, device=cpu)\n[1, 0]");
  EXPECT_EQ(to_string(arange_f(6, {2, 3}).transpose(0, 1)),
            "Tensor(shape=[3, 2], dtype=f32, device=cpu)\n[[0, 3],\n [1, 4],\n [2, 5]]");
  Tensor g = ones({2});
  g.set_requires_grad();
  EXPECT_EQ(to_string(g), "Tensor(shape=[2], dtype=f32, device=cpu, requires_grad)\n[1, 1]");
  EXPECT_EQ(to_string(Tensor()), "Tensor(undefined)");
  std::ostringstream os;
  os << arange_f(2, {2});
  EXPECT_EQ(os.str(), "Tensor(shape=[2], dtype=f32, device=cpu)\n[0, 1]");
  EXPECT_EQ(describe(zeros({2, 3}, DType::bf16)), "[2, 3] bf16");
}

TEST(Printing, LargeTensorsAreSummarised) {
  std::string s = to_string(arange(0, 2000));
  EXPECT_NE(s.find("[0, 1, 2, ..., 1997, 1998, 1999]"), std::string::npos) << s;
  std::string m = to_string(arange_f(2000, {100, 20}));
  EXPECT_NE(m.find("[[0, 1, 2, ..., 17, 18, 19],\n [20, 21, 22, ..., 37, 38, 39],"), std::string::npos) << m;
  EXPECT_NE(m.find("...,\n [1940,"), std::string::npos) << m;
  EXPECT_LT(m.size(), 600u);
}

// ============================================================================= factories

TEST(Factories, FilledTensors) {
  EXPECT_EQ(vals(zeros({2, 2})), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(vals(ones({3}, DType::i32)), (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(vals(full({2}, 2.5, DType::f16)), (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(vals(full({2}, 3.7, DType::i64)), (std::vector<double>{3, 3}));
  EXPECT_EQ(full({1}, 0.5, DType::boolean).item<bool>(), true);
  Tensor s = scalar_tensor(-4, DType::bf16);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<double>(), -4);
  Tensor t = from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  EXPECT_EQ(empty_like(t).shape(), Shape({3, 2}));
  EXPECT_EQ(vals(zeros_like(t)), std::vector<double>(6, 0.0));
  EXPECT_EQ(vals(ones_like(t.to(DType::u8))), std::vector<double>(6, 1.0));
  EXPECT_EQ(ones_like(t.to(DType::u8)).dtype(), DType::u8);
  EXPECT_EQ(empty({0}).numel(), 0);
  expect_error([] { from_vector<float>({1, 2, 3}, {2, 2}); }, {"3 values", "[2, 2]"});
  Tensor d = from_doubles({1.5, 2.5}, {2}, DType::i32);
  EXPECT_EQ(d.dtype(), DType::i32);
  EXPECT_EQ(d.to_vector<int32_t>(), (std::vector<int32_t>{1, 2}));
  expect_error([] { empty({1LL << 40, 1LL << 22}, DType::f64); }, {"too large"});
}

TEST(Factories, Arange) {
  EXPECT_EQ(arange(0, 5).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(0, 5).dtype(), DType::i64);
  EXPECT_EQ(arange(1, 10, 3).to_vector<int64_t>(), (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(arange(5, 0, -2).to_vector<int64_t>(), (std::vector<int64_t>{5, 3, 1}));
  EXPECT_EQ(arange(-3, 0).to_vector<int64_t>(), (std::vector<int64_t>{-3, -2, -1}));
  EXPECT_EQ(arange(3, 3).numel(), 0);
  EXPECT_EQ(arange(3, 0).numel(), 0);
  EXPECT_EQ(arange(0, -3, 2).numel(), 0);
  EXPECT_EQ(vals(arange(0, 3, 1, DType::f32)), (std::vector<double>{0, 1, 2}));
  expect_error([] { arange(0, 3, 0); }, {"step"});
}

// ================================================================================ random

TEST(Random, PhiloxKnownAnswer) {
  // Random123 kat_vectors, philox4x32_10 with counter 0 and key 0.
  uint32_t w[4];
  Philox::draw4(0, 0, w);
  EXPECT_EQ(w[0], 0x6627e8d5u);
  EXPECT_EQ(w[1], 0xe169c58du);
  EXPECT_EQ(w[2], 0xbc57ac4cu);
  EXPECT_EQ(w[3], 0x9b00dbd8u);
}

TEST(Random, DeterministicBySeedAndOffset) {
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    Generator a(5), b(5), c(6);
    std::vector<double> va = vals(raw::uniform({1000}, 0, 1, dt, Device::cpu(), &a));
    std::vector<double> vb = vals(raw::uniform({1000}, 0, 1, dt, Device::cpu(), &b));
    std::vector<double> vc = vals(raw::uniform({1000}, 0, 1, dt, Device::cpu(), &c));
    EXPECT_EQ(va, vb);
    EXPECT_NE(va, vc);
    EXPECT_EQ(a.offset(), 1000u);
  }
  // Counter-based: two draws of 10 and 20 equal one draw of 30.
  Generator one(8), two(8);
  std::vector<double> all = vals(raw::normal({30}, 0, 1, DType::f64, Device::cpu(), &one));
  std::vector<double> first = vals(raw::normal({10}, 0, 1, DType::f64, Device::cpu(), &two));
  std::vector<double> rest = vals(raw::normal({4, 5}, 0, 1, DType::f64, Device::cpu(), &two));
  first.insert(first.end(), rest.begin(), rest.end());
  EXPECT_EQ(all, first);
  // set_state restores a stream
  Generator g(1);
  g.set_state(8, 10);
  EXPECT_EQ(vals(raw::normal({20}, 0, 1, DType::f64, Device::cpu(), &g)), rest);
  // manual_seed resets the default generator
  manual_seed(42);
  std::vector<double> d1 = vals(raw::uniform({16}, 0, 1));
  manual_seed(42);
  EXPECT_EQ(vals(raw::uniform({16}, 0, 1)), d1);
  EXPECT_EQ(default_generator().offset(), 16u);
}

TEST(Random, IndependentOfThreadCount) {
  const int saved = omp_get_max_threads();
  Generator a(3), b(3);
  omp_set_num_threads(1);
  std::vector<float> one = raw::normal({100000}, 0, 1, DType::f32, Device::cpu(), &a).to_vector<float>();
  omp_set_num_threads(2);
  std::vector<float> two = raw::normal({100000}, 0, 1, DType::f32, Device::cpu(), &b).to_vector<float>();
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
}

struct Moments { double mean, var; };
Moments moments(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m += x;
  m /= double(v.size());
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return {m, s / double(v.size() - 1)};
}

TEST(Random, UniformMomentsAndRange) {
  const int n = 200000;
  Generator g(17);
  std::vector<double> v = vals(raw::uniform({n}, 0, 1, DType::f32, Device::cpu(), &g));
  Moments m = moments(v);
  EXPECT_NEAR(m.mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(m.var, 1.0 / 12, 5 * std::sqrt((1.0 / 80 - 1.0 / 144) / n));
  for (double x : v) ASSERT_TRUE(x >= 0 && x < 1) << x;
  std::vector<double> w = vals(raw::uniform({n}, 2, 5, DType::f64, Device::cpu(), &g));
  Moments mw = moments(w);
  EXPECT_NEAR(mw.mean, 3.5, 5 * 3 * std::sqrt(1.0 / 12 / n));
  bool finer_than_f32 = false;
  for (double x : w) {
    ASSERT_TRUE(x >= 2 && x < 5) << x;
    finer_than_f32 = finer_than_f32 || double(float(x)) != x;
  }
  EXPECT_TRUE(finer_than_f32) << "f64 uniforms should use 53 random bits";
  // 16-bit floats: rounding 1 − 2^-24 to f16/bf16 gives 1; draws must still stay below high.
  for (DType dt : {DType::f16, DType::bf16}) {
    for (auto [lo, hi] : std::vector<std::pair<double, double>>{{0, 1}, {-1, 0}, {2, 5}}) {
      Generator h(41);
      std::vector<double> d = vals(raw::uniform({300000}, lo, hi, dt, Device::cpu(), &h));
      double mx = lo;
      for (double x : d) { ASSERT_GE(x, lo); mx = std::max(mx, x); }
      EXPECT_LT(mx, hi) << dtype_name(dt) << " [" << lo << ", " << hi << ")";
    }
  }
  Tensor in_place = zeros({4, 5}, DType::f64);
  raw::uniform_(in_place, -1, 1, &g);
  for (double x : vals(in_place)) EXPECT_TRUE(x >= -1 && x < 1);
  expect_error([&] { raw::uniform({3}, 2, 1); }, {"low 2", "high 1"});
  expect_error([&] { raw::uniform({3}, 0, 1, DType::i32); }, {"[3] i32"});
  expect_error([&] { raw::uniform_(zeros({3, 4}).transpose(0, 1), 0, 1); }, {"contiguous"});
}

TEST(Random, NormalMoments) {
  const int n = 200000;
  Generator g(23);
  std::vector<double> v = vals(raw::normal({n}, 0, 1, DType::f64, Device::cpu(), &g));
  Moments m = moments(v);
  EXPECT_NEAR(m.mean, 0.0, 5 / std::sqrt(double(n)));
  EXPECT_NEAR(std::sqrt(m.var), 1.0, 5 * std::sqrt(0.5 / n));
  int within = 0;
  for (double x : v) within += std::abs(x) < 1;
  EXPECT_NEAR(double(within) / n, 0.682689492, 5 * std::sqrt(0.6827 * 0.3173 / n));
  std::vector<double> w = vals(raw::normal({n}, 3, 2, DType::f32, Device::cpu(), &g));
  Moments mw = moments(w);
  EXPECT_NEAR(mw.mean, 3.0, 5 * 2 / std::sqrt(double(n)));
  EXPECT_NEAR(std::sqrt(mw.var), 2.0, 5 * 2 * std::sqrt(0.5 / n));
  for (double x : w) ASSERT_TRUE(std::isfinite(x));
  expect_error([&] { raw::normal({3}, 0, -1); }, {"std -1"});
}

TEST(Random, GumbelMoments) {
  const int n = 200000;
  Generator g(29);
  std::vector<double> v = vals(raw::gumbel({n}, DType::f64, Device::cpu(), &g));
  for (double x : v) ASSERT_TRUE(std::isfinite(x));
  Moments m = moments(v);
  const double pi = 3.14159265358979323846;
  const double var = pi * pi / 6;
  EXPECT_NEAR(m.mean, 0.5772156649015329, 5 * std::sqrt(var / n));   // Euler–Mascheroni
  EXPECT_NEAR(m.var, var, 5 * var * std::sqrt(4.4 / n));              // excess kurtosis 2.4
  EXPECT_EQ(raw::gumbel({3}, DType::f32).dtype(), DType::f32);
  Generator a(1), b(1);
  EXPECT_EQ(vals(raw::gumbel({50}, DType::f32, Device::cpu(), &a)),
            vals(raw::gumbel({50}, DType::f32, Device::cpu(), &b)));
}

TEST(Random, RandpermIsAPermutation) {
  Generator g(31);
  for (int64_t n : {0, 1, 2, 10, 1000}) {
    Tensor p = raw::randperm(n, Device::cpu(), &g);
    EXPECT_EQ(p.dtype(), DType::i64);
    EXPECT_EQ(p.shape(), Shape({n}));
    std::vector<int64_t> v = p.to_vector<int64_t>();
    std::sort(v.begin(), v.end());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(v[size_t(i)], i);
  }
  Generator a(2), b(2), c(3);
  std::vector<int64_t> pa = raw::randperm(100, Device::cpu(), &a).to_vector<int64_t>();
  EXPECT_EQ(pa, raw::randperm(100, Device::cpu(), &b).to_vector<int64_t>());
  EXPECT_NE(pa, raw::randperm(100, Device::cpu(), &c).to_vector<int64_t>());
  std::vector<int64_t> identity(100);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(pa, identity);
  // each position is uniform: element 0 lands in each of 4 slots ~1/4 of the time
  int counts[4] = {};
  Generator h(37);
  for (int i = 0; i < 4000; ++i) {
    std::vector<int64_t> q = h.permutation(4);
    counts[std::find(q.begin(), q.end(), 0) - q.begin()]++;
  }
  for (int c4 : counts) EXPECT_NEAR(c4, 1000, 5 * std::sqrt(4000 * 0.25 * 0.75));
  expect_error([] { raw::randperm(-1); }, {"n=-1"});
  for (int i = 0; i < 1000; ++i) ASSERT_LT(h.next_below(7), 7u);
}

}  // namespace
