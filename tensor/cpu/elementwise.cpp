// elementwise.cpp — CPU kernels: copy/cast, fill, unary math, binary ops, where, axpy.
//
// Every kernel is a StridedLoop over its operands; 16-bit floats compute in float. The exact
// GELU and its derivative in float (f32, f16, bf16) use the vectorisable erf-free versions of
// vector_math.h; f64 keeps libm's erf (tensor/math.h), which the gradchecks rely on.
#include <cmath>
#include <type_traits>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/vector_math.h"
#include "tensor/math.h"

namespace mox {

using cpu::acc_t;
using cpu::StridedLoop;

namespace {
template <typename T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

template <typename To, typename From> inline To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) return static_cast<acc_t<From>>(v) != acc_t<From>(0);
  else if constexpr (std::is_same_v<To, half> || std::is_same_v<To, bfloat16>) return To(float(v));
  else return static_cast<To>(static_cast<acc_t<From>>(v));
}

// unary_value and unary_derivative are forced inline: their op is a compile-time constant in
// the kernels' loops (with_op below), so each folds to one case, but GCC's inliner judges the
// whole switch (GELU's vector_math.h body included) too big and would call it per element.
template <typename T> [[gnu::always_inline]] inline acc_t<T> unary_value(UnaryOp op, acc_t<T> x) {
  using A = acc_t<T>;
  if constexpr (std::is_floating_point_v<A>) {
    switch (op) {
      case UnaryOp::neg: return -x;
      case UnaryOp::abs: return std::abs(x);
      case UnaryOp::exp: return std::exp(x);
      case UnaryOp::log: return std::log(x);
      case UnaryOp::sqrt: return std::sqrt(x);
      case UnaryOp::rsqrt: return A(1) / std::sqrt(x);
      case UnaryOp::sin: return std::sin(x);
      case UnaryOp::cos: return std::cos(x);
      case UnaryOp::tanh: return std::tanh(x);
      case UnaryOp::sigmoid: return math::sigmoid(x);
      case UnaryOp::relu: return x > A(0) ? x : A(0);
      case UnaryOp::gelu:
        if constexpr (std::is_same_v<A, float>) return cpu::vm::gelu(x);
        else return math::gelu(x);
      case UnaryOp::gelu_tanh: return math::gelu_tanh(x);
      case UnaryOp::silu: return math::silu(x);
      case UnaryOp::square: return x * x;
      case UnaryOp::reciprocal: return A(1) / x;
    }
  } else {
    switch (op) {
      case UnaryOp::neg: return A(-x);
      case UnaryOp::abs: return x < A(0) ? A(-x) : x;
      case UnaryOp::relu: return x > A(0) ? x : A(0);
      case UnaryOp::square: return A(x * x);
      default: break;
    }
  }
  return x;
}

// d f(x) / dx, given x and y = f(x).
template <typename A> [[gnu::always_inline]] inline A unary_derivative(UnaryOp op, A x, A y) {
  switch (op) {
    case UnaryOp::neg: return A(-1);
    case UnaryOp::abs: return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));
    case UnaryOp::exp: return y;
    case UnaryOp::log: return A(1) / x;
    case UnaryOp::sqrt: return A(0.5) / y;
    case UnaryOp::rsqrt: return A(-0.5) * y * y * y;
    case UnaryOp::sin: return std::cos(x);
    case UnaryOp::cos: return -std::sin(x);
    case UnaryOp::tanh: return A(1) - y * y;
    case UnaryOp::sigmoid: return y * (A(1) - y);
    case UnaryOp::relu: return x > A(0) ? A(1) : A(0);
    case UnaryOp::gelu:
      if constexpr (std::is_same_v<A, float>) return cpu::vm::gelu_grad(x);
      else return math::gelu_grad(x);
    case UnaryOp::gelu_tanh: return math::gelu_tanh_grad(x);
    case UnaryOp::silu: return math::silu_grad(x);
    case UnaryOp::square: return A(2) * x;
    case UnaryOp::reciprocal: return -y * y;
  }
  return A(0);
}

template <typename A> inline A binary_value(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div:
      if constexpr (std::is_integral_v<A> && std::is_signed_v<A>) {
        // MIN / -1 overflows (SIGFPE on x86): negate with wrap-around instead.
        using U = std::make_unsigned_t<A>;
        if (b == A(-1)) return A(U(0) - U(a));
      }
      return a / b;
    case BinaryOp::maximum: return a >= b ? a : b;
    case BinaryOp::minimum: return a <= b ? a : b;
    case BinaryOp::pow:
      if constexpr (std::is_integral_v<A>) return math::int_pow(a, b);
      else return A(std::pow(double(a), double(b)));
    default: return A(0);
  }
}

template <typename A> inline bool compare(BinaryOp op, A a, A b) {
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

// Turn a run-time op into a compile-time constant so each op's loop is compiled (and
// vectorised) on its own, with no switch inside the loop.
template <typename F> void with_op(UnaryOp op, F&& f) {
  using U = UnaryOp;
  switch (op) {
#define MOX_CASE(name) case U::name: return f(std::integral_constant<U, U::name>{});
    MOX_CASE(neg) MOX_CASE(abs) MOX_CASE(exp) MOX_CASE(log) MOX_CASE(sqrt) MOX_CASE(rsqrt)
    MOX_CASE(sin) MOX_CASE(cos) MOX_CASE(tanh) MOX_CASE(sigmoid) MOX_CASE(relu) MOX_CASE(gelu)
    MOX_CASE(gelu_tanh) MOX_CASE(silu) MOX_CASE(square) MOX_CASE(reciprocal)
#undef MOX_CASE
  }
}
template <typename F> void with_op(BinaryOp op, F&& f) {
  using B = BinaryOp;
  switch (op) {
#define MOX_CASE(name) case B::name: return f(std::integral_constant<B, B::name>{});
    MOX_CASE(add) MOX_CASE(sub) MOX_CASE(mul) MOX_CASE(div) MOX_CASE(maximum) MOX_CASE(minimum)
    MOX_CASE(pow) MOX_CASE(eq) MOX_CASE(ne) MOX_CASE(lt) MOX_CASE(le) MOX_CASE(gt) MOX_CASE(ge)
#undef MOX_CASE
  }
}
}  // namespace

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  StridedLoop<2> loop(dst.shape(), {&dst.strides(), &src.strides()});
  cpu::dispatch_all(dst.dtype(), "copy", [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    cpu::dispatch_all(src.dtype(), "copy", [&](auto stag) {
      using S = typename decltype(stag)::type;
      D* d = ptr<D>(dst);
      const S* s = ptr<S>(src);
      loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        D* dp = d + off[0];
        const S* sp = s + off[1];
        if constexpr (std::is_same_v<D, S>) {
          if (st[0] == 1 && st[1] == 1) { std::copy(sp, sp + n, dp); return; }
        }
        for (int64_t i = 0; i < n; ++i) dp[i * st[0]] = convert<D>(sp[i * st[1]]);
      });
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  StridedLoop<1> loop(dst.shape(), {&dst.strides()});
  cpu::dispatch_all(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = convert<T>(value);
    T* d = ptr<T>(dst);
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
      for (int64_t i = 0; i < n; ++i) d[off[0] + i * st[0]] = v;
    });
  });
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  StridedLoop<2> loop(out.shape(), {&out.strides(), &x.strides()});
  cpu::dispatch_all(x.dtype(), unary_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      MOX_FAIL(unary_name(op), " is not defined on bool tensors");
    } else {
      T* o = ptr<T>(out);
      const T* xs = ptr<T>(x);
      with_op(op, [&](auto OP) {
        loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
          T* __restrict op_ = o + off[0];
          const T* __restrict xp = xs + off[1];
          if (st[0] == 1 && st[1] == 1) {
            for (int64_t i = 0; i < n; ++i) op_[i] = T(unary_value<T>(OP.value, acc_t<T>(xp[i])));
            return;
          }
          for (int64_t i = 0; i < n; ++i) op_[i * st[0]] = T(unary_value<T>(OP.value, acc_t<T>(xp[i * st[1]])));
        });
      });
    }
  });
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                                const Tensor& gx) {
  StridedLoop<4> loop(gx.shape(), {&gx.strides(), &x.strides(), &y.strides(), &gy.strides()});
  cpu::dispatch_float(x.dtype(), unary_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    T* g = ptr<T>(gx);
    const T *xs = ptr<T>(x), *ys = ptr<T>(y), *gys = ptr<T>(gy);
    with_op(op, [&](auto OP) {
      loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        T* __restrict gp = g + off[0];
        const T *__restrict xp = xs + off[1], *__restrict yp = ys + off[2], *__restrict gyp = gys + off[3];
        if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
          for (int64_t i = 0; i < n; ++i) gp[i] = T(A(gyp[i]) * unary_derivative<A>(OP.value, A(xp[i]), A(yp[i])));
          return;
        }
        for (int64_t i = 0; i < n; ++i)
          gp[i * st[0]] = T(A(gyp[i * st[3]]) * unary_derivative<A>(OP.value, A(xp[i * st[1]]), A(yp[i * st[2]])));
      });
    });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  StridedLoop<3> loop(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
  cpu::dispatch_all(a.dtype(), binary_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T *as = ptr<T>(a), *bs = ptr<T>(b);
    if (is_comparison(op)) {
      bool* o = ptr<bool>(out);
      loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        for (int64_t i = 0; i < n; ++i)
          o[off[0] + i * st[0]] = compare<A>(op, A(as[off[1] + i * st[1]]), A(bs[off[2] + i * st[2]]));
      });
      return;
    }
    if constexpr (!std::is_same_v<T, bool>) {
      T* o = ptr<T>(out);
      with_op(op, [&](auto OP) {
        loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
          T* __restrict op_ = o + off[0];
          const T *__restrict ap = as + off[1], *__restrict bp = bs + off[2];
          if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
            for (int64_t i = 0; i < n; ++i) op_[i] = T(binary_value<A>(OP.value, A(ap[i]), A(bp[i])));
          } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {   // tensor op broadcast scalar row
            const A bv = A(bp[0]);
            for (int64_t i = 0; i < n; ++i) op_[i] = T(binary_value<A>(OP.value, A(ap[i]), bv));
          } else {
            for (int64_t i = 0; i < n; ++i)
              op_[i * st[0]] = T(binary_value<A>(OP.value, A(ap[i * st[1]]), A(bp[i * st[2]])));
          }
        });
      });
    }
  });
}

void CpuBackend::binary_scalar(BinaryOp op, const Tensor& a, double s, bool reversed, const Tensor& out) {
  StridedLoop<2> loop(out.shape(), {&out.strides(), &a.strides()});
  cpu::dispatch_all(a.dtype(), binary_name(op), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const A sv = A(s);
    const T* as = ptr<T>(a);
    if (is_comparison(op)) {
      // Integers compare against the scalar in double: x < 2.5 must not become x < 2.
      using C = std::conditional_t<std::is_integral_v<A>, double, A>;
      const C sc = C(s);
      bool* o = ptr<bool>(out);
      loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        for (int64_t i = 0; i < n; ++i) {
          C v = C(A(as[off[1] + i * st[1]]));
          o[off[0] + i * st[0]] = reversed ? compare<C>(op, sc, v) : compare<C>(op, v, sc);
        }
      });
      return;
    }
    if constexpr (!std::is_same_v<T, bool>) {
      T* o = ptr<T>(out);
      with_op(op, [&](auto OP) {
        loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
          T* op_ = o + off[0];
          const T* ap = as + off[1];
          if (reversed) {
            for (int64_t i = 0; i < n; ++i) op_[i * st[0]] = T(binary_value<A>(OP.value, sv, A(ap[i * st[1]])));
          } else if (st[0] == 1 && st[1] == 1) {
            for (int64_t i = 0; i < n; ++i) op_[i] = T(binary_value<A>(OP.value, A(ap[i]), sv));
          } else {
            for (int64_t i = 0; i < n; ++i) op_[i * st[0]] = T(binary_value<A>(OP.value, A(ap[i * st[1]]), sv));
          }
        });
      });
    }
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  StridedLoop<4> loop(out.shape(), {&out.strides(), &cond.strides(), &a.strides(), &b.strides()});
  cpu::dispatch_all(a.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = ptr<T>(out);
    const bool* c = ptr<bool>(cond);
    const T *as = ptr<T>(a), *bs = ptr<T>(b);
    loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * st[0]] = c[off[1] + i * st[1]] ? as[off[2] + i * st[2]] : bs[off[3] + i * st[3]];
    });
  });
}

void CpuBackend::axpy(double alpha, const Tensor& x, const Tensor& y) {
  StridedLoop<2> loop(y.shape(), {&y.strides(), &x.strides()});
  cpu::dispatch_all(y.dtype(), "axpy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      using A = acc_t<T>;
      const A al = A(alpha);
      T* ys = ptr<T>(y);
      const T* xs = ptr<T>(x);
      loop.run([&](const int64_t* off, int64_t n, const int64_t* st) {
        for (int64_t i = 0; i < n; ++i) {
          T& dst = ys[off[0] + i * st[0]];
          dst = T(A(dst) + al * A(xs[off[1] + i * st[1]]));
        }
      });
    } else {
      MOX_FAIL("axpy is not defined on bool tensors");
    }
  });
}

}  // namespace mox
