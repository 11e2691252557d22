// elementwise.cu — CUDA kernels: copy/cast, fill, unary (+ backward), binary, binary_scalar,
// where, axpy.
//
// Semantics are those of tensor/cpu/elementwise.cpp, the reference: 16-bit floats compute in
// float, comparisons write bool, integer division by −1 negates with wrap-around (division
// by zero is refused by the front-end), maximum/minimum keep `a >= b ? a : b` (so a NaN in a
// is replaced by b, as on the CPU), scalars are converted to the dtype on the host exactly as
// the CPU converts them. Activation math is tensor/math.h's MOX_HD functions.
//
// How: every kernel is one grid-stride loop over the output's elements. Operands reach it as
// a `Strided<N>` — one shape and N stride sets, with dims of extent 1 dropped and dims that
// are contiguous in every operand merged (as the CPU's StridedLoop does) — so broadcast
// (stride 0), transposed and sliced inputs need no copy; when every operand is contiguous the
// offsets are the linear index itself (no div/mod). Memory-bound; one read per input and one
// write per element. The op is a run-time argument (a uniform branch per element) rather
// than a template parameter: one kernel per dtype instead of one per (op, dtype).
//
// Not exact vs the CPU: transcendental functions (exp, log, tanh, erf, pow of floats, …)
// are CUDA's (≤ 2 ulp) rather than glibc's, and FMA contraction may differ, so float results
// agree to rounding, not bitwise. Integer results are exact (integer pow too: math::int_pow,
// shared with the CPU), except where the CPU itself is undefined (a float → int cast out of
// range or NaN).
// Not here: reductions (reduce.cu), type promotion (mox never promotes; the front-end checks).
#include <type_traits>

#include "tensor/cuda/common.cuh"
#include "tensor/cuda/cuda_backend.h"
#include "tensor/math.h"

namespace mox {

namespace {

using cuda::acc_t;
using cuda::ptr;

// ------------------------------------------------------------------ strided operands

// N operands over one shape (rank ≤ 8 after coalescing), strides per operand in elements.
template <int N>
struct Strided {
  int ndim = 0;
  bool contiguous = false;   // every operand is contiguous: offsets equal the linear index
  int64_t shape[Shape::kMaxRank] = {};
  int64_t strides[N][Shape::kMaxRank] = {};
};

// The CPU's StridedLoop coalescing: drop extent-1 dims, merge a dim into the previous one
// when it continues it in every operand.
template <int N>
Strided<N> make_strided(const Shape& shape, const Tensor* const (&ops)[N]) {
  Strided<N> s;
  int r = 0;
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = r > 0;
    for (int k = 0; k < N && merge; ++k) merge = s.strides[k][r - 1] == ops[k]->stride(d) * shape[d];
    if (merge) {
      s.shape[r - 1] *= shape[d];
      for (int k = 0; k < N; ++k) s.strides[k][r - 1] = ops[k]->stride(d);
    } else {
      s.shape[r] = shape[d];
      for (int k = 0; k < N; ++k) s.strides[k][r] = ops[k]->stride(d);
      ++r;
    }
  }
  s.ndim = r;
  s.contiguous = true;
  if (r == 1)
    for (int k = 0; k < N; ++k) s.contiguous = s.contiguous && s.strides[k][0] == 1;
  else if (r > 1)
    s.contiguous = false;
  return s;   // r == 0: a single element, offsets 0 == the linear index 0
}

template <int N>
__device__ __forceinline__ void offsets_of(const Strided<N>& s, int64_t i, int64_t (&off)[N]) {
  if (s.contiguous) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i;
    return;
  }
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    const int64_t q = i / s.shape[d], c = i - q * s.shape[d];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += c * s.strides[k][d];
    i = q;
  }
}

template <int N, typename F>
__global__ void strided_kernel(Strided<N> s, int64_t n, F f) {
  MOX_GRID_STRIDE(i, n) {
    int64_t off[N];
    offsets_of(s, i, off);
    f(off);
  }
}

template <int N, typename F>
void launch(const Shape& shape, const Tensor* const (&ops)[N], F f) {
  const int64_t n = shape.numel();
  if (n == 0) return;
  const Strided<N> s = make_strided<N>(shape, ops);
  strided_kernel<N, F><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(s, n, f);
  CUDA_CHECK_LAUNCH();
}

// ------------------------------------------------------------------ scalar semantics

// The CPU's convert<To>(From).
template <typename To, typename From>
__host__ __device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) return static_cast<acc_t<From>>(v) != acc_t<From>(0);
  else if constexpr (std::is_same_v<To, half> || std::is_same_v<To, bfloat16>) return To(float(v));
  else return static_cast<To>(static_cast<acc_t<From>>(v));
}

template <typename A>
__device__ __forceinline__ A unary_value(UnaryOp op, A x) {
  if constexpr (std::is_floating_point_v<A>) {
    switch (op) {
      case UnaryOp::neg: return -x;
      case UnaryOp::abs: return ::fabs(x);
      case UnaryOp::exp: return ::exp(x);
      case UnaryOp::log: return ::log(x);
      case UnaryOp::sqrt: return ::sqrt(x);
      case UnaryOp::rsqrt: return A(1) / ::sqrt(x);
      case UnaryOp::sin: return ::sin(x);
      case UnaryOp::cos: return ::cos(x);
      case UnaryOp::tanh: return ::tanh(x);
      case UnaryOp::sigmoid: return math::sigmoid(x);
      case UnaryOp::relu: return x > A(0) ? x : A(0);
      case UnaryOp::gelu: return math::gelu(x);
      case UnaryOp::gelu_tanh: return math::gelu_tanh(x);
      case UnaryOp::silu: return math::silu(x);
      case UnaryOp::square: return x * x;
      case UnaryOp::reciprocal: return A(1) / x;
    }
  } else {
    switch (op) {
      case UnaryOp::neg: return A(-x);
      case UnaryOp::abs:
        if constexpr (std::is_signed_v<A>) return x < A(0) ? A(-x) : x;
        else return x;
      case UnaryOp::relu: return x > A(0) ? x : A(0);
      case UnaryOp::square: return A(x * x);
      default: break;   // the front-end allows only the four above on integers
    }
  }
  return x;
}

// d f(x) / dx, given x and y = f(x) (the CPU's unary_derivative).
template <typename A>
__device__ __forceinline__ A unary_derivative(UnaryOp op, A x, A y) {
  switch (op) {
    case UnaryOp::neg: return A(-1);
    case UnaryOp::abs: return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));
    case UnaryOp::exp: return y;
    case UnaryOp::log: return A(1) / x;
    case UnaryOp::sqrt: return A(0.5) / y;
    case UnaryOp::rsqrt: return A(-0.5) * y * y * y;
    case UnaryOp::sin: return ::cos(x);
    case UnaryOp::cos: return -::sin(x);
    case UnaryOp::tanh: return A(1) - y * y;
    case UnaryOp::sigmoid: return y * (A(1) - y);
    case UnaryOp::relu: return x > A(0) ? A(1) : A(0);
    case UnaryOp::gelu: return math::gelu_grad(x);
    case UnaryOp::gelu_tanh: return math::gelu_tanh_grad(x);
    case UnaryOp::silu: return math::silu_grad(x);
    case UnaryOp::square: return A(2) * x;
    case UnaryOp::reciprocal: return -y * y;
  }
  return A(0);
}

template <typename A>
__device__ __forceinline__ A binary_value(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div:
      if constexpr (std::is_integral_v<A> && std::is_signed_v<A>) {
        using U = std::make_unsigned_t<A>;   // MIN / −1 overflows: negate with wrap-around
        if (b == A(-1)) return A(U(0) - U(a));
      }
      return a / b;
    case BinaryOp::maximum: return a >= b ? a : b;
    case BinaryOp::minimum: return a <= b ? a : b;
    case BinaryOp::pow:
      if constexpr (std::is_integral_v<A>) return math::int_pow(a, b);
      else return A(::pow(double(a), double(b)));
    default: return A(0);
  }
}

template <typename A>
__device__ __forceinline__ bool compare(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::eq: return a == b;
    case BinaryOp::ne: return a != b;
    case BinaryOp::lt: return a < b;
    case BinaryOp::le: return a <= b;
    case BinaryOp::gt: return a > b;
    case BinaryOp::ge: return a >= b;
    default: return false;
  }
}

// ------------------------------------------------------------------ functors (one per kernel)

template <typename D, typename S>
struct CopyF {
  D* d;
  const S* s;
  __device__ void operator()(const int64_t* off) const {
    if constexpr (std::is_same_v<D, S>) d[off[0]] = s[off[1]];   // bitwise, NaN payloads included (std::copy on the CPU)
    else d[off[0]] = convert<D>(s[off[1]]);
  }
};

template <typename T>
struct FillF {
  T* d;
  T v;
  __device__ void operator()(const int64_t* off) const { d[off[0]] = v; }
};

template <typename T>
struct UnaryF {
  T* o;
  const T* x;
  UnaryOp op;
  __device__ void operator()(const int64_t* off) const {
    o[off[0]] = T(unary_value<acc_t<T>>(op, acc_t<T>(x[off[1]])));
  }
};

template <typename T>
struct UnaryBackwardF {
  T* gx;
  const T *x, *y, *gy;
  UnaryOp op;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    gx[off[0]] = T(A(gy[off[3]]) * unary_derivative<A>(op, A(x[off[1]]), A(y[off[2]])));
  }
};

template <typename T>
struct BinaryF {
  T* o;
  const T *a, *b;
  BinaryOp op;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    o[off[0]] = T(binary_value<A>(op, A(a[off[1]]), A(b[off[2]])));
  }
};

template <typename T>
struct CompareF {
  bool* o;
  const T *a, *b;
  BinaryOp op;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    o[off[0]] = compare<A>(op, A(a[off[1]]), A(b[off[2]]));
  }
};

template <typename T>
struct BinaryScalarF {
  T* o;
  const T* a;
  acc_t<T> s;
  BinaryOp op;
  bool reversed;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    const A v = A(a[off[1]]);
    o[off[0]] = T(reversed ? binary_value<A>(op, s, v) : binary_value<A>(op, v, s));
  }
};

// Integers compare against the scalar in double (x < 2.5 must not become x < 2).
template <typename T>
struct CompareScalarF {
  using A = acc_t<T>;
  using C = std::conditional_t<std::is_integral_v<A>, double, A>;
  bool* o;
  const T* a;
  C s;
  BinaryOp op;
  bool reversed;
  __device__ void operator()(const int64_t* off) const {
    const C v = C(A(a[off[1]]));
    o[off[0]] = reversed ? compare<C>(op, s, v) : compare<C>(op, v, s);
  }
};

template <typename T>
struct WhereF {
  T* o;
  const bool* c;
  const T *a, *b;
  __device__ void operator()(const int64_t* off) const { o[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]]; }
};

template <typename T>
struct AxpyF {
  T* y;
  const T* x;
  acc_t<T> alpha;
  __device__ void operator()(const int64_t* off) const {
    using A = acc_t<T>;
    T& dst = y[off[0]];
    dst = T(A(dst) + alpha * A(x[off[1]]));
  }
};

// Typed launchers (templates, so that `if constexpr` discards the bool instantiations).
template <typename T>
void unary_typed(UnaryOp op, const Tensor& x, const Tensor& out) {
  if constexpr (std::is_same_v<T, bool>) {
    MOX_FAIL(unary_name(op), " is not defined on bool tensors");
  } else {
    const Tensor* ops[2] = {&out, &x};
    launch<2>(out.shape(), ops, UnaryF<T>{ptr<T>(out), ptr<T>(x), op});
  }
}

template <typename T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const Tensor* ops[3] = {&out, &a, &b};
  if (is_comparison(op)) {
    launch<3>(out.shape(), ops, CompareF<T>{ptr<bool>(out), ptr<T>(a), ptr<T>(b), op});
    return;
  }
  if constexpr (std::is_same_v<T, bool>) MOX_FAIL(binary_name(op), " is not defined on bool tensors");
  else launch<3>(out.shape(), ops, BinaryF<T>{ptr<T>(out), ptr<T>(a), ptr<T>(b), op});
}

template <typename T>
void binary_scalar_typed(BinaryOp op, const Tensor& a, double s, bool reversed, const Tensor& out) {
  const Tensor* ops[2] = {&out, &a};
  if (is_comparison(op)) {
    using F = CompareScalarF<T>;
    launch<2>(out.shape(), ops, F{ptr<bool>(out), ptr<T>(a), typename F::C(s), op, reversed});
    return;
  }
  if constexpr (std::is_same_v<T, bool>) {
    MOX_FAIL(binary_name(op), " is not defined on bool tensors");
  } else {
    // The scalar is converted here, on the host, as the CPU converts it.
    launch<2>(out.shape(), ops, BinaryScalarF<T>{ptr<T>(out), ptr<T>(a), acc_t<T>(s), op, reversed});
  }
}

template <typename T>
void axpy_typed(double alpha, const Tensor& x, const Tensor& y) {
  if constexpr (std::is_same_v<T, bool>) {
    MOX_FAIL("axpy is not defined on bool tensors");
  } else {
    const Tensor* ops[2] = {&y, &x};
    launch<2>(y.shape(), ops, AxpyF<T>{ptr<T>(y), ptr<T>(x), acc_t<T>(alpha)});
  }
}

}  // namespace

// ---------------------------------------------------------------------------- launchers

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  if (dst.numel() == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous() && src.shape() == dst.shape()) {
    if (src.raw_data() != dst.raw_data())
      CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), dst.nbytes(), cudaMemcpyDeviceToDevice,
                                 cuda::stream()));
    return;
  }
  const Tensor* ops[2] = {&dst, &src};
  MOX_CUDA_DISPATCH_ALL(dst.dtype(), D, {
    MOX_CUDA_DISPATCH_ALL(src.dtype(), S, { launch<2>(dst.shape(), ops, CopyF<D, S>{ptr<D>(dst), ptr<S>(src)}); });
  });
}

void CudaBackend::fill(const Tensor& dst, double value) {
  const Tensor* ops[1] = {&dst};
  MOX_CUDA_DISPATCH_ALL(dst.dtype(), T, { launch<1>(dst.shape(), ops, FillF<T>{ptr<T>(dst), convert<T>(value)}); });
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  MOX_CUDA_DISPATCH_ALL(x.dtype(), T, unary_typed<T>(op, x, out));
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, const Tensor& gx) {
  const Tensor* ops[4] = {&gx, &x, &y, &gy};
  MOX_CUDA_DISPATCH_FLOAT(x.dtype(), unary_name(op), T, {
    launch<4>(gx.shape(), ops, UnaryBackwardF<T>{ptr<T>(gx), ptr<T>(x), ptr<T>(y), ptr<T>(gy), op});
  });
}

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  MOX_CUDA_DISPATCH_ALL(a.dtype(), T, binary_typed<T>(op, a, b, out));
}

void CudaBackend::binary_scalar(BinaryOp op, const Tensor& a, double s, bool reversed, const Tensor& out) {
  MOX_CUDA_DISPATCH_ALL(a.dtype(), T, binary_scalar_typed<T>(op, a, s, reversed, out));
}

void CudaBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  const Tensor* ops[4] = {&out, &cond, &a, &b};
  MOX_CUDA_DISPATCH_ALL(a.dtype(), T, {
    launch<4>(out.shape(), ops, WhereF<T>{ptr<T>(out), ptr<bool>(cond), ptr<T>(a), ptr<T>(b)});
  });
}

void CudaBackend::axpy(double alpha, const Tensor& x, const Tensor& y) {
  MOX_CUDA_DISPATCH_ALL(y.dtype(), T, axpy_typed<T>(alpha, x, y));
}

}  // namespace mox
