// test_cuda_ops.cpp — the CUDA backend's elementwise, reduction, indexing, random and optimizer
// kernels (tensor/cuda/{elementwise,reduce,index,random,optim}.cu) against the CPU reference.
//
// Every op runs through its public front-end (raw:: ops in tensor/ops.h; the optimizers of
// nn/optim/) once on CPU tensors and once on CUDA tensors holding the same values, and the
// results are compared: f32 within rtol = atol = 1e-3 (PyTorch's CPU/CUDA tolerance), f16
// and bf16 within 1e-2, f64 within 1e-9, integer, boolean and index results exactly. Results
// the CUDA kernels promise to reproduce bit for bit are compared exactly: casts, fills,
// gathers, scatter_add/index_add (deterministic, in the CPU's order), topk/argsort (ties and
// NaN included), uniform random numbers and f32/f16/bf16 normals. Inputs cover several
// dtypes, broadcast (stride-0), transposed and sliced (offset, stride-2) operands — built
// on the device, since copying to the device makes a tensor contiguous — and empty tensors.
//
// Without a GPU (or a CUDA build) every test skips, naming the reason (REQUIRE_CUDA).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "nn/optim/adam.h"
#include "nn/optim/sgd.h"
#include "tensor/ops.h"
#include "tests/cuda_test.h"

namespace {

using namespace mox;
using mox::testing::cuda;
using mox::testing::expect_close;
using mox::testing::expect_equal;
using std::vector;

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

const DType kFloats[] = {DType::f32, DType::f64, DType::f16, DType::bf16};
const DType kInts[] = {DType::i32, DType::i64, DType::u8};
const DType kAll[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8, DType::boolean};

double tol(DType t) {
  switch (t) {
    case DType::f32: return 1e-3;
    case DType::f64: return 1e-9;
    case DType::f16: case DType::bf16: return 1e-2;
    default: return 0;
  }
}

// The CUDA result against the CPU one, with the dtype's tolerance (exact for integers).
void expect_match(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  ASSERT_TRUE(gpu.device().is_cuda()) << what;
  ASSERT_TRUE(cpu.device().is_cpu()) << what;
  const double t = tol(cpu.dtype());
  if (t == 0) expect_equal(gpu, cpu, what);
  else expect_close(gpu, cpu, t, t, what);
}

std::string name(DType t) { return dtype_name(t); }

// Uniform values in [lo, hi) (f64 draws cast to `dtype`; integers truncate toward zero).
Tensor rnd(const Shape& s, uint64_t seed, DType dtype = DType::f32, double lo = -2, double hi = 2) {
  Generator g(seed);
  return raw::to_dtype(raw::uniform(s, lo, hi, DType::f64, Device::cpu(), &g), dtype);
}

// Integers in [lo, hi] as `dtype` (bool: 0/1).
Tensor ints(const Shape& s, uint64_t seed, DType dtype, int64_t lo, int64_t hi) {
  Generator g(seed);
  vector<double> v(size_t(s.numel()));
  for (double& x : v) x = double(lo + int64_t(g.next_below(uint64_t(hi - lo + 1))));
  return from_doubles(v, s, dtype);
}

// Values of dtype t suitable for most ops: floats in [lo, hi), integers in a small range.
Tensor values(const Shape& s, uint64_t seed, DType t, double lo = -2, double hi = 2) {
  if (is_floating(t)) return rnd(s, seed, t, lo, hi);
  if (t == DType::boolean) return ints(s, seed, t, 0, 1);
  if (t == DType::u8) return ints(s, seed, t, 0, 200);
  return ints(s, seed, t, -50, 50);
}

// The same values on the CPU and on the GPU, in one of three layouts. The CUDA view is built
// on the device (to_device would make it contiguous).
struct Both {
  Tensor cpu, gpu;
};
enum class Layout { contiguous, transposed, sliced };
const Layout kLayouts[] = {Layout::contiguous, Layout::transposed, Layout::sliced};
const char* layout_name(Layout l) {
  return l == Layout::contiguous ? "contiguous" : l == Layout::transposed ? "transposed" : "sliced";
}

Both both(const Tensor& t, Layout layout = Layout::contiguous) {
  if (layout == Layout::transposed && t.dim() >= 2) {
    Tensor tt = raw::contiguous(raw::transpose(t, -1, -2));
    return {raw::transpose(tt, -1, -2), raw::transpose(cuda(tt), -1, -2)};
  }
  if (layout == Layout::sliced && t.dim() >= 1) {
    // Every other element of a tensor twice as wide in its last dim, starting at offset 1.
    Shape wide_shape = t.shape();
    wide_shape[wide_shape.size() - 1] *= 2;
    Tensor wide = zeros(wide_shape, t.dtype());
    Shape st = contiguous_strides(wide_shape);
    st[st.size() - 1] = 2;
    Tensor view = raw::as_strided(wide, t.shape(), st, 1);
    raw::copy_(view, t);
    return {view, raw::as_strided(cuda(wide), t.shape(), st, 1)};
  }
  return {t, cuda(t)};
}

// ============================================================================ elementwise

TEST(CudaElementwise, CastsBetweenEveryDtypePair) {
  REQUIRE_CUDA();
  const vector<double> nonneg = {0, 1, 2.5, 3, 7.75, 100, 0.5, 42, 1, 0, 13, 200};
  const vector<double> signed_v = {-3.5, -1, 0, 2, -100, 5.25, 1, -0.5, 7, -7, 0, 120};
  for (DType s : kAll)
    for (DType d : kAll) {
      for (int sign = 0; sign < 2; ++sign) {
        if (sign && (s == DType::u8 || s == DType::boolean || d == DType::u8)) continue;   // out of range: undefined
        Tensor src = from_doubles(sign ? signed_v : nonneg, {3, 4}, s);
        for (Layout l : kLayouts) {
          Both b = both(src, l);
          expect_match(raw::to_dtype(b.gpu, d), raw::to_dtype(b.cpu, d),
                       name(s) + " -> " + name(d) + " " + layout_name(l) + (sign ? " signed" : ""));
        }
      }
    }
}

TEST(CudaElementwise, CopyIntoStridedDestinationBroadcastsAndCasts) {
  REQUIRE_CUDA();
  for (DType d : kAll) {
    Tensor base = zeros({4, 3}, d);
    Tensor gbase = cuda(base);
    Tensor src = ints({4}, 7, DType::i32, 0, 9);   // (4) broadcast to (3, 4), cast to d
    raw::copy_(raw::transpose(base, 0, 1), src);
    raw::copy_(raw::transpose(gbase, 0, 1), cuda(src));
    expect_match(gbase, base, "copy_ into a transposed " + name(d));
  }
  // contiguous() of permuted and narrowed views
  for (DType d : kAll) {
    Tensor t = values({3, 4, 5}, 11, d);
    Both b = both(t);
    expect_match(raw::contiguous(raw::permute(b.gpu, {2, 0, 1})), raw::contiguous(raw::permute(b.cpu, {2, 0, 1})),
                 "permute " + name(d));
    expect_match(raw::contiguous(raw::narrow(b.gpu, 1, 1, 2)), raw::contiguous(raw::narrow(b.cpu, 1, 1, 2)),
                 "narrow " + name(d));
    expect_match(raw::contiguous(raw::expand(raw::narrow(b.gpu, 0, 1, 1), {6, 4, 5})),
                 raw::contiguous(raw::expand(raw::narrow(b.cpu, 0, 1, 1), {6, 4, 5})), "expand " + name(d));
  }
}

TEST(CudaElementwise, FillStridedViews) {
  REQUIRE_CUDA();
  for (DType d : kAll) {
    for (double v : {3.75, 0.0, 1.0, 200.0}) {
      Tensor base = zeros({3, 5}, d);
      Tensor gbase = cuda(base);
      raw::fill_(raw::narrow(base, 1, 1, 3), v);
      raw::fill_(raw::narrow(gbase, 1, 1, 3), v);
      raw::fill_(raw::select(raw::transpose(base, 0, 1), 0, 4), v / 2);   // column 4: stride 5
      raw::fill_(raw::select(raw::transpose(gbase, 0, 1), 0, 4), v / 2);
      expect_match(gbase, base, "fill " + name(d) + " " + std::to_string(v));
    }
  }
  Tensor g = full({2, 3}, -1.5, DType::f32, Device::cuda());
  expect_match(g, full({2, 3}, -1.5), "full");
}

const UnaryOp kUnaryOps[] = {UnaryOp::neg,  UnaryOp::abs,  UnaryOp::exp,     UnaryOp::log,  UnaryOp::sqrt,
                             UnaryOp::rsqrt, UnaryOp::sin, UnaryOp::cos,     UnaryOp::tanh, UnaryOp::sigmoid,
                             UnaryOp::relu, UnaryOp::gelu, UnaryOp::gelu_tanh, UnaryOp::silu, UnaryOp::square,
                             UnaryOp::reciprocal};
bool positive_domain(UnaryOp op) {
  return op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::rsqrt || op == UnaryOp::reciprocal;
}

TEST(CudaElementwise, UnaryOpsOnFloats) {
  REQUIRE_CUDA();
  for (UnaryOp op : kUnaryOps)
    for (DType d : kFloats)
      for (Layout l : kLayouts) {
        Tensor x = positive_domain(op) ? rnd({7, 33}, 3, d, 0.1, 3) : rnd({7, 33}, 3, d, -3, 3);
        Both b = both(x, l);
        expect_match(raw::unary(op, b.gpu), raw::unary(op, b.cpu),
                     std::string(unary_name(op)) + " " + name(d) + " " + layout_name(l));
      }
  // Special values: the same NaN/inf/zero handling (relu(NaN) = 0, log(−1) = NaN, 1/−0 = −inf, …).
  for (UnaryOp op : kUnaryOps)
    for (DType d : {DType::f32, DType::f64}) {
      Tensor x = from_doubles({kNaN, kInf, -kInf, 0.0, -0.0, -1.0, 1.0, 50.0}, {8}, d);
      expect_match(raw::unary(op, cuda(x)), raw::unary(op, x), std::string(unary_name(op)) + " specials " + name(d));
    }
}

TEST(CudaElementwise, UnaryOpsOnIntegers) {
  REQUIRE_CUDA();
  for (UnaryOp op : {UnaryOp::neg, UnaryOp::abs, UnaryOp::relu, UnaryOp::square})
    for (DType d : kInts)
      for (Layout l : kLayouts) {
        Tensor x = d == DType::u8 ? ints({5, 6}, 4, d, 0, 255) : ints({5, 6}, 4, d, -1000, 1000);
        Both b = both(x, l);
        expect_match(raw::unary(op, b.gpu), raw::unary(op, b.cpu),
                     std::string(unary_name(op)) + " " + name(d) + " " + layout_name(l));
      }
}

TEST(CudaElementwise, UnaryBackward) {
  REQUIRE_CUDA();
  for (UnaryOp op : kUnaryOps)
    for (DType d : kFloats) {
      Tensor x = positive_domain(op) ? rnd({6, 9}, 5, d, 0.2, 3) : rnd({6, 9}, 5, d, -3, 3);
      Tensor y = raw::unary(op, x);   // the same y on both devices: only the backward is compared
      Tensor gy = rnd({6, 9}, 6, d);
      Both bx = both(x, Layout::sliced), by = both(y), bg = both(gy, Layout::transposed);
      expect_match(raw::unary_backward(op, bx.gpu, by.gpu, bg.gpu), raw::unary_backward(op, bx.cpu, by.cpu, bg.cpu),
                   std::string(unary_name(op)) + " backward " + name(d));
    }
}

const BinaryOp kArith[] = {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div,
                           BinaryOp::maximum, BinaryOp::minimum, BinaryOp::pow};
const BinaryOp kCompare[] = {BinaryOp::eq, BinaryOp::ne, BinaryOp::lt, BinaryOp::le, BinaryOp::gt, BinaryOp::ge};

// Operands for `op` on dtype d: divisors non-zero, pow within range.
std::pair<Tensor, Tensor> binary_operands(BinaryOp op, DType d, const Shape& sa, const Shape& sb, uint64_t seed) {
  if (op == BinaryOp::pow) {
    if (is_floating(d)) return {rnd(sa, seed, d, 0.5, 2), rnd(sb, seed + 1, d, -2, 2)};
    if (d == DType::u8) return {ints(sa, seed, d, 0, 4), ints(sb, seed + 1, d, 0, 3)};
    return {ints(sa, seed, d, -3, 3), ints(sb, seed + 1, d, 0, 4)};
  }
  if (op == BinaryOp::div) {
    if (is_floating(d)) {   // |b| in [0.5, 2]
      Tensor mag = rnd(sb, seed + 1, d, 0.5, 2);
      Tensor sign = raw::binary_scalar(BinaryOp::sub, raw::binary_scalar(BinaryOp::mul, ints(sb, seed + 2, d, 0, 1), 2), 1);
      return {rnd(sa, seed, d), raw::mul(mag, sign)};
    }
    if (d == DType::u8) return {ints(sa, seed, d, 0, 255), ints(sb, seed + 1, d, 1, 7)};
    Tensor b = ints(sb, seed + 1, d, 1, 7);
    if (seed % 2) b = raw::unary(UnaryOp::neg, b);
    return {ints(sa, seed, d, -100, 100), b};
  }
  if (d == DType::boolean) return {ints(sa, seed, d, 0, 1), ints(sb, seed + 1, d, 0, 1)};
  return {values(sa, seed, d), values(sb, seed + 1, d)};
}

TEST(CudaElementwise, BinaryOpsBroadcastAndStrided) {
  REQUIRE_CUDA();
  for (DType d : kAll) {
    vector<BinaryOp> ops(std::begin(kCompare), std::end(kCompare));
    if (d != DType::boolean) ops.insert(ops.end(), std::begin(kArith), std::end(kArith));
    for (BinaryOp op : ops) {
      const std::string what = std::string(binary_name(op)) + " " + name(d);
      // broadcast: (5, 1, 4) op (3, 1) → (5, 3, 4)
      auto [a, b] = binary_operands(op, d, {5, 1, 4}, {3, 1}, 21);
      expect_match(raw::binary(op, cuda(a), cuda(b)), raw::binary(op, a, b), what + " broadcast");
      // transposed op sliced, same shape
      auto [c, e] = binary_operands(op, d, {6, 7}, {6, 7}, 22);
      Both bc = both(c, Layout::transposed), be = both(e, Layout::sliced);
      expect_match(raw::binary(op, bc.gpu, be.gpu), raw::binary(op, bc.cpu, be.cpu), what + " strided");
      // 0-d operand
      auto [f, s] = binary_operands(op, d, {4, 3}, {}, 23);
      expect_match(raw::binary(op, cuda(f), cuda(s)), raw::binary(op, f, s), what + " 0-d");
    }
  }
}

TEST(CudaElementwise, BinarySpecialValues) {
  REQUIRE_CUDA();
  // NaN in maximum/minimum (a NaN in a yields b, as `a >= b ? a : b`), comparisons, arithmetic
  for (DType d : kFloats) {
    Tensor a = from_doubles({kNaN, 1, kNaN, 2, kInf, -kInf, 0.0, -0.0}, {8}, d);
    Tensor b = from_doubles({1, kNaN, kNaN, 2, kInf, kInf, -0.0, 0.0}, {8}, d);
    for (BinaryOp op : kArith) expect_match(raw::binary(op, cuda(a), cuda(b)), raw::binary(op, a, b), std::string(binary_name(op)) + " specials " + name(d));
    for (BinaryOp op : kCompare) expect_match(raw::binary(op, cuda(a), cuda(b)), raw::binary(op, a, b), std::string(binary_name(op)) + " specials " + name(d));
  }
  // integer division truncates toward zero; MIN / −1 wraps
  Tensor a = from_vector<int32_t>({7, -7, 7, -7, std::numeric_limits<int32_t>::min(), 5}, {6});
  Tensor b = from_vector<int32_t>({2, 2, -2, -2, -1, -1}, {6});
  expect_match(raw::div(cuda(a), cuda(b)), raw::div(a, b), "i32 div");
  Tensor a64 = from_vector<int64_t>({7, -7, std::numeric_limits<int64_t>::min(), 3}, {4});
  Tensor b64 = from_vector<int64_t>({-3, 3, -1, -1}, {4});
  expect_match(raw::div(cuda(a64), cuda(b64)), raw::div(a64, b64), "i64 div");
  // u8 arithmetic wraps
  Tensor u = from_vector<uint8_t>({250, 3, 0, 128}, {4}), v = from_vector<uint8_t>({10, 5, 1, 2}, {4});
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul})
    expect_match(raw::binary(op, cuda(u), cuda(v)), raw::binary(op, u, v), std::string(binary_name(op)) + " u8 wrap");
  // integer pow exactly (3^4 = 81, 2^10, (−3)^3, x^0 = 1, 0^0 = 1, 3^39 > 2^53), negative
  // exponents (0^-1 = 0, (−1)^-3 = −1, 2^-1 = 0) and overflow wrapping (2^63, 3^40)
  Tensor p = from_vector<int64_t>({3, 2, -3, 5, 0, 7, -1, 3, 0, -1, 2, 2, 3}, {13}),
         q = from_vector<int64_t>({4, 10, 3, 0, 0, 9, 7, 39, -1, -3, -1, 63, 40}, {13});
  expect_match(raw::binary(BinaryOp::pow, cuda(p), cuda(q)), raw::binary(BinaryOp::pow, p, q), "i64 pow");
}

TEST(CudaElementwise, BinaryScalar) {
  REQUIRE_CUDA();
  for (DType d : kAll) {
    vector<BinaryOp> ops(std::begin(kCompare), std::end(kCompare));
    if (d != DType::boolean) ops.insert(ops.end(), std::begin(kArith), std::end(kArith));
    for (BinaryOp op : ops)
      for (bool reversed : {false, true}) {
        const std::string what = std::string(binary_name(op)) + " scalar " + name(d) + (reversed ? " reversed" : "");
        double s = is_floating(d) ? -0.75 : 3;
        Tensor x = values({6, 7}, 31, d);
        if (is_comparison(op)) {
          s = is_floating(d) ? 0.25 : 2.5;   // integers compare against 2.5 in double
        } else if (op == BinaryOp::pow) {
          x = is_floating(d) ? rnd({6, 7}, 31, d, 0.5, 2) : ints({6, 7}, 31, d, 0, 3);
          s = is_floating(d) ? 1.5 : 2;
        } else if (op == BinaryOp::div && reversed) {
          x = is_floating(d) ? rnd({6, 7}, 31, d, 0.5, 2) : ints({6, 7}, 31, d, 1, 9);
        }
        for (Layout l : {Layout::contiguous, Layout::transposed}) {
          Both b = both(x, l);
          expect_match(raw::binary_scalar(op, b.gpu, s, reversed), raw::binary_scalar(op, b.cpu, s, reversed),
                       what + " " + layout_name(l));
        }
      }
  }
}

TEST(CudaElementwise, WhereBroadcasts) {
  REQUIRE_CUDA();
  for (DType d : kAll) {
    Tensor cond = ints({3, 1}, 41, DType::boolean, 0, 1);
    Tensor a = values({1, 4}, 42, d), b = values({4}, 43, d);
    expect_match(raw::where(cuda(cond), cuda(a), cuda(b)), raw::where(cond, a, b), "where " + name(d));
    Tensor c2 = ints({5, 6}, 44, DType::boolean, 0, 1);
    Both bc = both(c2, Layout::transposed), ba = both(values({5, 6}, 45, d), Layout::sliced);
    Tensor s = values({}, 46, d);
    expect_match(raw::where(bc.gpu, ba.gpu, cuda(s)), raw::where(bc.cpu, ba.cpu, s), "where strided " + name(d));
  }
}

TEST(CudaElementwise, InPlaceAxpyAndScale) {
  REQUIRE_CUDA();
  for (DType d : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8}) {
    const double alpha = is_floating(d) ? -0.5 : 2;
    // contiguous, same shape: the backend's axpy
    Tensor y = values({4, 9}, 51, d), x = values({4, 9}, 52, d);
    Tensor gy = cuda(y);
    raw::add_(y, x, alpha);
    raw::add_(gy, cuda(x), alpha);
    expect_match(gy, y, "add_ (axpy) " + name(d));
    // strided destination and broadcast source: binary + copy_
    Tensor base = values({9, 4}, 53, d), row = values({9}, 54, d);
    Tensor gbase = cuda(base);
    raw::add_(raw::transpose(base, 0, 1), row, alpha);
    raw::add_(raw::transpose(gbase, 0, 1), cuda(row), alpha);
    expect_match(gbase, base, "add_ strided " + name(d));
    // mul_ in place (binary_scalar with out aliasing its input)
    Tensor m = values({3, 5}, 55, d);
    Tensor gm = cuda(m);
    raw::mul_(m, is_floating(d) ? 1.5 : 3);
    raw::mul_(gm, is_floating(d) ? 1.5 : 3);
    expect_match(gm, m, "mul_ " + name(d));
  }
}

TEST(CudaElementwise, EmptyTensors) {
  REQUIRE_CUDA();
  for (DType d : {DType::f32, DType::i64, DType::f16}) {
    Tensor a = values({0, 3}, 1, d), b = values({1, 3}, 2, d);
    expect_match(raw::add(cuda(a), cuda(b)), raw::add(a, b), "add empty " + name(d));
    expect_match(raw::binary(BinaryOp::lt, cuda(a), cuda(b)), raw::binary(BinaryOp::lt, a, b), "lt empty " + name(d));
    expect_match(raw::unary(UnaryOp::neg, cuda(a)), raw::unary(UnaryOp::neg, a), "neg empty " + name(d));
    expect_match(raw::binary_scalar(BinaryOp::mul, cuda(a), 2), raw::binary_scalar(BinaryOp::mul, a, 2), "mul empty");
    expect_match(raw::to_dtype(cuda(a), DType::f64), raw::to_dtype(a, DType::f64), "cast empty " + name(d));
    Tensor g = cuda(a);
    raw::fill_(g, 1);
    raw::add_(g, cuda(a), 2.0);
    EXPECT_EQ(g.shape(), Shape({0, 3}));
    Tensor c = ints({0, 3}, 3, DType::boolean, 0, 1);
    expect_match(raw::where(cuda(c), cuda(a), cuda(b)), raw::where(c, a, b), "where empty " + name(d));
  }
}

// ============================================================================= reductions

const ReduceOp kReduceOps[] = {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min, ReduceOp::prod};
const char* reduce_name(ReduceOp op) {
  static const char* names[] = {"sum", "mean", "max", "min", "prod"};
  return names[int(op)];
}

// The values of t in a permuted memory layout, on both devices (built on the device).
Both permuted(const Tensor& t) {
  Tensor tc = raw::contiguous(raw::permute(t, {1, 2, 0}));   // (B, C, A)
  return {raw::permute(tc, {2, 0, 1}), raw::permute(cuda(tc), {2, 0, 1})};
}

TEST(CudaReduce, EveryOpOverDimsAndLayouts) {
  REQUIRE_CUDA();
  const vector<Shape> dim_sets = {{}, {0}, {1}, {2}, {0, 2}, {1, 2}, {-1}, {0, 1, 2}, {0, 1}};
  for (DType d : kFloats)
    for (ReduceOp op : kReduceOps)
      for (int layout = 0; layout < 3; ++layout) {
        Tensor x = op == ReduceOp::prod ? rnd({4, 5, 6}, 61, d, 0.5, 1.5) : rnd({4, 5, 6}, 61, d);
        Both b = layout == 0 ? both(x) : layout == 1 ? permuted(x) : both(x, Layout::sliced);
        for (const Shape& dims : dim_sets)
          for (bool keepdim : {false, true}) {
            std::ostringstream what;
            what << reduce_name(op) << " " << name(d) << " dims " << dims << " keepdim " << keepdim << " layout " << layout;
            expect_match(raw::reduce(op, b.gpu, dims, keepdim), raw::reduce(op, b.cpu, dims, keepdim), what.str());
          }
      }
}

TEST(CudaReduce, Integers) {
  REQUIRE_CUDA();
  for (DType d : {DType::i32, DType::i64, DType::u8, DType::boolean})
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod}) {
      if (d == DType::boolean && op != ReduceOp::sum) continue;
      // products of 60 values in [-1, 2] stay within int64
      Tensor x = op == ReduceOp::prod ? ints({3, 4, 5}, 62, d, d == DType::u8 ? 1 : -1, 2) : values({3, 4, 5}, 62, d);
      Both b = permuted(x);
      for (const Shape& dims : vector<Shape>{{}, {0}, {2}, {0, 2}, {1}})
        expect_match(raw::reduce(op, b.gpu, dims, false), raw::reduce(op, b.cpu, dims, false),
                     std::string(reduce_name(op)) + " " + name(d));
    }
}

TEST(CudaReduce, LargeShapesTakeEveryPath) {
  REQUIRE_CUDA();
  struct Case { Shape shape; Shape dims; };
  const vector<Case> cases = {
      {{3, 200000}, {1}},    // few long rows: split into chunks
      {{70000, 3}, {1}},     // many short rows: a thread per output
      {{200000}, {}},        // one row
      {{2000, 64}, {0}},     // leading dims (bias gradient pattern)
      {{64, 50, 40}, {0, 2}},
  };
  for (const Case& c : cases)
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max, ReduceOp::min}) {
      Tensor x = rnd(c.shape, 63, DType::f32);
      std::ostringstream what;
      what << reduce_name(op) << " " << c.shape << " over " << c.dims;
      expect_match(raw::reduce(op, cuda(x), c.dims, false), raw::reduce(op, x, c.dims, false), what.str());
      Tensor xi = ints(c.shape, 64, DType::i64, -1000, 1000);
      if (op != ReduceOp::mean)
        expect_match(raw::reduce(op, cuda(xi), c.dims, false), raw::reduce(op, xi, c.dims, false), what.str() + " i64");
    }
}

TEST(CudaReduce, NaNAndEmpty) {
  REQUIRE_CUDA();
  for (DType d : kFloats) {
    Tensor x = from_doubles({1, kNaN, 3, 4, 5, 6, -kInf, kInf, 2}, {3, 3}, d);
    for (ReduceOp op : kReduceOps)
      for (const Shape& dims : vector<Shape>{{}, {0}, {1}})
        expect_match(raw::reduce(op, cuda(x), dims, false), raw::reduce(op, x, dims, false),
                     std::string(reduce_name(op)) + " NaN " + name(d));
    // long rows with a NaN in the middle (block path)
    Tensor y = rnd({2, 50000}, 65, d);
    Tensor gy = cuda(y);
    raw::fill_(raw::narrow(raw::select(y, 0, 1), 0, 31337, 1), kNaN);
    raw::fill_(raw::narrow(raw::select(gy, 0, 1), 0, 31337, 1), kNaN);
    for (ReduceOp op : {ReduceOp::max, ReduceOp::min, ReduceOp::sum})
      expect_match(raw::reduce(op, gy, {1}, false), raw::reduce(op, y, {1}, false), std::string(reduce_name(op)) + " long NaN");
  }
  // empty inputs: sums are 0, products 1, means NaN
  Tensor e = zeros({0, 3});
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean, ReduceOp::prod}) {
    expect_match(raw::reduce(op, cuda(e), {0}, false), raw::reduce(op, e, {0}, false), std::string(reduce_name(op)) + " empty dim 0");
    expect_match(raw::reduce(op, cuda(e), {1}, true), raw::reduce(op, e, {1}, true), std::string(reduce_name(op)) + " empty dim 1");
    expect_match(raw::reduce(op, cuda(e), {}, false), raw::reduce(op, e, {}, false), std::string(reduce_name(op)) + " empty all");
  }
  Tensor s = scalar_tensor(2.5);
  expect_match(raw::sum(cuda(s)), raw::sum(s), "0-d sum");
}

TEST(CudaReduce, ArgMaxArgMin) {
  REQUIRE_CUDA();
  for (DType d : kAll) {
    if (d == DType::boolean) continue;
    // integers in a small range: many ties, the first extreme must win
    Tensor x = is_floating(d) ? rnd({6, 7, 5}, 71, d, -3, 3) : ints({6, 7, 5}, 71, d, d == DType::u8 ? 0 : -3, 3);
    Both b = permuted(x);
    for (int dim : {0, 1, 2, -1})
      for (bool keepdim : {false, true}) {
        const std::string what = name(d) + " dim " + std::to_string(dim);
        expect_match(raw::argmax(b.gpu, dim, keepdim), raw::argmax(b.cpu, dim, keepdim), "argmax " + what);
        expect_match(raw::argmin(b.gpu, dim, keepdim), raw::argmin(b.cpu, dim, keepdim), "argmin " + what);
      }
  }
  // ties → first; NaN → first NaN
  Tensor t = from_doubles({1, 3, 3, 2, 5, kNaN, 5, kNaN, -1, -1, 0, -1}, {3, 4}, DType::f32);
  expect_match(raw::argmax(cuda(t), 1), raw::argmax(t, 1), "argmax ties/NaN");
  expect_match(raw::argmin(cuda(t), 1), raw::argmin(t, 1), "argmin ties/NaN");
  expect_match(raw::argmax(cuda(t), 0), raw::argmax(t, 0), "argmax dim 0");
  // long rows (block path) with ties and a late NaN, and many short rows (thread path)
  Tensor lng = ints({3, 100000}, 72, DType::f32, -50, 50);
  Tensor glng = cuda(lng);
  raw::fill_(raw::narrow(raw::select(lng, 0, 2), 0, 99000, 1), kNaN);
  raw::fill_(raw::narrow(raw::select(glng, 0, 2), 0, 99000, 1), kNaN);
  expect_match(raw::argmax(glng, 1), raw::argmax(lng, 1), "argmax long");
  expect_match(raw::argmin(glng, 1), raw::argmin(lng, 1), "argmin long");
  Tensor many = ints({70000, 4}, 73, DType::i32, 0, 3);
  expect_match(raw::argmax(cuda(many), 1), raw::argmax(many, 1), "argmax many rows");
  Tensor s = scalar_tensor(1.5);
  expect_match(raw::argmax(cuda(s), 0), raw::argmax(s, 0), "argmax 0-d");
}

TEST(CudaReduce, SoftmaxAndLogSoftmax) {
  REQUIRE_CUDA();
  for (DType d : kFloats)
    for (const Shape& shape : vector<Shape>{{7, 33}, {3, 5000}, {4, 1}, {2, 3, 40}})
      for (bool log : {false, true})
        for (int64_t dim : {int64_t(-1), int64_t(0)}) {
          std::ostringstream what;
          what << (log ? "log_softmax " : "softmax ") << name(d) << " " << shape << " dim " << dim;
          Tensor x = rnd(shape, 81, d, -5, 5);
          Both b = both(x, Layout::transposed);
          expect_match(raw::softmax(b.gpu, dim, log), raw::softmax(b.cpu, dim, log), what.str());
          Tensor y = raw::softmax(x, dim, log), gy = rnd(shape, 82, d);
          expect_match(raw::softmax_backward(cuda(y), cuda(gy), dim, log), raw::softmax_backward(y, gy, dim, log),
                       what.str() + " backward");
        }
  // -inf entries, a row of -inf (NaN as on the CPU), large logits, a NaN row
  Tensor x = from_doubles({-kInf, 0, 1, 2, -kInf, -kInf, -kInf, -kInf, 1000, 999, -1000, 0, kNaN, 1, 2, 3}, {4, 4}, DType::f32);
  for (bool log : {false, true}) expect_match(raw::softmax(cuda(x), -1, log), raw::softmax(x, -1, log), "softmax specials");
}

// More rows than one capped grid holds warps (65535·8 blocks × 8 warps = 4,194,240): the
// warp-per-row kernels (softmax forward and backward, top-k selection) take a second lap.
TEST(CudaReduce, RowKernelsCoverMoreRowsThanOneGrid) {
  REQUIRE_CUDA();
  const Shape shape{4194240 + 4099, 3};
  Tensor x = rnd(shape, 84, DType::f32, -5, 5), gy = rnd(shape, 85);
  for (bool log : {false, true}) {
    const std::string what = log ? "log_softmax, 4.2M rows" : "softmax, 4.2M rows";
    Tensor y = raw::softmax(x, -1, log);
    expect_match(raw::softmax(cuda(x), -1, log), y, what);
    expect_match(raw::softmax_backward(cuda(y), cuda(gy), -1, log), raw::softmax_backward(y, gy, -1, log),
                 what + " backward");
  }
  auto [gv, gi] = raw::topk(cuda(x), 2, -1, true);
  auto [cv, ci] = raw::topk(x, 2, -1, true);
  expect_equal(gv, cv, "topk 2 of 3, 4.2M rows: values");
  expect_equal(gi, ci, "topk 2 of 3, 4.2M rows: indices");
}

TEST(CudaReduce, Cumsum) {
  REQUIRE_CUDA();
  for (DType d : kAll)
    for (int64_t dim : {int64_t(0), int64_t(1), int64_t(-1)}) {
      Tensor x = values({4, 5, 6}, 91, d);
      Both b = permuted(x);
      expect_match(raw::cumsum(b.gpu, dim), raw::cumsum(b.cpu, dim), "cumsum " + name(d) + " dim " + std::to_string(dim));
    }
  // a long line (block scan) and many lines (thread per line)
  for (DType d : {DType::f32, DType::f64, DType::i64, DType::i32}) {
    Tensor lng = values({2, 100000}, 92, d);
    expect_match(raw::cumsum(cuda(lng), 1), raw::cumsum(lng, 1), "cumsum long " + name(d));
    Tensor col = values({3000, 2}, 93, d);
    expect_match(raw::cumsum(cuda(col), 0), raw::cumsum(col, 0), "cumsum long column " + name(d));
    Tensor many = values({5000, 3}, 94, d);
    expect_match(raw::cumsum(cuda(many), 1), raw::cumsum(many, 1), "cumsum many " + name(d));
  }
  Tensor s = scalar_tensor(2.0);
  expect_match(raw::cumsum(cuda(s), 0), raw::cumsum(s, 0), "cumsum 0-d");
  Tensor e = zeros({0, 4});
  expect_match(raw::cumsum(cuda(e), 1), raw::cumsum(e, 1), "cumsum empty");
}

// =============================================================================== indexing

TEST(CudaIndex, GatherFromStridedInputs) {
  REQUIRE_CUDA();
  for (DType d : kAll)
    for (int dim : {0, 1, 2})
      for (Layout l : kLayouts) {
        Tensor x = values({4, 5, 6}, 101, d);
        Shape is = {3, 4, 5};
        const int64_t extent = x.size(dim);
        Tensor idx = ints(is, 102 + uint64_t(dim), DType::i64, 0, extent - 1);
        Both b = both(x, l);
        expect_match(raw::gather(b.gpu, dim, cuda(idx)), raw::gather(b.cpu, dim, idx),
                     "gather " + name(d) + " dim " + std::to_string(dim) + " " + layout_name(l));
      }
  Tensor x = values({3, 4}, 103, DType::f32);
  Tensor empty_idx = zeros({0, 4}, DType::i64);
  expect_match(raw::gather(cuda(x), 0, cuda(empty_idx)), raw::gather(x, 0, empty_idx), "gather empty");
}

TEST(CudaIndex, ScatterAddIsDeterministicAndExact) {
  REQUIRE_CUDA();
  // Destinations repeat many times; every dtype is compared exactly: the CUDA kernel adds in
  // the CPU's order.
  for (DType d : kAll) {
    if (d == DType::boolean) continue;
    for (int dim : {0, 1, 2}) {
      Tensor out = values({4, 5, 6}, 111, d);
      Tensor idx = ints({6, 5, 4}, 112, DType::i64, 0, out.size(dim) - 1);
      if (dim != 0) idx = ints({4, 5, 4}, 112, DType::i64, 0, out.size(dim) - 1);
      Tensor src = values(idx.shape(), 113, d);
      Tensor gout = cuda(out);
      raw::scatter_add_(out, dim, idx, src);
      raw::scatter_add_(gout, dim, cuda(idx), cuda(src));
      expect_equal(gout, out, "scatter_add " + name(d) + " dim " + std::to_string(dim));
    }
  }
  // one destination hit by every source, in f16 (rounding after each add: order matters)
  Tensor out = zeros({1}, DType::f16);
  Tensor idx = zeros({3000}, DType::i64), src = rnd({3000}, 114, DType::f16, 0, 1);
  Tensor gout = cuda(out);
  raw::scatter_add_(out, 0, idx, src);
  raw::scatter_add_(gout, 0, cuda(idx), cuda(src));
  expect_equal(gout, out, "scatter_add f16 single destination");
  // empty index
  Tensor e = zeros({0, 5, 6}, DType::i64);
  Tensor o2 = values({4, 5, 6}, 115, DType::f32), g2 = cuda(o2);
  raw::scatter_add_(g2, 0, cuda(e), cuda(zeros({0, 5, 6})));
  expect_equal(g2, o2, "scatter_add empty");
}

TEST(CudaIndex, IndexSelectAndIndexAdd) {
  REQUIRE_CUDA();
  for (DType d : kAll)
    for (int dim : {0, 1, 2}) {
      Tensor x = values({4, 5, 6}, 121, d);
      Tensor idx = ints({9}, 122, DType::i64, 0, x.size(dim) - 1);   // duplicates
      Both b = both(x, Layout::transposed);
      expect_match(raw::index_select(b.gpu, dim, cuda(idx)), raw::index_select(b.cpu, dim, idx),
                   "index_select " + name(d) + " dim " + std::to_string(dim));
      if (d == DType::boolean) continue;
      Shape ss = x.shape();
      ss[dim] = 9;
      Tensor src = values(ss, 123, d);
      Tensor gx = cuda(x);
      raw::index_add_(x, dim, idx, src);
      raw::index_add_(gx, dim, cuda(idx), cuda(src));
      expect_equal(gx, x, "index_add " + name(d) + " dim " + std::to_string(dim));
    }
  // MoE-style combine: many rows into few, f32 and bf16, exact
  for (DType d : {DType::f32, DType::bf16}) {
    Tensor out = zeros({64, 96}, d);
    Tensor idx = ints({4096}, 124, DType::i64, 0, 63), src = rnd({4096, 96}, 125, d);
    Tensor gout = cuda(out);
    raw::index_add_(out, 0, idx, src);
    raw::index_add_(gout, 0, cuda(idx), cuda(src));
    expect_equal(gout, out, "index_add many rows " + name(d));
  }
  Tensor x = values({3, 4}, 126, DType::f32);
  Tensor none = zeros({0}, DType::i64);
  expect_match(raw::index_select(cuda(x), 1, cuda(none)), raw::index_select(x, 1, none), "index_select empty");
  Tensor gx = cuda(x);
  raw::index_add_(gx, 1, cuda(none), cuda(zeros({3, 0})));
  expect_equal(gx, x, "index_add empty");
}

// Rows with ties, NaN and ±0 so the order's corner cases are all exercised.
Tensor tricky(const Shape& s, uint64_t seed, DType d) {
  if (!is_floating(d)) return d == DType::boolean ? ints(s, seed, d, 0, 1) : ints(s, seed, d, d == DType::u8 ? 0 : -5, 5);
  vector<double> v = ints(s, seed, DType::f64, -5, 5).to_vector<double>();
  for (size_t i = 0; i < v.size(); ++i) {
    if (i % 7 == 3) v[i] = kNaN;
    else if (i % 11 == 5) v[i] = -0.0;
    else if (i % 13 == 6) v[i] = i % 2 ? kInf : -kInf;
    else v[i] *= 0.5;
  }
  return from_doubles(v, s, d);
}

TEST(CudaIndex, TopkMatchesCpuIncludingTiesAndNaN) {
  REQUIRE_CUDA();
  for (DType d : kAll) {
    if (d == DType::boolean) continue;
    for (int64_t k : {int64_t(1), int64_t(2), int64_t(5), int64_t(32), int64_t(37)})
      for (bool largest : {true, false})
        for (int64_t dim : {int64_t(-1), int64_t(0)}) {
          const std::string what = "topk " + name(d) + " k " + std::to_string(k) + (largest ? " largest" : " smallest") +
                                   " dim " + std::to_string(dim);
          Tensor x = tricky(dim == -1 ? Shape{50, 37} : Shape{37, 50}, 131, d);
          auto [gv, gi] = raw::topk(cuda(x), k, dim, largest);
          auto [cv, ci] = raw::topk(x, k, dim, largest);
          expect_equal(gv, cv, what + " values");
          expect_equal(gi, ci, what + " indices");
        }
  }
  // large k (the sort path), long rows (the sort path), MoE gating shape (k=2 of 8)
  struct Case { Shape shape; int64_t k; };
  for (const Case& c : vector<Case>{{{20, 100}, 40}, {{3, 20000}, 3}, {{4096, 8}, 2}, {{5, 64}, 64}})
    for (DType d : {DType::f32, DType::f16, DType::i64})
      for (bool largest : {true, false}) {
        std::ostringstream what;
        what << "topk " << name(d) << " " << c.shape << " k " << c.k << (largest ? " largest" : " smallest");
        Tensor x = tricky(c.shape, 132, d);
        auto [gv, gi] = raw::topk(cuda(x), c.k, -1, largest);
        auto [cv, ci] = raw::topk(x, c.k, -1, largest);
        expect_equal(gv, cv, what.str() + " values");
        expect_equal(gi, ci, what.str() + " indices");
      }
  Tensor x = rnd({4, 6}, 133);
  auto [gv, gi] = raw::topk(cuda(x), 0);
  EXPECT_EQ(gv.shape(), Shape({4, 0}));
  EXPECT_EQ(gi.shape(), Shape({4, 0}));
  Tensor e = zeros({0, 6});
  auto [ev, ei] = raw::topk(cuda(e), 3);
  EXPECT_EQ(ev.shape(), Shape({0, 3}));
}

TEST(CudaIndex, ArgsortIsStable) {
  REQUIRE_CUDA();
  for (DType d : kAll)
    for (bool descending : {false, true}) {
      const std::string what = "argsort " + name(d) + (descending ? " descending" : " ascending");
      Tensor x = tricky({20, 33}, 141, d);
      expect_equal(raw::argsort(cuda(x), -1, descending), raw::argsort(x, -1, descending), what);
      Both b = both(x, Layout::transposed);
      expect_equal(raw::argsort(b.gpu, 0, descending), raw::argsort(b.cpu, 0, descending), what + " dim 0");
    }
  // one long row with many ties (MoE dispatch sorts expert ids), many short rows
  for (DType d : {DType::i64, DType::f32, DType::i32})
    for (bool descending : {false, true}) {
      Tensor lng = ints({100000}, 142, d, 0, 15);
      expect_equal(raw::argsort(cuda(lng), -1, descending), raw::argsort(lng, -1, descending), "argsort long " + name(d));
      Tensor many = tricky({5000, 6}, 143, d);
      expect_equal(raw::argsort(cuda(many), -1, descending), raw::argsort(many, -1, descending), "argsort many " + name(d));
    }
  Tensor e = zeros({0, 5});
  EXPECT_EQ(raw::argsort(cuda(e)).shape(), Shape({0, 5}));
  Tensor one = rnd({7, 1}, 144);
  expect_equal(raw::argsort(cuda(one)), raw::argsort(one), "argsort of length-1 rows");
}

// ================================================================================== random

TEST(CudaRandom, UniformEqualsCpuBitForBit) {
  REQUIRE_CUDA();
  struct Range { double lo, hi; };
  for (DType d : kFloats)
    for (const Range& r : vector<Range>{{0, 1}, {-3, 5}, {1e-3, 1e-3 + 1e-6}, {2, 2}, {-1, 0}})
      for (uint64_t seed : {uint64_t(0), uint64_t(1234567), uint64_t(0xDEADBEEFCAFEull)}) {
        Generator gc(seed), gg(seed);
        gc.advance(77);
        gg.advance(77);
        Tensor c = raw::uniform({33, 129}, r.lo, r.hi, d, Device::cpu(), &gc);
        Tensor g = raw::uniform({33, 129}, r.lo, r.hi, d, Device::cuda(), &gg);
        std::ostringstream what;
        what << "uniform " << name(d) << " [" << r.lo << ", " << r.hi << ") seed " << seed;
        expect_equal(g, c, what.str());
        EXPECT_EQ(gg.offset(), gc.offset());
      }
  // in place, mid-stream
  Generator gc(9), gg(9);
  Tensor c = empty({1000}, DType::bf16), g = empty({1000}, DType::bf16, Device::cuda());
  raw::uniform_(c, 0, 1, &gc);
  raw::uniform_(g, 0, 1, &gg);
  raw::uniform_(c, -2, 2, &gc);
  raw::uniform_(g, -2, 2, &gg);
  expect_equal(g, c, "uniform_ second draw");
  Tensor e = raw::uniform({0}, 0, 1, DType::f32, Device::cuda());
  EXPECT_EQ(e.numel(), 0);
}

TEST(CudaRandom, NormalEqualsCpu) {
  REQUIRE_CUDA();
  for (DType d : kFloats)
    for (uint64_t seed : {uint64_t(0), uint64_t(42), uint64_t(0xFFFFFFFFFFFFull)}) {
      Generator gc(seed), gg(seed);
      gc.advance(5);
      gg.advance(5);
      Tensor c = raw::normal({4096}, 0.5, 2.0, d, Device::cpu(), &gc);
      Tensor g = raw::normal({4096}, 0.5, 2.0, d, Device::cuda(), &gg);
      const std::string what = "normal " + name(d) + " seed " + std::to_string(seed);
      // f64: CUDA's log/cos and glibc's may differ in the last bit (see tensor/cuda/random.cu)
      if (d == DType::f64) expect_close(g, c, 1e-13, 1e-13, what);
      else expect_equal(g, c, what);
      EXPECT_EQ(gg.offset(), gc.offset());
    }
}

// ============================================================================== optimizers

// Four steps of `make`'s optimizer on the same params/grads on both devices; params and
// state buffers compared after every step.
template <typename Make>
void run_optimizer(DType d, Make make, const std::string& what) {
  const double t = d == DType::f64 ? 1e-12 : 1e-5;
  Tensor pc = rnd({37, 29}, 151, d), qc = rnd({5}, 152, d);
  Tensor pg = cuda(pc), qg = cuda(qc);
  auto oc = make(nn::NamedTensors{{"p", pc}, {"q", qc}});
  auto og = make(nn::NamedTensors{{"p", pg}, {"q", qg}});
  for (int step = 0; step < 4; ++step) {
    Tensor gp = rnd(pc.shape(), 160 + uint64_t(step), d), gq = rnd(qc.shape(), 170 + uint64_t(step), d);
    pc.set_grad(gp);
    qc.set_grad(gq);
    pg.set_grad(cuda(gp));
    qg.set_grad(cuda(gq));
    oc->step();
    og->step();
    const std::string at = what + " " + name(d) + " step " + std::to_string(step + 1);
    expect_close(pg, pc, t, t, at + " p");
    expect_close(qg, qc, t, t, at + " q");
    const optim::OptimizerState sc = oc->state_dict(), sg = og->state_dict();
    ASSERT_EQ(sc.tensors.size(), sg.tensors.size());
    for (size_t i = 0; i < sc.tensors.size(); ++i) {
      ASSERT_EQ(sc.tensors[i].first, sg.tensors[i].first);
      expect_close(sg.tensors[i].second, sc.tensors[i].second, t, t, at + " " + sc.tensors[i].first);
    }
  }
}

TEST(CudaOptim, SgdMatchesCpu) {
  REQUIRE_CUDA();
  vector<optim::SgdOptions> cases(4);
  cases[0].lr = 0.1;
  cases[1].lr = 0.05, cases[1].momentum = 0.9;
  cases[2].lr = 0.05, cases[2].momentum = 0.9, cases[2].nesterov = true, cases[2].weight_decay = 0.01;
  cases[3].lr = 0.02, cases[3].momentum = 0.8, cases[3].dampening = 0.3, cases[3].weight_decay = 0.1;
  for (DType d : {DType::f32, DType::f64})
    for (size_t i = 0; i < cases.size(); ++i)
      run_optimizer(d, [&](const nn::NamedTensors& p) { return std::make_unique<optim::Sgd>(p, cases[i]); },
                    "sgd case " + std::to_string(i));
}

TEST(CudaOptim, AdamAndAdamWMatchCpu) {
  REQUIRE_CUDA();
  for (DType d : {DType::f32, DType::f64}) {
    optim::AdamOptions a;
    a.lr = 1e-2;
    run_optimizer(d, [&](const nn::NamedTensors& p) { return std::make_unique<optim::Adam>(p, a); }, "adam");
    a.weight_decay = 0.1;
    a.beta1 = 0.6;   // 1 − β1 ≥ 0.5: the other branch of the two-sided lerp
    run_optimizer(d, [&](const nn::NamedTensors& p) { return std::make_unique<optim::Adam>(p, a); }, "adam wd");
    optim::AdamWOptions w;
    w.lr = 1e-2;
    run_optimizer(d, [&](const nn::NamedTensors& p) { return std::make_unique<optim::AdamW>(p, w); }, "adamw");
  }
}

TEST(CudaOptim, HalfParamsAreAnErrorNamingTheRemedy) {
  REQUIRE_CUDA();
  Tensor p = cuda(rnd({4}, 181, DType::f16));
  optim::Sgd sgd({{"w", p}}, optim::SgdOptions{});
  p.set_grad(cuda(rnd({4}, 182, DType::f16)));
  try {
    sgd.step();
    ADD_FAILURE() << "sgd_step on f16 params did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sgd_step"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32 or f64"), std::string::npos) << e.what();
  }
  optim::Adam adam({{"w", p}}, optim::AdamOptions{});
  try {
    adam.step();
    ADD_FAILURE() << "adam_step on f16 params did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adam_step"), std::string::npos) << e.what();
  }
}

}  // namespace
