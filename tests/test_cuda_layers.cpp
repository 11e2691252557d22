// test_cuda_layers.cpp — the CUDA backend's layer kernels against the CPU reference: bmm
// (transposed, broadcast, batched, accumulating), conv2d and max-pool (forward and backward),
// LayerNorm/RMSNorm, attention (both kernels — materialised and fused (flash-style) — causal
// or not, with and without dropout, head dims up to the fused kernel's 128 and past it),
// bias + GELU and rotary embedding. Each test runs the same public op (tensor/ops.h or the
// differentiable functions) on CPU tensors and on their CUDA copies and compares: f32 within
// rtol = atol = 1e-3 (PyTorch's CPU/CUDA tolerance), f64 within 1e-9, 16-bit floats against
// the CPU's f32 result on the same (rounded) inputs within ~1e-2; pooling indices and the
// pooling gradient exactly. Every test skips, saying why, where no GPU is visible.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/functions.h"
#include "tests/attention_reference.h"
#include "tests/cuda_test.h"
#include "tests/expect_error.h"

namespace mox {
namespace {

using testing::cuda;
using testing::KernelScope;
using testing::expect_close;
using testing::expect_equal;

struct Tol {
  double rtol, atol;
};
Tol tol(DType dt) {
  switch (dt) {
    case DType::f64: return {1e-9, 1e-9};
    case DType::f16: return {1e-2, 1e-2};
    case DType::bf16: return {2e-2, 2e-2};
    default: return {1e-3, 1e-3};
  }
}

// Uniform values in [lo, hi) on the CPU, in dtype (drawn in f64, then cast).
Tensor rnd(const Shape& shape, uint64_t seed, DType dt = DType::f32, double lo = -1, double hi = 1) {
  Generator g(seed);
  return raw::to_dtype(raw::uniform(shape, lo, hi, DType::f64, Device::cpu(), &g), dt);
}

// A CUDA result (any float dtype) against a CPU reference, converted to the reference's dtype.
void expect_gpu(const Tensor& gpu, const Tensor& cpu, Tol t, const std::string& what) {
  expect_close(raw::to_dtype(gpu, cpu.dtype()), cpu, t.rtol, t.atol, what);
}

Tensor leaf(const Tensor& t) {
  Tensor l = raw::clone(t);
  l.set_requires_grad();
  return l;
}

const DType kFloat[] = {DType::f32, DType::f64};
const DType kHalf[] = {DType::f16, DType::bf16};

// ------------------------------------------------------------------------ bmm

TEST(CudaLayers, MatmulTransposedBroadcastBatched) {
  REQUIRE_CUDA();
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tol t = tol(dt);
    // {a, b} pairs on the CPU; the same views of CUDA copies go through raw::matmul.
    struct Case {
      const char* what;
      Tensor a, b;
    };
    const Tensor a3 = rnd({3, 5, 7}, 1, dt), b3 = rnd({3, 7, 4}, 2, dt);
    const Tensor at3 = rnd({3, 7, 5}, 3, dt), bt3 = rnd({3, 4, 7}, 4, dt);
    const Tensor a2 = rnd({5, 7}, 5, dt), b2 = rnd({7, 4}, 6, dt);
    const Tensor a4 = rnd({2, 1, 5, 7}, 7, dt), b4 = rnd({1, 3, 7, 4}, 8, dt);
    auto both = [&](auto make, const char* what) {
      Tensor c = raw::matmul(make(false).first, make(false).second);
      Tensor g = raw::matmul(make(true).first, make(true).second);
      expect_gpu(g, c, t, what);
    };
    auto on = [](const Tensor& x, bool gpu) { return gpu ? cuda(x) : x; };
    both([&](bool g) { return std::pair{on(a3, g), on(b3, g)}; }, "plain");
    both([&](bool g) { return std::pair{raw::transpose(on(at3, g), 1, 2), on(b3, g)}; }, "a transposed");
    both([&](bool g) { return std::pair{on(a3, g), raw::transpose(on(bt3, g), 1, 2)}; }, "b transposed");
    both([&](bool g) { return std::pair{raw::transpose(on(at3, g), 1, 2), raw::transpose(on(bt3, g), 1, 2)}; },
         "both transposed");
    both([&](bool g) { return std::pair{on(a2, g), on(b3, g)}; }, "a broadcast over the batch");
    both([&](bool g) { return std::pair{on(a3, g), on(b2, g)}; }, "b broadcast over the batch");
    both([&](bool g) { return std::pair{raw::transpose(on(at3, g), 1, 2), on(b2, g)}; }, "transposed and broadcast");
    both([&](bool g) { return std::pair{on(a4, g), on(b4, g)}; }, "batch dims broadcast both ways");
    // Column slices of a wider matrix: leading dimensions larger than the extents.
    const Tensor wide = rnd({3, 7, 11}, 9, dt);
    both([&](bool g) { return std::pair{raw::narrow(on(wide, g), 2, 2, 5), raw::narrow(on(b3, g), 1, 0, 5)}; },
         "wide leading dims");
    both([&](bool g) { return std::pair{on(rnd({7}, 10, dt), g), on(b3, g)}; }, "vector @ batch");
    both([&](bool g) { return std::pair{on(a3, g), on(rnd({7}, 11, dt), g)}; }, "batch @ vector");
  }
}

TEST(CudaLayers, MatmulEmptyInnerDimAndLargeBatch) {
  REQUIRE_CUDA();
  const Tensor a = zeros({3, 4, 0}), b = zeros({3, 0, 5});
  expect_gpu(raw::matmul(cuda(a), cuda(b)), raw::matmul(a, b), tol(DType::f32), "K = 0 gives zeros");
  // More matrices than one cuBLAS call takes (65535): the batch is issued in slices.
  const Tensor x = rnd({70000, 2, 3}, 3), y = rnd({70000, 3, 2}, 4);
  expect_gpu(raw::matmul(cuda(x), cuda(y)), raw::matmul(x, y), tol(DType::f32), "batch 70000");
}

TEST(CudaLayers, BmmAccumulates) {
  REQUIRE_CUDA();
  for (DType dt : kFloat) {
    SCOPED_TRACE(dtype_name(dt));
    // The backend entry directly: out += a @ bᵀ, b a transposed view, a broadcast.
    const Tensor a = raw::expand(rnd({1, 6, 9}, 1, dt), {4, 6, 9}), bt = rnd({4, 5, 9}, 2, dt);
    const Tensor out0 = rnd({4, 6, 5}, 3, dt);
    Tensor cpu_out = raw::clone(out0), gpu_out = cuda(out0);
    backend(Device::cpu()).bmm(a, raw::transpose(bt, 1, 2), cpu_out, /*accumulate=*/true);
    const Tensor ag = raw::expand(cuda(raw::narrow(a, 0, 0, 1)), {4, 6, 9});   // batch stride 0 there too
    backend(Device::cuda()).bmm(ag, raw::transpose(cuda(bt), 1, 2), gpu_out, true);
    expect_gpu(gpu_out, cpu_out, tol(dt), "accumulate");
    // linear() with a bias: out = b, then out += x·wᵀ.
    const Tensor x = rnd({2, 3, 9}, 4, dt), w = rnd({5, 9}, 5, dt), bias = rnd({5}, 6, dt);
    expect_gpu(linear(cuda(x), cuda(w), cuda(bias)), linear(x, w, bias), tol(dt), "linear with bias");
  }
}

// ------------------------------------------------------------------------ conv2d

struct ConvCase {
  int64_t N, C, H, W, O, K, stride, pad;
};
const ConvCase kConvCases[] = {
    {2, 3, 7, 6, 4, 3, 1, 1},   // same padding, non-square input
    {3, 4, 8, 8, 5, 3, 2, 1},   // stride 2
    {2, 2, 5, 5, 3, 1, 1, 0},   // pointwise
    {1, 3, 9, 9, 2, 5, 2, 2},   // large kernel
    {4, 6, 4, 4, 8, 4, 1, 0},   // valid, even kernel
};

TEST(CudaLayers, Conv2dForwardBackward) {
  REQUIRE_CUDA();
  for (DType dt : kFloat)
    for (const ConvCase& c : kConvCases)
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " N" << c.N << " C" << c.C << " " << c.H << "x" << c.W
                                          << " O" << c.O << " K" << c.K << " s" << c.stride << " p" << c.pad
                                          << (with_bias ? " bias" : ""));
        const Tensor x = rnd({c.N, c.C, c.H, c.W}, 10, dt), w = rnd({c.O, c.C, c.K, c.K}, 11, dt);
        const Tensor b = with_bias ? rnd({c.O}, 12, dt) : Tensor();
        Tensor xc = leaf(x), wc = leaf(w), bc = with_bias ? leaf(b) : Tensor();
        Tensor xg = leaf(cuda(x)), wg = leaf(cuda(w)), bg = with_bias ? leaf(cuda(b)) : Tensor();
        Tensor yc = conv2d(xc, wc, bc, c.stride, c.pad), yg = conv2d(xg, wg, bg, c.stride, c.pad);
        expect_gpu(yg, yc, tol(dt), "output");
        const Tensor gy = rnd(yc.shape(), 13, dt);
        yc.backward(gy);
        yg.backward(cuda(gy));
        expect_gpu(xg.grad(), xc.grad(), tol(dt), "x grad");
        expect_gpu(wg.grad(), wc.grad(), tol(dt), "w grad");
        if (with_bias) expect_gpu(bg.grad(), bc.grad(), tol(dt), "bias grad");
      }
}

TEST(CudaLayers, Conv2dHalfPrecision) {
  REQUIRE_CUDA();
  for (DType dt : kHalf)
    for (const ConvCase& c : kConvCases) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " C" << c.C << " K" << c.K << " s" << c.stride);
      // The CPU has no 16-bit convolution: its f32 result on the rounded inputs is the reference.
      const Tensor x = rnd({c.N, c.C, c.H, c.W}, 20, dt), w = rnd({c.O, c.C, c.K, c.K}, 21, dt), b = rnd({c.O}, 22, dt);
      const Tensor x32 = raw::to_dtype(x, DType::f32), w32 = raw::to_dtype(w, DType::f32);
      const Tensor b32 = raw::to_dtype(b, DType::f32);
      Tensor xc = leaf(x32), wc = leaf(w32), bc = leaf(b32);
      Tensor xg = leaf(cuda(x)), wg = leaf(cuda(w)), bg = leaf(cuda(b));
      Tensor yc = conv2d(xc, wc, bc, c.stride, c.pad), yg = conv2d(xg, wg, bg, c.stride, c.pad);
      // Sums of C·K·K products of values ≤ 1: scale the tolerance with the result's size.
      const double scale = std::sqrt(double(c.C * c.K * c.K));
      const Tol t{tol(dt).rtol, tol(dt).atol * scale};
      expect_gpu(yg, yc, t, "output");
      const Tensor gy = rnd(yc.shape(), 23, dt);
      yc.backward(raw::to_dtype(gy, DType::f32));
      yg.backward(cuda(gy));
      expect_gpu(xg.grad(), xc.grad(), {t.rtol, tol(dt).atol * std::sqrt(double(c.O * c.K * c.K))}, "x grad");
      const double per_w = std::sqrt(double(c.N * yc.size(2) * yc.size(3)));
      expect_gpu(wg.grad(), wc.grad(), {t.rtol, tol(dt).atol * per_w}, "w grad");
      expect_gpu(bg.grad(), bc.grad(), {t.rtol, tol(dt).atol * per_w}, "bias grad");
    }
}

// ------------------------------------------------------------------------ max-pool

TEST(CudaLayers, MaxPoolValuesIndicesAndGradientExact) {
  REQUIRE_CUDA();
  struct PoolCase {
    int64_t kernel, stride, pad;
  };
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16})
    for (PoolCase p : {PoolCase{2, 2, 0}, PoolCase{3, 2, 1}, PoolCase{3, 1, 0}, PoolCase{2, 1, 0}, PoolCase{4, 3, 2}})
      for (bool ties : {false, true}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " kernel " << p.kernel << " stride " << p.stride << " pad "
                                          << p.pad << (ties ? " with ties" : ""));
        Tensor x = rnd({2, 3, 9, 8}, 30, dt, -2, 2);
        if (ties)   // only the values 0 and -1: windows full of equal maxima
          x = raw::binary_scalar(BinaryOp::mul, raw::to_dtype(raw::binary_scalar(BinaryOp::ge, x, 0.5), dt), -1.0);
        const Pool2dParams params{p.kernel, p.kernel, p.stride, p.stride, p.pad, p.pad};
        auto [yc, ic] = raw::max_pool2d(x, params);
        auto [yg, ig] = raw::max_pool2d(cuda(x), params);
        expect_equal(yg, yc, "values");
        expect_equal(ig, ic, "indices");
        // Overlapping windows send several gradients to one input: the sums are exact too
        // (the same additions in the same order).
        Tensor xc = leaf(x), xg = leaf(cuda(x));
        Tensor oc = max_pool2d(xc, p.kernel, p.stride, p.pad), og = max_pool2d(xg, p.kernel, p.stride, p.pad);
        const Tensor gy = rnd(oc.shape(), 31, dt);
        oc.backward(gy);
        og.backward(cuda(gy));
        expect_equal(xg.grad(), xc.grad(), "gradient");
      }
}

TEST(CudaLayers, MaxPoolNaNPropagatesLikeTheCpu) {
  REQUIRE_CUDA();
  Tensor x = rnd({1, 2, 6, 6}, 40);
  std::vector<float> v = x.to_vector<float>();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t i : {size_t(0), size_t(7), size_t(9), size_t(14), size_t(15), size_t(40), size_t(41)}) v[i] = nan;
  x = from_vector(v, x.shape());
  for (int64_t k : {2, 3}) {
    const Pool2dParams params{k, k, 2, 2, k == 3 ? 1 : 0, k == 3 ? 1 : 0};
    auto [yc, ic] = raw::max_pool2d(x, params);
    auto [yg, ig] = raw::max_pool2d(cuda(x), params);
    expect_equal(yg, yc, "values");
    expect_equal(ig, ic, "indices");
  }
}

// ------------------------------------------------------------------------ norms

TEST(CudaLayers, LayerNormAndRmsNormForwardBackward) {
  REQUIRE_CUDA();
  for (DType dt : kFloat)
    for (const Shape& shape : {Shape{4, 7, 33}, Shape{3, 1000}, Shape{2, 5, 8}, Shape{1, 2048}})
      for (bool rms : {false, true})
        for (bool affine : {true, false}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape << (rms ? " rms" : " layer")
                                            << (affine ? " affine" : ""));
          const int64_t C = shape.back();
          const Tensor x = rnd(shape, 50, dt, -2, 3), w = rnd({C}, 51, dt, 0.5, 1.5), b = rnd({C}, 52, dt);
          Tensor xc = leaf(x), wc = affine ? leaf(w) : Tensor(), bc = affine && !rms ? leaf(b) : Tensor();
          Tensor xg = leaf(cuda(x)), wg = affine ? leaf(cuda(w)) : Tensor();
          Tensor bg = affine && !rms ? leaf(cuda(b)) : Tensor();
          Tensor yc = rms ? rms_norm(xc, wc, 1e-5) : layer_norm(xc, wc, bc, 1e-5);
          Tensor yg = rms ? rms_norm(xg, wg, 1e-5) : layer_norm(xg, wg, bg, 1e-5);
          expect_gpu(yg, yc, tol(dt), "output");
          const Tensor gy = rnd(shape, 53, dt);
          yc.backward(gy);
          yg.backward(cuda(gy));
          expect_gpu(xg.grad(), xc.grad(), tol(dt), "x grad");
          if (affine) expect_gpu(wg.grad(), wc.grad(), tol(dt), "weight grad");
          if (affine && !rms) expect_gpu(bg.grad(), bc.grad(), tol(dt), "bias grad");
        }
}

// Forward and backward from 16-bit inputs against f32 on the CPU: the saved mean and 1/σ
// stay f32 on the GPU (a bf16 1/σ would put a 0.4 % error into every gradient).
TEST(CudaLayers, NormsInHalfPrecision) {
  REQUIRE_CUDA();
  for (DType dt : kHalf)
    for (bool rms : {false, true}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dt) << (rms ? " rms" : " layer"));
      const Tensor x = rnd({6, 96}, 60, dt, -2, 3), w = rnd({96}, 61, dt, 0.5, 1.5), b = rnd({96}, 62, dt);
      const Tensor gy = rnd({6, 96}, 63, dt);
      Tensor x32 = leaf(raw::to_dtype(x, DType::f32)), w32 = leaf(raw::to_dtype(w, DType::f32));
      Tensor b32 = leaf(raw::to_dtype(b, DType::f32));
      Tensor xg = leaf(cuda(x)), wg = leaf(cuda(w)), bg = leaf(cuda(b));
      Tensor yc = rms ? rms_norm(x32, w32) : layer_norm(x32, w32, b32);
      Tensor yg = rms ? rms_norm(xg, wg) : layer_norm(xg, wg, bg);
      expect_gpu(yg, yc, tol(dt), "output");
      yc.backward(raw::to_dtype(gy, DType::f32));
      yg.backward(cuda(gy));
      expect_gpu(xg.grad(), x32.grad(), tol(dt), "x grad");
      expect_gpu(wg.grad(), w32.grad(), tol(dt), "weight grad");
      if (!rms) expect_gpu(bg.grad(), b32.grad(), tol(dt), "bias grad");
    }
}

// ------------------------------------------------------------------------ attention

struct AttnCase {
  int64_t B, H, T, Tk, D;
};
const AttnCase kAttnCases[] = {
    {2, 3, 5, 5, 8},     // small
    {2, 2, 3, 7, 16},    // fewer queries than keys: the causal mask is aligned to the last key
    {1, 4, 17, 17, 32},  // one batch entry
    {3, 2, 40, 40, 8},   // rows longer than a warp
    {5, 1, 1, 9, 4},     // one head, one query (decoding against a cache)
    {2, 2, 77, 77, 64},  // several tiles of 32 keys and of 32 query rows; GPT-2's head dim
    {1, 2, 45, 130, 100},   // a head dim that is no multiple of 32; more keys than queries
    {1, 1, 33, 33, 128},    // the fused kernel's largest head dim
};
const AttentionKernel kKernels[] = {AttentionKernel::materialized, AttentionKernel::fused};

// q (B, H, T, D) and k, v (B, H, Tk, D) as head views of (B, T, H, D) memory, or with `fused`
// of one (B, T, 3, H, D) qkv projection as a GPT block makes them: strided views the kernels
// read in place. The bases are leaves (on the CPU, or CUDA copies of the same values) and the
// views are differentiable, so gradients reach the bases.
struct Qkv {
  std::vector<Tensor> bases;
  Tensor q, k, v;
};
Qkv qkv(const AttnCase& c, DType dt, bool fused, uint64_t seed, bool gpu, bool grad = false) {
  auto base = [&](const Shape& shape, uint64_t s) {
    Tensor t = rnd(shape, s, dt);
    if (gpu) t = cuda(t);
    if (grad) t.set_requires_grad();
    return t;
  };
  Qkv r;
  if (fused && c.T == c.Tk) {
    const Tensor all = base({c.B, c.T, 3, c.H, c.D}, seed);
    r.bases = {all};
    const Tensor heads = all.permute({2, 0, 3, 1, 4});   // (3, B, H, T, D)
    r.q = heads.narrow(0, 0, 1).squeeze(0);
    r.k = heads.narrow(0, 1, 1).squeeze(0);
    r.v = heads.narrow(0, 2, 1).squeeze(0);
    return r;
  }
  r.bases = {base({c.B, c.T, c.H, c.D}, seed), base({c.B, c.Tk, c.H, c.D}, seed + 1),
             base({c.B, c.Tk, c.H, c.D}, seed + 2)};
  r.q = r.bases[0].transpose(1, 2);
  r.k = r.bases[1].transpose(1, 2);
  r.v = r.bases[2].transpose(1, 2);
  return r;
}

// Each CUDA kernel against the CPU's materialised attention.
TEST(CudaLayers, AttentionForwardBackward) {
  REQUIRE_CUDA();
  for (AttentionKernel kernel : kKernels)
    for (DType dt : kFloat)
      for (const AttnCase& c : kAttnCases)
        for (bool causal : {false, true})
          for (bool fused : {false, true}) {
            SCOPED_TRACE(::testing::Message() << (kernel == AttentionKernel::fused ? "fused kernel " : "materialised kernel ")
                                              << dtype_name(dt) << " B" << c.B << " H" << c.H << " T" << c.T << " Tk"
                                              << c.Tk << " D" << c.D << (causal ? " causal" : "")
                                              << (fused ? " fused qkv" : ""));
            const Qkv cpu = qkv(c, dt, fused, 70, false, true), gpu = qkv(c, dt, fused, 70, true, true);
            Tensor oc = scaled_dot_product_attention(cpu.q, cpu.k, cpu.v, causal);
            Tensor og;
            {
              KernelScope scope(kernel);
              og = scaled_dot_product_attention(gpu.q, gpu.k, gpu.v, causal);
            }
            expect_gpu(og, oc, tol(dt), "output");
            const Tensor go = rnd(oc.shape(), 71, dt);
            oc.backward(go);
            og.backward(cuda(go));
            for (size_t i = 0; i < cpu.bases.size(); ++i)
              expect_gpu(gpu.bases[i].grad(), cpu.bases[i].grad(), tol(dt), fused ? "qkv grad" : i == 0 ? "q grad" : i == 1 ? "k grad" : "v grad");
          }
}

TEST(CudaLayers, AttentionWithDropoutMultipliers) {
  REQUIRE_CUDA();
  // The backend entries directly, with one explicit keep tensor (0 or 1/(1−p)) for both devices;
  // with and without the probabilities kept.
  for (DType dt : kFloat)
    for (const AttnCase& c : kAttnCases)
      for (bool causal : {false, true})
        for (bool keep_probs : {true, false}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " B" << c.B << " H" << c.H << " T" << c.T << " Tk"
                                            << c.Tk << (causal ? " causal" : "") << (keep_probs ? " probs" : ""));
          const Qkv cpu = qkv(c, dt, false, 80, false);
          const Tensor &q = cpu.q, &k = cpu.k, &v = cpu.v;
          const Tensor u = rnd({c.B, c.H, c.T, c.Tk}, 81, dt, 0, 1);
          const Tensor keep = raw::binary_scalar(BinaryOp::mul, raw::to_dtype(raw::binary_scalar(BinaryOp::ge, u, 0.3), dt),
                                                 1 / 0.7);
          const double scale = 0.3;
          auto out_like = [](const Tensor& t, Device d) {   // (B, H, T, D) stored as (B, T, H, D)
            return raw::transpose(empty({t.size(0), t.size(2), t.size(1), t.size(3)}, t.dtype(), d), 1, 2);
          };
          Tensor pc = empty({c.B, c.H, c.T, c.Tk}, dt), oc = out_like(q, Device::cpu());
          backend(Device::cpu()).attention(q, k, v, causal, scale, &keep, &pc, oc);
          const Tensor qg = cuda(q), kg = cuda(k), vg = cuda(v), keepg = cuda(keep);
          Tensor pg = empty({c.B, c.H, c.T, c.Tk}, dt, Device::cuda()), og = out_like(q, Device::cuda());
          backend(Device::cuda()).attention(qg, kg, vg, causal, scale, &keepg, keep_probs ? &pg : nullptr, og);
          expect_gpu(og, oc, tol(dt), "output");
          if (!keep_probs) continue;
          expect_gpu(pg, pc, tol(dt), "probabilities");
          const Tensor go = rnd({c.B, c.H, c.T, c.D}, 82, dt);
          Tensor gqc = out_like(q, Device::cpu()), gkc = out_like(k, Device::cpu()), gvc = out_like(v, Device::cpu());
          backend(Device::cpu()).attention_backward(q, k, v, pc, &keep, go, scale, gqc, gkc, gvc);
          Tensor gqg = out_like(q, Device::cuda()), gkg = out_like(k, Device::cuda()), gvg = out_like(v, Device::cuda());
          backend(Device::cuda()).attention_backward(qg, kg, vg, pg, &keepg, cuda(go), scale, gqg, gkg, gvg);
          expect_gpu(gqg, gqc, tol(dt), "q grad");
          expect_gpu(gkg, gkc, tol(dt), "k grad");
          expect_gpu(gvg, gvc, tol(dt), "v grad");
        }
}

TEST(CudaLayers, AttentionDropoutFromTheSameGenerator) {
  REQUIRE_CUDA();
  // Philox gives the same numbers on both devices for a seed, and both kernels take each
  // keep decision from the same counter, so dropout masks agree too — also in f16/bf16,
  // where the uniform is rounded to the dtype before the comparison.
  const AttnCase c{2, 2, 40, 40, 8};
  for (AttentionKernel kernel : kKernels)
    for (DType dt : {DType::f32, DType::f64}) {
      SCOPED_TRACE(::testing::Message() << (kernel == AttentionKernel::fused ? "fused " : "materialised ") << dtype_name(dt));
      const Qkv cpu = qkv(c, dt, false, 90, false, true), gpu = qkv(c, dt, false, 90, true, true);
      Generator gc(7), gg(7);
      Tensor oc = scaled_dot_product_attention(cpu.q, cpu.k, cpu.v, true, std::nullopt, 0.25, &gc);
      Tensor og;
      {
        KernelScope scope(kernel);
        og = scaled_dot_product_attention(gpu.q, gpu.k, gpu.v, true, std::nullopt, 0.25, &gg);
      }
      expect_gpu(og, oc, tol(dt), "output with dropout");
      EXPECT_EQ(gg.offset(), gc.offset());
      const Tensor go = rnd(oc.shape(), 91, dt);
      oc.backward(go);
      og.backward(cuda(go));
      for (size_t i = 0; i < cpu.bases.size(); ++i) expect_gpu(gpu.bases[i].grad(), cpu.bases[i].grad(), tol(dt), "grad");
    }
  for (DType dt : kHalf) {   // the fused kernel against the materialised one, both on CUDA
    SCOPED_TRACE(dtype_name(dt));
    const Qkv gpu = qkv(c, dt, false, 92, true);
    Generator ga(8), gb(8);
    Tensor fused, materialised;
    {
      KernelScope scope(AttentionKernel::fused);
      fused = scaled_dot_product_attention(gpu.q, gpu.k, gpu.v, true, std::nullopt, 0.5, &ga);
    }
    {
      KernelScope scope(AttentionKernel::materialized);
      materialised = scaled_dot_product_attention(gpu.q, gpu.k, gpu.v, true, std::nullopt, 0.5, &gb);
    }
    expect_gpu(fused, raw::to_dtype(raw::to_device(materialised, Device::cpu()), DType::f32), tol(dt), "dropout mask");
  }
}

TEST(CudaLayers, AttentionInHalfPrecision) {
  REQUIRE_CUDA();
  for (AttentionKernel kernel : kKernels)
    for (DType dt : kHalf)
      for (const AttnCase& c : {AttnCase{2, 2, 9, 9, 16}, AttnCase{1, 2, 70, 70, 64}})
        for (bool causal : {false, true}) {
          SCOPED_TRACE(::testing::Message() << (kernel == AttentionKernel::fused ? "fused " : "materialised ")
                                            << dtype_name(dt) << " T" << c.T << (causal ? " causal" : ""));
          const Qkv cpu = qkv(c, dt, false, 95, false), gpu = qkv(c, dt, false, 95, true, true);
          const Tensor q32 = leaf(raw::to_dtype(cpu.q, DType::f32)), k32 = leaf(raw::to_dtype(cpu.k, DType::f32));
          const Tensor v32 = leaf(raw::to_dtype(cpu.v, DType::f32));
          Tensor oc = scaled_dot_product_attention(q32, k32, v32, causal);
          Tensor og;
          {
            KernelScope scope(kernel);
            og = scaled_dot_product_attention(gpu.q, gpu.k, gpu.v, causal);
          }
          expect_gpu(og, oc, tol(dt), "output");
          const Tensor go = rnd(oc.shape(), 96, dt);
          oc.backward(raw::to_dtype(go, DType::f32));
          og.backward(cuda(go));
          expect_gpu(gpu.bases[0].grad().transpose(1, 2), q32.grad(), tol(dt), "q grad");
          expect_gpu(gpu.bases[1].grad().transpose(1, 2), k32.grad(), tol(dt), "k grad");
          expect_gpu(gpu.bases[2].grad().transpose(1, 2), v32.grad(), tol(dt), "v grad");
        }
}

TEST(CudaLayers, FusedAttentionHeadDimLimit) {
  REQUIRE_CUDA();
  const AttnCase c{1, 2, 10, 10, kCudaFusedAttentionMaxHeadDim + 1};
  const Qkv cpu = qkv(c, DType::f32, false, 97, false), gpu = qkv(c, DType::f32, false, 97, true);
  {
    KernelScope scope(AttentionKernel::fused);
    testing::expect_error([&] { scaled_dot_product_attention(gpu.q, gpu.k, gpu.v, true); },
                          {"head dims up to 128", "D=129", "materialized"});
  }
  // automatic falls back to the materialised kernel above the limit.
  expect_gpu(scaled_dot_product_attention(gpu.q, gpu.k, gpu.v, true),
             scaled_dot_product_attention(cpu.q, cpu.k, cpu.v, true), tol(DType::f32), "automatic, D=129");
}

// ------------------------------------------------------------------------ bias + GELU

TEST(CudaLayers, BiasGeluForwardBackward) {
  REQUIRE_CUDA();
  for (DType dt : kFloat)
    for (const Shape& shape : {Shape{6, 50}, Shape{3, 4, 300}, Shape{130, 7}})
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " " << shape << (with_bias ? " bias" : ""));
        const Tensor x = rnd(shape, 100, dt, -4, 4), b = rnd({shape.back()}, 101, dt);
        Tensor xc = leaf(x), bc = with_bias ? leaf(b) : Tensor();
        Tensor xg = leaf(cuda(x)), bg = with_bias ? leaf(cuda(b)) : Tensor();
        Tensor yc = bias_gelu(xc, bc), yg = bias_gelu(xg, bg);
        expect_gpu(yg, yc, tol(dt), "output");
        const Tensor gy = rnd(shape, 102, dt);
        yc.backward(gy);
        yg.backward(cuda(gy));
        expect_gpu(xg.grad(), xc.grad(), tol(dt), "x grad");
        if (with_bias) expect_gpu(bg.grad(), bc.grad(), tol(dt), "bias grad (column sums)");
      }
  for (DType dt : kHalf) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor x = rnd({8, 40}, 103, dt, -4, 4), b = rnd({40}, 104, dt);
    const Tensor yc = bias_gelu(raw::to_dtype(x, DType::f32), raw::to_dtype(b, DType::f32));
    expect_gpu(bias_gelu(cuda(x), cuda(b)), yc, tol(dt), "output");
  }
}

// ------------------------------------------------------------------------ rotary

TEST(CudaLayers, RotaryBothDirections) {
  REQUIRE_CUDA();
  for (DType dt : kFloat)
    for (int64_t start : {int64_t(0), int64_t(5000)})
      for (double theta : {10000.0, 500000.0}) {
        SCOPED_TRACE(::testing::Message() << dtype_name(dt) << " start " << start << " theta " << theta);
        const Tensor x = raw::transpose(rnd({2, 7, 3, 16}, 110, dt), 1, 2);   // (B, H, T, D) over (B, T, H, D)
        Tensor xc = leaf(x), xg = leaf(cuda(x));
        Tensor yc = apply_rotary(xc, start, theta), yg = apply_rotary(xg, start, theta);
        expect_gpu(yg, yc, tol(dt), "forward");
        // The backward is the inverse rotation.
        const Tensor gy = rnd(yc.shape(), 111, dt);
        yc.backward(gy);
        yg.backward(cuda(gy));
        expect_gpu(xg.grad(), xc.grad(), tol(dt), "inverse (backward)");
        // Forward then inverse through the backend gives x back.
        Tensor back = raw::transpose(empty({2, 7, 3, 16}, dt, Device::cuda()), 1, 2);
        backend(Device::cuda()).rotary(raw::contiguous(yg.detach()), start, theta, /*inverse=*/true, back);
        expect_gpu(back, x, tol(dt), "round trip");
      }
  for (DType dt : kHalf) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor x = rnd({1, 2, 5, 8}, 112, dt);
    const Tensor yc = apply_rotary(raw::to_dtype(x, DType::f32), 3);
    expect_gpu(apply_rotary(cuda(x), 3), yc, tol(dt), "forward");
  }
}

// ------------------------------------------------------------------------ determinism

TEST(CudaLayers, BackwardKernelsAreDeterministic) {
  REQUIRE_CUDA();
  // Two runs of the same backward give bitwise-equal gradients: cuDNN algorithms are chosen
  // deterministic, the pooling, column-sum and fused-attention kernels add in a fixed order
  // without atomics.
  auto grads = [] {
    Tensor x = leaf(cuda(rnd({8, 6, 12, 12}, 120))), w = leaf(cuda(rnd({10, 6, 3, 3}, 121)));
    Tensor b = leaf(cuda(rnd({10}, 122)));
    Tensor y = max_pool2d(conv2d(x, w, b, 1, 1), 3, 2, 1);
    y.backward(cuda(rnd(y.shape(), 123)));
    Tensor xn = leaf(cuda(rnd({300, 64}, 124))), wn = leaf(cuda(rnd({64}, 125))), bn = leaf(cuda(rnd({64}, 126)));
    Tensor yn = layer_norm(xn, wn, bn);
    yn.backward(cuda(rnd(yn.shape(), 127)));
    KernelScope scope(AttentionKernel::fused);
    const Qkv a = qkv(AttnCase{2, 2, 70, 70, 64}, DType::f32, true, 128, true, true);
    Tensor ya = scaled_dot_product_attention(a.q, a.k, a.v, true);
    ya.backward(cuda(rnd(ya.shape(), 129)));
    return std::vector<Tensor>{x.grad(), w.grad(), b.grad(), wn.grad(), bn.grad(), a.bases[0].grad()};
  };
  const std::vector<Tensor> first = grads(), second = grads();
  for (size_t i = 0; i < first.size(); ++i) expect_equal(second[i], raw::to_device(first[i], Device::cpu()), "grad " + std::to_string(i));
}

}  // namespace
}  // namespace mox
