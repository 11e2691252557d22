// index.cpp — CPU kernels: gather, scatter_add, index_select, index_add, topk, argsort.
//
// Indices arrive bounds-checked and contiguous (tensor/ops.cpp). Accumulating kernels
// (scatter_add, index_add) run serially over the index so duplicate indices are summed
// in a fixed order — the result is deterministic.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace mox {

using cpu::acc_t;

namespace {
template <typename T> T* ptr(const Tensor& t) { return static_cast<T*>(t.raw_data()); }

// Calls f(flat, coords) for every position of `shape` in row-major order.
template <typename F> void for_each_coord(const Shape& shape, F&& f) {
  const int64_t n = shape.numel();
  int64_t coord[Shape::kMaxRank] = {};
  for (int64_t k = 0; k < n; ++k) {
    f(k, coord);
    for (int d = shape.size() - 1; d >= 0; --d) {
      if (++coord[d] < shape[d]) break;
      coord[d] = 0;
    }
  }
}

int64_t offset_of(const int64_t* coord, const Shape& strides, int dim, int64_t at_dim) {
  int64_t off = 0;
  for (int d = 0; d < strides.size(); ++d) off += (d == dim ? at_dim : coord[d]) * strides[d];
  return off;
}

struct Blocks {   // a contiguous tensor seen as (outer, n, inner) around one dim
  int64_t outer = 1, n = 1, inner = 1;
  Blocks(const Shape& s, int dim) {
    for (int d = 0; d < s.size(); ++d) {
      if (d < dim) outer *= s[d];
      else if (d == dim) n = s[d];
      else inner *= s[d];
    }
  }
};

// Strict weak orders with NaN the largest value and ties broken by the lower index:
// "larger first" (NaN first) and "smaller first" (NaN last). Written out rather than
// negating the values, which breaks for unsigned types and the minimum of signed ones.
template <typename A> bool before_desc(A a, int64_t ia, A b, int64_t ib) {
  const bool na = a != a, nb = b != b;
  if (na != nb) return na;
  if (!na && a != b) return a > b;
  return ia < ib;
}
template <typename A> bool before_asc(A a, int64_t ia, A b, int64_t ib) {
  const bool na = a != a, nb = b != b;
  if (na != nb) return nb;
  if (!na && a != b) return a < b;
  return ia < ib;
}
}  // namespace

void CpuBackend::gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  const int64_t* idx = ptr<int64_t>(index);
  cpu::dispatch_all(x.dtype(), "gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = ptr<T>(x);
    T* o = ptr<T>(out);
    for_each_coord(index.shape(), [&](int64_t k, const int64_t* c) {
      o[k] = xs[offset_of(c, x.strides(), dim, idx[k])];
    });
  });
}

void CpuBackend::scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  const int64_t* idx = ptr<int64_t>(index);
  cpu::dispatch_all(out.dtype(), "scatter_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      T* o = ptr<T>(out);
      const T* s = ptr<T>(src);
      for_each_coord(index.shape(), [&](int64_t k, const int64_t* c) {
        T& dst = o[offset_of(c, out.strides(), dim, idx[k])];
        dst = T(acc_t<T>(dst) + acc_t<T>(s[k]));
      });
    }
  });
}

void CpuBackend::index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) {
  const Blocks b(x.shape(), dim);
  const int64_t* idx = ptr<int64_t>(index);
  const int64_t m = index.numel();
  cpu::dispatch_all(x.dtype(), "index_select", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xs = ptr<T>(x);
    T* o = ptr<T>(out);
#pragma omp parallel for collapse(2) if (b.outer * m * b.inner >= cpu::kParallelGrain) schedule(static)
    for (int64_t a = 0; a < b.outer; ++a)
      for (int64_t i = 0; i < m; ++i) {
        const T* src = xs + (a * b.n + idx[i]) * b.inner;
        std::copy(src, src + b.inner, o + (a * m + i) * b.inner);
      }
  });
}

void CpuBackend::index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) {
  const Blocks b(out.shape(), dim);
  const int64_t* idx = ptr<int64_t>(index);
  const int64_t m = index.numel();
  cpu::dispatch_all(out.dtype(), "index_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      T* o = ptr<T>(out);
      const T* s = ptr<T>(src);
      // Parallel over outer blocks only: within a block, duplicates are summed in order.
#pragma omp parallel for if (b.outer > 1 && b.outer * m * b.inner >= cpu::kParallelGrain) schedule(static)
      for (int64_t a = 0; a < b.outer; ++a)
        for (int64_t i = 0; i < m; ++i) {
          T* dst = o + (a * b.n + idx[i]) * b.inner;
          const T* sp = s + (a * m + i) * b.inner;
          for (int64_t j = 0; j < b.inner; ++j) dst[j] = T(acc_t<T>(dst[j]) + acc_t<T>(sp[j]));
        }
    }
  });
}

void CpuBackend::topk(const Tensor& x, int64_t k, bool largest, const Tensor& values, const Tensor& indices) {
  const int64_t n = x.shape().back(), rows = x.shape().last_dim_rows();
  cpu::dispatch_all(x.dtype(), "topk", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xs = ptr<T>(x);
    T* vs = ptr<T>(values);
    int64_t* is = ptr<int64_t>(indices);
#pragma omp parallel for if (rows * n >= cpu::kParallelGrain) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = xs + r * n;
      std::vector<int64_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      auto cmp = [&](int64_t i, int64_t j) {
        A a = A(row[i]), b = A(row[j]);
        return largest ? before_desc<A>(a, i, b, j) : before_asc<A>(a, i, b, j);
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), cmp);
      for (int64_t j = 0; j < k; ++j) {
        vs[r * k + j] = row[order[size_t(j)]];
        is[r * k + j] = order[size_t(j)];
      }
    }
  });
}

void CpuBackend::argsort(const Tensor& x, bool descending, const Tensor& indices) {
  const int64_t n = x.shape().back(), rows = x.shape().last_dim_rows();
  cpu::dispatch_all(x.dtype(), "argsort", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* xs = ptr<T>(x);
    int64_t* is = ptr<int64_t>(indices);
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = xs + r * n;
      int64_t* out = is + r * n;
      std::iota(out, out + n, 0);
      // The index tie-break makes the order total (NaN included), hence stable.
      std::sort(out, out + n, [&](int64_t i, int64_t j) {
        return descending ? before_desc<A>(A(row[i]), i, A(row[j]), j) : before_asc<A>(A(row[i]), i, A(row[j]), j);
      });
    }
  });
}

}  // namespace mox
