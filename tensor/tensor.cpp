// tensor.cpp — Storage, Tensor accessors, factories and printing.
#include "tensor/tensor.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "tensor/backend.h"
#include "tensor/ops.h"

namespace mox {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
    case DType::boolean: return "bool";
  }
  return "?";
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos)
    return cuda(std::stoi(text.substr(5)));
  MOX_FAIL("unknown device '", text, "' (expected cpu, cuda or cuda:N)");
}

Storage::Storage(size_t n, Device d) : nbytes(n), device(d) {
  data = backend(d).allocate(n);
}
Storage::~Storage() { backend(device).deallocate(data, nbytes); }

// wrap_dim lets a 0-d tensor name dim 0 (for reductions), but it has no extent to report.
int64_t Tensor::size(int64_t d) const {
  MOX_CHECK(dim() > 0, "size(", d, ") of a 0-d tensor: it has no dimensions");
  return shape()[wrap_dim(d, dim())];
}
int64_t Tensor::stride(int64_t d) const {
  MOX_CHECK(dim() > 0, "stride(", d, ") of a 0-d tensor: it has no dimensions");
  return strides()[wrap_dim(d, dim())];
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;   // no element to misplace (PyTorch's rule too): (4, 0) has strides (1, 1)
  int64_t expected = 1;
  const Shape& sh = shape();
  const Shape& st = strides();
  for (int i = sh.size() - 1; i >= 0; --i) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

template <typename T> T Tensor::item() const {
  MOX_CHECK(numel() == 1, "item() needs a tensor with one element, got shape ", shape());
  return to_vector<T>()[0];
}

template <typename T> std::vector<T> Tensor::to_vector() const {
  Tensor host = raw::contiguous(raw::to_dtype(raw::to_device(*this, Device::cpu()), dtype_of<T>::value));
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}

#define MOX_INSTANTIATE_READ(T)                       \
  template T Tensor::item<T>() const;                 \
  template std::vector<T> Tensor::to_vector<T>() const;
MOX_INSTANTIATE_READ(float)
MOX_INSTANTIATE_READ(double)
MOX_INSTANTIATE_READ(half)
MOX_INSTANTIATE_READ(bfloat16)
MOX_INSTANTIATE_READ(int32_t)
MOX_INSTANTIATE_READ(int64_t)
MOX_INSTANTIATE_READ(uint8_t)
#undef MOX_INSTANTIATE_READ
// std::vector<bool> is bit-packed, so bool reads go through uint8_t.
template <> std::vector<bool> Tensor::to_vector<bool>() const {
  std::vector<uint8_t> v = raw::to_dtype(*this, DType::u8).to_vector<uint8_t>();
  return std::vector<bool>(v.begin(), v.end());
}
template <> bool Tensor::item<bool>() const {
  MOX_CHECK(numel() == 1, "item() needs a tensor with one element, got shape ", shape());
  return to_vector<bool>()[0];
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return str(t.shape(), " ", dtype_name(t.dtype()));
}

namespace {
void print_values(std::ostringstream& os, const std::vector<double>& v, const Shape& shape,
                  int dim, int64_t base, int64_t stride_prod, bool is_float, int indent) {
  const int64_t n = shape[dim];
  const int64_t inner = stride_prod / n;
  const int64_t edge = 3;   // elements shown at each end of a long dim
  const bool summarise = n > 2 * edge + 1 && v.size() > 1000;
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (summarise && i == edge) {
      os << (dim + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - edge;
    }
    if (dim + 1 == shape.size()) {
      char buf[32];
      double x = v[size_t(base + i)];
      if (is_float) std::snprintf(buf, sizeof buf, "%.4g", x);
      else std::snprintf(buf, sizeof buf, "%lld", (long long)x);
      os << buf;
    } else {
      print_values(os, v, shape, dim + 1, base + i * inner, inner, is_float, indent + 1);
    }
    if (i + 1 < n) os << (dim + 1 == shape.size() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << ']';
}
}  // namespace

std::string to_string(const Tensor& t) {
  if (!t.defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << t.shape() << ", dtype=" << t.dtype() << ", device=" << t.device();
  if (t.requires_grad()) os << ", requires_grad";
  os << ")\n";
  std::vector<double> v = t.to_vector<double>();
  if (t.dim() == 0) {
    os << v[0];
  } else if (t.numel() == 0) {
    os << "[]";
  } else {
    print_values(os, v, t.shape(), 0, 0, t.numel(), is_floating(t.dtype()), 0);
  }
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << to_string(t); }

// ---- factories ----

Tensor empty(const Shape& shape, DType dtype, Device device) {
  auto impl = std::make_shared<TensorImpl>();
  int64_t n = shape.numel();
  size_t bytes = 0;
  MOX_CHECK(!__builtin_mul_overflow(size_t(n), dtype_size(dtype), &bytes), "shape ", shape,
            " of dtype ", dtype, " is too large to allocate");
  impl->storage = std::make_shared<Storage>(bytes, device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  raw::fill_(t, value);
  return t;
}
Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }

Tensor arange(int64_t start, int64_t end, int64_t step, DType dtype, Device device) {
  MOX_CHECK(step != 0, "arange: step must be non-zero");
  int64_t n = step > 0 ? (end - start + step - 1) / step : (start - end - step - 1) / -step;
  if (n < 0) n = 0;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(start + i * step);
  return from_doubles(v, {n}, dtype, device);
}

template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  MOX_CHECK(int64_t(values.size()) == shape.numel(), "from_vector: ", values.size(),
            " values do not fill shape ", shape, " (", shape.numel(), " elements)");
  Tensor host = empty(shape, dtype_of<T>::value, Device::cpu());
  std::copy(values.begin(), values.end(), host.data<T>());
  return raw::to_device(host, device);
}
template Tensor from_vector(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector(const std::vector<half>&, const Shape&, Device);
template Tensor from_vector(const std::vector<bfloat16>&, const Shape&, Device);
template Tensor from_vector(const std::vector<int32_t>&, const Shape&, Device);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&, Device);
template Tensor from_vector(const std::vector<uint8_t>&, const Shape&, Device);

Tensor from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype, Device device) {
  return raw::to_dtype(from_vector<double>(values, shape, device), dtype);
}

}  // namespace mox
