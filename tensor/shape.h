// shape.h — Shape: a small inline vector of int64 extents/strides (rank ≤ 8, no heap).
//
// Shapes and strides are built for every op, so they live inline in the Tensor handle
// rather than in a std::vector. Printing gives "[2, 3, 4]" — the form every shape error
// message in mox uses.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <vector>

#include "tensor/error.h"

namespace mox {

class Shape {
 public:
  static constexpr int kMaxRank = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { for (int64_t d : dims) push_back(d); }
  explicit Shape(const std::vector<int64_t>& dims) { for (int64_t d : dims) push_back(d); }
  template <typename It> Shape(It first, It last) { for (; first != last; ++first) push_back(*first); }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t back() const { return d_[n_ - 1]; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }

  void push_back(int64_t v) {
    MOX_CHECK(n_ < kMaxRank, "mox tensors have at most ", kMaxRank, " dimensions");
    d_[n_++] = v;
  }
  void insert(int pos, int64_t v) {
    MOX_CHECK(n_ < kMaxRank, "mox tensors have at most ", kMaxRank, " dimensions");
    for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
    ++n_;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
    --n_;
  }
  void resize(int n, int64_t fill = 0) {
    MOX_CHECK(n <= kMaxRank, "mox tensors have at most ", kMaxRank, " dimensions");
    for (int i = n_; i < n; ++i) d_[i] = fill;
    n_ = n;
  }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }

  // Product of extents; checks for int64 overflow (a hostile file may declare huge shapes).
  int64_t numel() const;
  // Rows of the matrix view [numel / last, last] that row-wise kernels (softmax, norms,
  // top-k) walk; 0 when the last extent is 0 (such rows hold nothing to compute) or rank 0.
  int64_t last_dim_rows() const { return n_ && d_[n_ - 1] ? numel() / d_[n_ - 1] : 0; }

  bool operator==(const Shape& o) const {
    if (n_ != o.n_) return false;
    for (int i = 0; i < n_; ++i) if (d_[i] != o.d_[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  int64_t d_[kMaxRank] = {};
  int n_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Shape& s);

// Row-major strides of a contiguous tensor of this shape.
Shape contiguous_strides(const Shape& shape);
// NumPy broadcast of two shapes; throws naming both when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);
// Normalise a possibly negative dim against rank; throws naming dim and rank.
int wrap_dim(int64_t dim, int rank);
// Same against a tensor's shape; the error names the shape too.
int wrap_dim(int64_t dim, const Shape& shape);

}  // namespace mox
