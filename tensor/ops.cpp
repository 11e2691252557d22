// ops.cpp — front-ends of the raw ops: validate once, allocate outputs, dispatch.
//
// Error messages name the op and describe every offending tensor as "[shape] dtype", so a
// user can find the line in their model. Kernels behind `backend(...)` check nothing.
#include "tensor/ops.h"

#include <algorithm>
#include <cmath>

namespace mox::raw {

namespace {

Backend& be(const Tensor& t) { return backend(t.device()); }

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  MOX_CHECK(a.device() == b.device(), op, ": tensors are on different devices (", a.device(),
            " and ", b.device(), "); move one with .to(device)");
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  MOX_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ (", describe(a), " and ", describe(b),
            "); mox does not promote implicitly, cast one with .to(dtype)");
}

void check_floating(const char* op, const Tensor& t) {
  MOX_CHECK(is_floating(t.dtype()), op, " needs a floating-point tensor, got ", describe(t));
}

Tensor make_view(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = t.dtype();
  return Tensor(std::move(impl));
}

// Strides for viewing `t` as `shape` without copying, or false (PyTorch's computeStride).
bool view_strides(const Tensor& t, const Shape& shape, Shape& out) {
  const Shape& old_shape = t.shape();
  const Shape& old_strides = t.strides();
  out.resize(shape.size());
  if (old_shape.empty()) {
    for (int i = 0; i < shape.size(); ++i) out[i] = 1;
    return true;
  }
  if (t.numel() == 0) { out = contiguous_strides(shape); return true; }
  int view_d = shape.size() - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = old_shape.size() - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

// Bounds check of an index tensor against an extent; names the op, value and position.
void check_index(const char* op, const Tensor& index, int64_t extent, int dim) {
  MOX_CHECK(index.dtype() == DType::i64, op, ": index must be i64, got ", describe(index));
  std::vector<int64_t> v = index.to_vector<int64_t>();
  for (size_t i = 0; i < v.size(); ++i)
    MOX_CHECK(v[i] >= 0 && v[i] < extent, op, ": index ", v[i], " at position ", i,
              " is out of range for dim ", dim, " of size ", extent);
}

}  // namespace

// ------------------------------------------------------------------------------- views

Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  MOX_CHECK(shape.size() == strides.size(), "as_strided: shape ", shape, " and strides ",
            strides, " differ in rank");
  return make_view(t, shape, strides, offset);
}

Shape infer_shape(const Shape& shape, int64_t numel) {
  Shape out = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MOX_CHECK(infer < 0, "shape ", shape, " has more than one -1");
      infer = i;
    } else {
      MOX_CHECK(shape[i] >= 0, "shape ", shape, " has a negative extent");
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    MOX_CHECK(known > 0 && numel % known == 0, "cannot infer the -1 in shape ", shape, " for ",
              numel, " elements");
    out[infer] = numel / known;
  }
  MOX_CHECK(out.numel() == numel, "shape ", shape, " is invalid for ", numel, " elements");
  return out;
}

// infer_shape, with the source shape named in the error.
static Shape target_shape(const char* op, const Tensor& t, const Shape& shape) {
  try {
    return infer_shape(shape, t.numel());
  } catch (const Error& e) {
    MOX_FAIL(op, ": cannot turn a tensor of shape ", t.shape(), " into ", shape, ": ", e.what());
  }
}

Tensor view(const Tensor& t, const Shape& shape) {
  Shape target = target_shape("view", t, shape);
  Shape strides;
  MOX_CHECK(view_strides(t, target, strides), "view: a tensor of shape ", t.shape(),
            " with strides ", t.strides(), " cannot be viewed as ", target,
            " without a copy; use reshape() or contiguous() first");
  return make_view(t, target, strides, t.offset());
}

Tensor reshape(const Tensor& t, const Shape& shape) {
  Shape target = target_shape("reshape", t, shape);
  Shape strides;
  if (view_strides(t, target, strides)) return make_view(t, target, strides, t.offset());
  return view(contiguous(t), target);
}

Tensor transpose(const Tensor& t, int64_t d0, int64_t d1) {
  int a = wrap_dim(d0, t.shape()), b = wrap_dim(d1, t.shape());
  // Always a new handle (even for 0-d): autograd records a node on the result, which must
  // never be the input itself.
  if (t.dim() == 0) return make_view(t, t.shape(), t.strides(), t.offset());
  Shape sh = t.shape(), st = t.strides();
  std::swap(sh[a], sh[b]);
  std::swap(st[a], st[b]);
  return make_view(t, sh, st, t.offset());
}

Tensor permute(const Tensor& t, const Shape& dims) {
  MOX_CHECK(dims.size() == t.dim(), "permute: dims ", dims, " do not match rank ", t.dim(),
            " of shape ", t.shape());
  Shape sh, st;
  bool seen[Shape::kMaxRank] = {};
  for (int i = 0; i < dims.size(); ++i) {
    int d = wrap_dim(dims[i], t.shape());
    MOX_CHECK(!seen[d], "permute: dim ", dims[i], " repeated in ", dims);
    seen[d] = true;
    sh.push_back(t.shape()[d]);
    st.push_back(t.strides()[d]);
  }
  return make_view(t, sh, st, t.offset());
}

Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length) {
  int d = wrap_dim(dim, t.shape());
  MOX_CHECK(t.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  MOX_CHECK(start >= 0 && length >= 0 && start + length <= t.shape()[d], "narrow: range [", start,
            ", ", start + length, ") is outside dim ", d, " of shape ", t.shape());
  Shape sh = t.shape();
  sh[d] = length;
  return make_view(t, sh, t.strides(), t.offset() + start * t.strides()[d]);
}

Tensor select(const Tensor& t, int64_t dim, int64_t index) {
  int d = wrap_dim(dim, t.shape());
  int64_t n = t.shape()[d];
  MOX_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d,
            " of shape ", t.shape());
  if (index < 0) index += n;
  Shape sh = t.shape(), st = t.strides();
  sh.erase(d);
  st.erase(d);
  return make_view(t, sh, st, t.offset() + index * t.strides()[d]);
}

Tensor expand(const Tensor& t, const Shape& shape) {
  MOX_CHECK(shape.size() >= t.dim(), "expand: cannot expand shape ", t.shape(), " to ", shape,
            " (fewer dims)");
  int lead = shape.size() - t.dim();
  Shape st;
  st.resize(shape.size());
  Shape out = shape;
  for (int i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      MOX_CHECK(shape[i] >= 0, "expand: cannot expand shape ", t.shape(), " to ", shape);
      st[i] = 0;
      continue;
    }
    int64_t src = t.shape()[i - lead];
    if (shape[i] == -1) out[i] = src;
    MOX_CHECK(src == out[i] || src == 1, "expand: cannot expand shape ", t.shape(), " to ", shape,
              " (dim ", i, ": ", src, " vs ", out[i], ")");
    st[i] = src == out[i] ? t.strides()[i - lead] : 0;
  }
  return make_view(t, out, st, t.offset());
}

Tensor squeeze(const Tensor& t, int64_t dim) {
  int d = wrap_dim(dim, t.shape());
  // A new handle even when nothing is squeezed (see transpose).
  if (t.dim() == 0 || t.shape()[d] != 1) return make_view(t, t.shape(), t.strides(), t.offset());
  Shape sh = t.shape(), st = t.strides();
  sh.erase(d);
  st.erase(d);
  return make_view(t, sh, st, t.offset());
}

Tensor unsqueeze(const Tensor& t, int64_t dim) {
  int d = wrap_dim(dim, t.dim() + 1);
  Shape sh = t.shape(), st = t.strides();
  int64_t stride = d < t.dim() ? t.strides()[d] * t.shape()[d] : 1;
  sh.insert(d, 1);
  st.insert(d, stride);
  return make_view(t, sh, st, t.offset());
}

// ---------------------------------------------------------------------- copies, casts

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  return clone(t);
}

Tensor clone(const Tensor& t) {
  Tensor out = empty(t.shape(), t.dtype(), t.device());
  be(t).copy(t, out);
  return out;
}

Tensor to_dtype(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = empty(t.shape(), dtype, t.device());
  be(t).copy(t, out);
  return out;
}

Tensor to_device(const Tensor& t, Device device) {
  if (t.device() == device) return t;
  Tensor src = contiguous(t);
  Tensor out = empty(t.shape(), t.dtype(), device);
  if (device.is_cpu()) {
    be(src).copy_to_host(out.raw_data(), src.raw_data(), src.nbytes());
  } else {
    MOX_CHECK(src.device().is_cpu(), "to_device: copies between two accelerators (", src.device(),
              " → ", device, ") go through the host; call .to(cpu) first");
    backend(device).copy_from_host(out.raw_data(), src.raw_data(), src.nbytes());
  }
  return out;
}

void copy_(const Tensor& dst, const Tensor& src) {
  check_same_device("copy_", dst, src);
  be(dst).copy(expand(src, dst.shape()), dst);
}

void fill_(const Tensor& dst, double value) { be(dst).fill(dst, value); }

// ------------------------------------------------------------------------ elementwise

Tensor unary(UnaryOp op, const Tensor& x) {
  if (op != UnaryOp::neg && op != UnaryOp::abs && op != UnaryOp::relu && op != UnaryOp::square)
    check_floating(unary_name(op), x);
  MOX_CHECK(x.dtype() != DType::boolean, unary_name(op), " is not defined on bool tensors (",
            describe(x), ")");
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  be(x).unary(op, x, out);
  return out;
}

Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy) {
  MOX_CHECK(gy.shape() == x.shape(), unary_name(op), " backward: gradient ", describe(gy),
            " does not match input ", describe(x));
  Tensor gx = empty(x.shape(), x.dtype(), x.device());
  be(x).unary_backward(op, x, y, gy, gx);
  return gx;
}

namespace {
// Integer division by zero would raise SIGFPE: refuse it like any other bad input.
void check_int_divisor(const Tensor& divisor) {
  if (is_floating(divisor.dtype())) return;
  Tensor zero = binary_scalar(BinaryOp::eq, divisor, 0.0);
  MOX_CHECK(reduce(ReduceOp::sum, zero, {}, false).item<int64_t>() == 0,
            "div: integer division by zero (divisor ", describe(divisor), " contains 0)");
}
}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_same_device(binary_name(op), a, b);
  check_same_dtype(binary_name(op), a, b);
  MOX_CHECK(a.dtype() != DType::boolean || is_comparison(op), binary_name(op),
            " is not defined on bool tensors (", describe(a), ")");
  if (op == BinaryOp::div) check_int_divisor(b);
  Shape shape = a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape());
  Tensor out = empty(shape, is_comparison(op) ? DType::boolean : a.dtype(), a.device());
  be(a).binary(op, a.shape() == shape ? a : expand(a, shape), b.shape() == shape ? b : expand(b, shape), out);
  return out;
}

Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, bool reversed) {
  if (!is_comparison(op) && !is_floating(a.dtype())) {
    MOX_CHECK(a.dtype() != DType::boolean, binary_name(op), " is not defined on bool tensors (",
              describe(a), ")");
    // Integer kernels compute with the scalar cast to the dtype: it must be an integer
    // (and, except for the wrapping add/sub/mul, one the dtype holds), never truncated.
    const double lo = a.dtype() == DType::u8 ? 0.0 : a.dtype() == DType::i32 ? -0x1p31 : -0x1p63;
    const double hi = a.dtype() == DType::u8 ? 255.0 : a.dtype() == DType::i32 ? 0x1p31 - 1 : 0x1p63 - 1024;
    const bool wraps = op == BinaryOp::add || op == BinaryOp::sub || op == BinaryOp::mul;
    MOX_CHECK(std::trunc(s) == s && (wraps ? std::abs(s) < 0x1p63 : s >= lo && s <= hi), binary_name(op),
              ": scalar ", s, " is not a value of the integer tensor's dtype (", describe(a),
              "); cast the tensor with .to(f32) first");
    if (op == BinaryOp::div) {
      if (reversed) check_int_divisor(a);
      else MOX_CHECK(s != 0, "div: integer division by zero (", describe(a), " / 0)");
    }
  }
  Tensor out = empty(a.shape(), is_comparison(op) ? DType::boolean : a.dtype(), a.device());
  be(a).binary_scalar(op, a, s, reversed, out);
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  MOX_CHECK(cond.dtype() == DType::boolean, "where: condition must be bool, got ", describe(cond));
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  check_same_dtype("where", a, b);
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape()), b.shape());
  Tensor out = empty(shape, a.dtype(), a.device());
  be(a).where(expand(cond, shape), expand(a, shape), expand(b, shape), out);
  return out;
}

void add_(const Tensor& y, const Tensor& x, double alpha) {
  check_same_device("add_", y, x);
  check_same_dtype("add_", y, x);
  if (x.shape() == y.shape() && x.is_contiguous() && y.is_contiguous()) {
    be(y).axpy(alpha, x, y);
    return;
  }
  Tensor scaled = alpha == 1.0 ? x : binary_scalar(BinaryOp::mul, x, alpha);
  copy_(y, binary(BinaryOp::add, y, expand(scaled, y.shape())));
}

void mul_(const Tensor& y, double s) {
  if (y.is_contiguous()) {
    be(y).binary_scalar(BinaryOp::mul, y, s, false, y);
    return;
  }
  copy_(y, binary_scalar(BinaryOp::mul, y, s));
}

// ------------------------------------------------------------------------- reductions

Tensor reduce(ReduceOp op, const Tensor& x, const Shape& dims, bool keepdim) {
  static const char* names[] = {"sum", "mean", "max", "min", "prod"};
  const char* name = names[int(op)];
  if (op == ReduceOp::mean) check_floating(name, x);
  MOX_CHECK(x.dtype() != DType::boolean || op == ReduceOp::sum, name,
            " is not defined on bool tensors");
  if ((op == ReduceOp::max || op == ReduceOp::min) && x.numel() == 0)
    MOX_FAIL(name, ": cannot reduce an empty tensor of shape ", x.shape());
  // Integer sums and products accumulate in i64 (as NumPy and PyTorch do).
  Tensor src = x;
  if ((op == ReduceOp::sum || op == ReduceOp::prod) && !is_floating(x.dtype()))
    src = to_dtype(x, DType::i64);
  bool mask[Shape::kMaxRank] = {};
  if (dims.empty()) {
    for (int i = 0; i < x.dim(); ++i) mask[i] = true;
  } else {
    for (int64_t d : dims) {
      int w = wrap_dim(d, x.shape());
      MOX_CHECK(!mask[w] || x.dim() == 0, name, ": dim ", d, " repeated in ", dims);
      mask[w] = true;
    }
  }
  Shape kept = x.shape();
  for (int i = 0; i < x.dim(); ++i) if (mask[i]) kept[i] = 1;
  Tensor out = empty(kept, src.dtype(), x.device());
  be(x).reduce(op, src, mask, out);
  if (keepdim) return out;
  Shape squeezed;
  for (int i = 0; i < x.dim(); ++i) if (!mask[i]) squeezed.push_back(x.shape()[i]);
  return view(out, squeezed);
}

static Tensor arg_reduce(bool is_max, const Tensor& x, int64_t dim, bool keepdim) {
  int d = wrap_dim(dim, x.shape());
  MOX_CHECK(x.dim() == 0 || x.shape()[d] > 0, is_max ? "argmax" : "argmin",
            ": dim ", d, " of shape ", x.shape(), " is empty");
  Shape kept = x.shape();
  if (x.dim() > 0) kept[d] = 1;
  Tensor out = empty(kept, DType::i64, x.device());
  be(x).arg_reduce(is_max, x, d, out);
  return keepdim || x.dim() == 0 ? out : squeeze(out, d);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) { return arg_reduce(true, x, dim, keepdim); }
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) { return arg_reduce(false, x, dim, keepdim); }

Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  check_floating(log ? "log_softmax" : "softmax", x);
  int d = wrap_dim(dim, x.shape());
  if (x.dim() == 0) return view(softmax(view(x, {1}), 0, log), {});
  if (d != x.dim() - 1) return contiguous(transpose(softmax(transpose(x, d, -1), -1, log), d, -1));
  Tensor src = contiguous(x);
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  be(x).softmax(src, log, out);
  return out;
}

Tensor softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log) {
  int d = wrap_dim(dim, y.shape());
  if (y.dim() == 0) return view(softmax_backward(view(y, {1}), view(contiguous(gy), {1}), 0, log), {});
  if (d != y.dim() - 1)
    return contiguous(transpose(softmax_backward(transpose(y, d, -1), transpose(gy, d, -1), -1, log), d, -1));
  Tensor gx = empty(y.shape(), y.dtype(), y.device());
  be(y).softmax_backward(contiguous(y), contiguous(gy), log, gx);
  return gx;
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  int d = wrap_dim(dim, x.shape());
  Tensor src = is_floating(x.dtype()) ? contiguous(x) : contiguous(to_dtype(x, DType::i64));
  Tensor out = empty(x.shape(), src.dtype(), x.device());
  if (x.dim() == 0) { copy_(out, src); return out; }
  be(x).cumsum(src, d, out);
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  int lead = g.dim() - shape.size();
  MOX_CHECK(lead >= 0, "sum_to: gradient ", g.shape(), " has fewer dims than ", shape);
  Shape dims;
  for (int i = 0; i < g.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)) dims.push_back(i);
  Tensor r = dims.empty() ? g : reduce(ReduceOp::sum, g, dims, true);
  return reshape(r, shape);
}

// ---------------------------------------------------------------------- linear algebra

namespace {
// A view usable by bmm: one of the last two dims has unit stride.
Tensor gemm_ready(const Tensor& t) {
  const Shape& st = t.strides();
  const Shape& sh = t.shape();
  int n = t.dim();
  // BLAS needs one unit stride and a leading dimension at least the other extent.
  bool row_major = (st[n - 1] == 1 || sh[n - 1] == 1) && (sh[n - 2] == 1 || st[n - 2] >= sh[n - 1]);
  bool col_major = (st[n - 2] == 1 || sh[n - 2] == 1) && (sh[n - 1] == 1 || st[n - 1] >= sh[n - 2]);
  return row_major || col_major ? t : contiguous(t);
}
}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_same_device("matmul", a, b);
  check_same_dtype("matmul", a, b);
  check_floating("matmul", a);
  MOX_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must have at least 1 dim, got ",
            describe(a), " and ", describe(b));
  const int64_t Ka = a.size(-1), Kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  MOX_CHECK(Ka == Kb, "matmul: shapes ", a.shape(), " and ", b.shape(), " are not aligned (", Ka,
            " vs ", Kb, ")");
  // (K)@(K) gives a 0-d result: the (1) left after the b-vector case is squeezed too.
  if (a.dim() == 1) return squeeze(matmul(unsqueeze(a, 0), b), b.dim() == 1 ? -1 : -2);
  if (b.dim() == 1) return squeeze(matmul(a, unsqueeze(b, 1)), -1);
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  MOX_CHECK(b.size(-2) == K, "matmul: shapes ", a.shape(), " and ", b.shape(),
            " are not aligned (", K, " vs ", b.size(-2), ")");
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b);
  int64_t B = batch.numel();
  Shape sa = batch, sb = batch, so = batch;
  sa.push_back(M); sa.push_back(K);
  sb.push_back(K); sb.push_back(N);
  so.push_back(M); so.push_back(N);
  Tensor a3 = gemm_ready(reshape(expand(a, sa), {B, M, K}));
  Tensor b3 = gemm_ready(reshape(expand(b, sb), {B, K, N}));
  Tensor out = empty({B, M, N}, a.dtype(), a.device());
  be(a).bmm(a3, b3, out, false);
  return view(out, so);
}

// ------------------------------------------------------------ convolution and pooling

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p) {
  check_same_device("conv2d", x, w);
  check_same_dtype("conv2d", x, w);
  check_floating("conv2d", x);
  MOX_CHECK(x.dim() == 4 && w.dim() == 4, "conv2d: expected input (N,C,H,W) and weight (O,C,KH,KW), got ",
            describe(x), " and ", describe(w));
  MOX_CHECK(x.size(1) == w.size(1), "conv2d: input ", x.shape(), " has ", x.size(1),
            " channels but weight ", w.shape(), " expects ", w.size(1));
  MOX_CHECK(p.stride_h > 0 && p.stride_w > 0 && p.pad_h >= 0 && p.pad_w >= 0,
            "conv2d: stride must be positive and padding non-negative");
  if (bias) {
    check_same_dtype("conv2d", x, *bias);
    MOX_CHECK(bias->dim() == 1 && bias->size(0) == w.size(0), "conv2d: bias ", describe(*bias),
              " must have shape [", w.size(0), "] for weight ", w.shape());
  }
  int64_t OH = (x.size(2) + 2 * p.pad_h - w.size(2)) / p.stride_h + 1;
  int64_t OW = (x.size(3) + 2 * p.pad_w - w.size(3)) / p.stride_w + 1;
  MOX_CHECK(x.size(2) + 2 * p.pad_h >= w.size(2) && x.size(3) + 2 * p.pad_w >= w.size(3),
            "conv2d: kernel ", w.shape(), " is larger than the padded input ", x.shape());
  Tensor out = empty({x.size(0), w.size(0), OH, OW}, x.dtype(), x.device());
  Tensor bc = bias ? contiguous(*bias) : Tensor();
  be(x).conv2d(contiguous(x), contiguous(w), bias ? &bc : nullptr, p, out);
  return out;
}

std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dParams& p) {
  check_floating("max_pool2d", x);
  MOX_CHECK(x.dim() == 4, "max_pool2d: expected input (N,C,H,W), got ", describe(x));
  MOX_CHECK(p.kernel_h > 0 && p.kernel_w > 0 && p.stride_h > 0 && p.stride_w > 0,
            "max_pool2d: kernel and stride must be positive");
  MOX_CHECK(p.pad_h >= 0 && p.pad_w >= 0 && p.pad_h * 2 <= p.kernel_h && p.pad_w * 2 <= p.kernel_w,
            "max_pool2d: padding must be non-negative and at most half the kernel size");
  // Checked before dividing: C++ division truncates toward zero, so a kernel larger than
  // the padded input would otherwise give one output row instead of none.
  MOX_CHECK(x.size(2) + 2 * p.pad_h >= p.kernel_h && x.size(3) + 2 * p.pad_w >= p.kernel_w,
            "max_pool2d: kernel ", p.kernel_h, "x", p.kernel_w, " is larger than the padded input ",
            x.shape());
  int64_t OH = (x.size(2) + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1;
  int64_t OW = (x.size(3) + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
  MOX_CHECK(OH > 0 && OW > 0, "max_pool2d: kernel ", p.kernel_h, "x", p.kernel_w,
            " is larger than the input ", x.shape());
  Tensor out = empty({x.size(0), x.size(1), OH, OW}, x.dtype(), x.device());
  Tensor idx = empty(out.shape(), DType::i64, x.device());
  be(x).max_pool2d(contiguous(x), p, out, idx);
  return {out, idx};
}

// --------------------------------------------------------------------------- indexing

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_same_device("gather", x, index);
  int d = wrap_dim(dim, x.shape());
  MOX_CHECK(index.dim() == x.dim(), "gather: index ", describe(index), " must have the rank of input ",
            describe(x));
  for (int i = 0; i < x.dim(); ++i)
    MOX_CHECK(i == d || index.size(i) <= x.size(i), "gather: index ", index.shape(),
              " is larger than input ", x.shape(), " at dim ", i);
  check_index("gather", index, x.dim() ? x.size(d) : 1, d);
  Tensor out = empty(index.shape(), x.dtype(), x.device());
  be(x).gather(x, d, contiguous(index), out);
  return out;
}

void scatter_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  check_same_device("scatter_add", out, index);
  check_same_dtype("scatter_add", out, src);
  int d = wrap_dim(dim, out.shape());
  MOX_CHECK(index.shape() == src.shape(), "scatter_add: index ", describe(index),
            " and src ", describe(src), " must have the same shape");
  MOX_CHECK(index.dim() == out.dim(), "scatter_add: index ", describe(index),
            " must have the rank of output ", describe(out));
  for (int i = 0; i < out.dim(); ++i)
    MOX_CHECK(i == d || index.size(i) <= out.size(i), "scatter_add: index ", index.shape(),
              " is larger than output ", out.shape(), " at dim ", i);
  MOX_CHECK(out.is_contiguous(), "scatter_add: output must be contiguous");
  check_index("scatter_add", index, out.dim() ? out.size(d) : 1, d);
  be(out).scatter_add(out, d, contiguous(index), contiguous(src));
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_same_device("index_select", x, index);
  int d = wrap_dim(dim, x.shape());
  MOX_CHECK(index.dim() == 1, "index_select: index must be 1-D, got ", describe(index));
  MOX_CHECK(x.dim() > 0, "index_select: input must have at least one dim");
  check_index("index_select", index, x.size(d), d);
  Shape sh = x.shape();
  sh[d] = index.size(0);
  Tensor out = empty(sh, x.dtype(), x.device());
  be(x).index_select(contiguous(x), d, contiguous(index), out);
  return out;
}

void index_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  check_same_device("index_add", out, index);
  check_same_dtype("index_add", out, src);
  int d = wrap_dim(dim, out.shape());
  MOX_CHECK(index.dim() == 1, "index_add: index must be 1-D, got ", describe(index));
  Shape expect = out.shape();
  expect[d] = index.size(0);
  MOX_CHECK(src.shape() == expect, "index_add: src ", describe(src), " must have shape ", expect,
            " for output ", describe(out), " and ", index.size(0), " indices");
  MOX_CHECK(out.is_contiguous(), "index_add: output must be contiguous");
  check_index("index_add", index, out.size(d), d);
  be(out).index_add(out, d, contiguous(index), contiguous(src));
}

std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  int d = wrap_dim(dim, x.shape());
  MOX_CHECK(x.dim() > 0, "topk: input must have at least one dim");
  MOX_CHECK(k >= 0 && k <= x.size(d), "topk: k=", k, " is out of range for dim ", d,
            " of shape ", x.shape());
  MOX_CHECK(x.dtype() != DType::boolean, "topk is not defined on bool tensors");
  if (d != x.dim() - 1) {
    auto [v, i] = topk(transpose(x, d, -1), k, -1, largest);
    return {contiguous(transpose(v, d, -1)), contiguous(transpose(i, d, -1))};
  }
  Shape sh = x.shape();
  sh[d] = k;
  Tensor values = empty(sh, x.dtype(), x.device());
  Tensor indices = empty(sh, DType::i64, x.device());
  be(x).topk(contiguous(x), k, largest, values, indices);
  return {values, indices};
}

Tensor argsort(const Tensor& x, int64_t dim, bool descending) {
  int d = wrap_dim(dim, x.shape());
  MOX_CHECK(x.dim() > 0, "argsort: input must have at least one dim");
  if (d != x.dim() - 1) return contiguous(transpose(argsort(transpose(x, d, -1), -1, descending), d, -1));
  Tensor indices = empty(x.shape(), DType::i64, x.device());
  be(x).argsort(contiguous(x), descending, indices);
  return indices;
}

// ----------------------------------------------------------------------------- random

void uniform_(const Tensor& out, double low, double high, Generator* gen) {
  check_floating("uniform", out);
  MOX_CHECK(low <= high, "uniform: low ", low, " must not exceed high ", high);
  MOX_CHECK(out.is_contiguous(), "uniform_: output must be contiguous");
  Generator& g = gen ? *gen : default_generator();
  be(out).uniform(out, low, high, g.seed(), g.advance(uint64_t(out.numel())));
}

void normal_(const Tensor& out, double mean, double std, Generator* gen) {
  check_floating("normal", out);
  MOX_CHECK(std >= 0, "normal: std ", std, " must be non-negative");
  MOX_CHECK(out.is_contiguous(), "normal_: output must be contiguous");
  Generator& g = gen ? *gen : default_generator();
  be(out).normal(out, mean, std, g.seed(), g.advance(uint64_t(out.numel())));
}

Tensor uniform(const Shape& shape, double low, double high, DType dtype, Device device, Generator* gen) {
  Tensor t = empty(shape, dtype, device);
  uniform_(t, low, high, gen);
  return t;
}

Tensor normal(const Shape& shape, double mean, double std, DType dtype, Device device, Generator* gen) {
  Tensor t = empty(shape, dtype, device);
  normal_(t, mean, std, gen);
  return t;
}

Tensor gumbel(const Shape& shape, DType dtype, Device device, Generator* gen) {
  // U in (0, 1) drawn in f64 so that neither log ever sees 0 or 1.
  Tensor u = uniform(shape, 0x1p-60, 1.0 - 0x1p-53, DType::f64, device, gen);
  Tensor g = unary(UnaryOp::neg, unary(UnaryOp::log, unary(UnaryOp::neg, unary(UnaryOp::log, u))));
  return to_dtype(g, dtype);
}

Tensor randperm(int64_t n, Device device, Generator* gen) {
  MOX_CHECK(n >= 0, "randperm: n=", n, " must be non-negative");
  Generator& g = gen ? *gen : default_generator();
  return from_vector<int64_t>(g.permutation(n), {n}, device);
}

bool all_finite(const Tensor& x) {
  if (!is_floating(x.dtype()) || x.numel() == 0) return true;
  // x·0 is 0 for finite x and NaN for ±inf/NaN, so the sum is finite iff all are.
  double s = reduce(ReduceOp::sum, binary_scalar(BinaryOp::mul, x, 0.0), {}, false)
                 .item<double>();
  return std::isfinite(s);
}

}  // namespace mox::raw
