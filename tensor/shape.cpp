// shape.cpp — Shape arithmetic: numel with overflow checks, strides, broadcasting, dims.
#include "tensor/shape.h"

namespace mox {

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < n_; ++i) {
    MOX_CHECK(d_[i] >= 0, "negative extent ", d_[i], " in shape ", *this);
    MOX_CHECK(!__builtin_mul_overflow(n, d_[i], &n), "shape ", *this,
              " has more elements than fit in int64");
  }
  return n;
}

std::ostream& operator<<(std::ostream& os, const Shape& s) {
  os << '[';
  for (int i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  return os << ']';
}

Shape contiguous_strides(const Shape& shape) {
  Shape st;
  st.resize(shape.size());
  int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= shape[i] > 0 ? shape[i] : 1;
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  int n = a.size() > b.size() ? a.size() : b.size();
  Shape out;
  out.resize(n);
  for (int i = 0; i < n; ++i) {
    int ia = i - (n - a.size()), ib = i - (n - b.size());
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    MOX_CHECK(da == db || da == 1 || db == 1, "shapes ", a, " and ", b,
              " cannot be broadcast together (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int wrap_dim(int64_t dim, int rank) {
  int r = rank == 0 ? 1 : rank;   // a 0-d tensor accepts dim 0 / -1
  MOX_CHECK(dim >= -r && dim < r, "dim ", dim, " is out of range for a tensor of rank ", rank,
            " (expected ", -r, " ≤ dim < ", r, ")");
  return int(dim < 0 ? dim + r : dim);
}

int wrap_dim(int64_t dim, const Shape& shape) {
  const int r = shape.empty() ? 1 : shape.size();
  MOX_CHECK(dim >= -r && dim < r, "dim ", dim, " is out of range for a tensor of shape ", shape,
            " (rank ", shape.size(), ", expected ", -r, " ≤ dim < ", r, ")");
  return int(dim < 0 ? dim + r : dim);
}

}  // namespace mox
