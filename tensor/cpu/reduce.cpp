// reduce.cpp — CPU kernels: reductions, arg-reductions, softmax/log-softmax, cumsum.
//
// Reductions view the input as (rows, cols) after moving reduced dims last (a copy only
// when that view is not contiguous), except the bias-gradient pattern — reducing leading
// dims of a contiguous tensor — which accumulates rows in place without a copy.
// Floating sums accumulate in double.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"
#include "tensor/ops.h"

namespace mox {

using cpu::acc_t;

namespace {
template <typename T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

// Accumulator type: double for floats, int64 for integers.
template <typename T> using sum_t = std::conditional_t<std::is_floating_point_v<acc_t<T>>, double, int64_t>;

template <typename T>
void reduce_rows(ReduceOp op, const T* x, int64_t rows, int64_t cols, T* out) {
  using S = sum_t<T>;
  const bool parallel = rows * cols >= cpu::kParallelGrain && rows > 1;
#pragma omp parallel for if (parallel) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    S acc = 0;
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::mean:
        acc = 0;
        for (int64_t c = 0; c < cols; ++c) acc += S(acc_t<T>(row[c]));
        if (op == ReduceOp::mean) acc = cols ? acc / S(cols) : S(NAN);
        break;
      case ReduceOp::prod:
        acc = 1;
        for (int64_t c = 0; c < cols; ++c) acc *= S(acc_t<T>(row[c]));
        break;
      case ReduceOp::max:
      case ReduceOp::min: {
        acc = S(acc_t<T>(row[0]));
        for (int64_t c = 1; c < cols; ++c) {
          S v = S(acc_t<T>(row[c]));
          if (v != v) { acc = v; break; }   // NaN propagates
          if (op == ReduceOp::max ? v > acc : v < acc) acc = v;
        }
        break;
      }
    }
    out[r] = T(acc_t<T>(acc));
  }
}

// out[c] = reduce over r of x[r, c]; for sum/mean over leading dims (bias gradients).
// Columns are taken in blocks of kBlock whose double accumulators stay in L1 while the rows
// stream through in memory order (a column at a time would read with a stride of `cols`,
// a cache miss per element on large gradients); each column still sums its rows in order,
// so the result does not depend on the blocking or the thread count.
template <typename T>
void reduce_leading(ReduceOp op, const T* x, int64_t rows, int64_t cols, T* out) {
  using S = sum_t<T>;
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (cols + kBlock - 1) / kBlock;
  const bool parallel = rows * cols >= cpu::kParallelGrain && blocks > 1;
#pragma omp parallel for if (parallel) schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, width = std::min(kBlock, cols - c0);
    S acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = x + r * cols + c0;
      for (int64_t c = 0; c < width; ++c) acc[c] += S(acc_t<T>(row[c]));
    }
    for (int64_t c = 0; c < width; ++c) {
      S v = acc[c];
      if (op == ReduceOp::mean) v = rows ? v / S(rows) : S(NAN);
      out[c0 + c] = T(acc_t<T>(v));
    }
  }
}
}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, const bool* mask, const Tensor& out) {
  const int rank = x.dim();
  int64_t rows = 1, cols = 1;
  int first_kept = rank, last_reduced = -1;
  for (int d = 0; d < rank; ++d) {
    if (mask[d]) { cols *= x.shape()[d]; last_reduced = d; }
    else { rows *= x.shape()[d]; if (first_kept == rank) first_kept = d; }
  }
  cpu::dispatch_all(x.dtype(), "reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      MOX_FAIL("reduce: bool input must be cast first");
    } else {
      const bool leading = last_reduced < first_kept && x.is_contiguous() &&
                           (op == ReduceOp::sum || op == ReduceOp::mean) && cols > 1;
      if (leading) {
        reduce_leading<T>(op, ptr<T>(x), cols, rows, ptr<T>(out));
        return;
      }
      Shape perm;
      for (int d = 0; d < rank; ++d) if (!mask[d]) perm.push_back(d);
      for (int d = 0; d < rank; ++d) if (mask[d]) perm.push_back(d);
      Tensor src = raw::contiguous(raw::permute(x, perm));
      reduce_rows<T>(op, ptr<T>(src), rows, cols, ptr<T>(out));
    }
  });
}

void CpuBackend::arg_reduce(bool is_max, const Tensor& x, int dim, const Tensor& out) {
  Tensor src = raw::contiguous(x);
  int64_t outer = 1, n = x.dim() ? x.shape()[dim] : 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= x.shape()[d];
  for (int d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  cpu::dispatch_all(x.dtype(), is_max ? "argmax" : "argmin", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xs = ptr<T>(src);
    int64_t* o = ptr<int64_t>(out);
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t i = 0; i < inner; ++i) {
        const T* base = xs + a * n * inner + i;
        int64_t best = 0;
        A bv = A(base[0]);
        for (int64_t j = 1; j < n && bv == bv; ++j) {   // stops at the first NaN (NaN wins)
          A v = A(base[j * inner]);
          if (v != v || (is_max ? v > bv : v < bv)) { bv = v; best = j; }
        }
        o[a * inner + i] = best;
      }
  });
}

void CpuBackend::softmax(const Tensor& x, bool log, const Tensor& out) {
  const int64_t cols = x.shape().back(), rows = x.shape().last_dim_rows();
  cpu::dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xs = ptr<T>(x);
    T* o = ptr<T>(out);
#pragma omp parallel for if (rows * cols >= cpu::kParallelGrain) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = xs + r * cols;
      T* orow = o + r * cols;
      A mx = -std::numeric_limits<A>::infinity();
      for (int64_t c = 0; c < cols; ++c) mx = std::max(mx, A(xr[c]));
      if (mx == -std::numeric_limits<A>::infinity()) mx = 0;   // all -inf: avoid inf - inf
      A sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += std::exp(A(xr[c]) - mx);
      if (log) {
        // (x − max) − log Σ: subtracting max + log Σ in one go would round the shift at
        // the magnitude of the logits (1e3 → 1e-13 error in f64, 1e-4 in f32).
        const A log_sum = std::log(sum);
        for (int64_t c = 0; c < cols; ++c) orow[c] = T((A(xr[c]) - mx) - log_sum);
      } else {
        A inv = A(1) / sum;
        for (int64_t c = 0; c < cols; ++c) orow[c] = T(std::exp(A(xr[c]) - mx) * inv);
      }
    }
  });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& gy, bool log, const Tensor& gx) {
  const int64_t cols = y.shape().back(), rows = y.shape().last_dim_rows();
  cpu::dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T *ys = ptr<T>(y), *gs = ptr<T>(gy);
    T* g = ptr<T>(gx);
#pragma omp parallel for if (rows * cols >= cpu::kParallelGrain) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T *yr = ys + r * cols, *gr = gs + r * cols;
      T* out = g + r * cols;
      A dot = 0;
      if (log) {   // gx = gy - softmax · Σ gy
        for (int64_t c = 0; c < cols; ++c) dot += A(gr[c]);
        for (int64_t c = 0; c < cols; ++c) out[c] = T(A(gr[c]) - std::exp(A(yr[c])) * dot);
      } else {     // gx = y · (gy - Σ gy·y)
        for (int64_t c = 0; c < cols; ++c) dot += A(gr[c]) * A(yr[c]);
        for (int64_t c = 0; c < cols; ++c) out[c] = T(A(yr[c]) * (A(gr[c]) - dot));
      }
    }
  });
}

void CpuBackend::cumsum(const Tensor& x, int dim, const Tensor& out) {
  int64_t outer = 1, n = x.shape()[dim], inner = 1;
  for (int d = 0; d < dim; ++d) outer *= x.shape()[d];
  for (int d = dim + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  cpu::dispatch_all(x.dtype(), "cumsum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      using S = sum_t<T>;
      const T* xs = ptr<T>(x);
      T* o = ptr<T>(out);
      for (int64_t a = 0; a < outer; ++a)
        for (int64_t i = 0; i < inner; ++i) {
          S acc = 0;
          for (int64_t j = 0; j < n; ++j) {
            int64_t k = (a * n + j) * inner + i;
            acc += S(acc_t<T>(xs[k]));
            o[k] = T(acc_t<T>(acc));
          }
        }
    }
  });
}

}  // namespace mox
