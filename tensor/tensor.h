// tensor.h — Tensor: a cheap, shareable handle to a strided view of typed storage.
//
// A Tensor is {storage, shape, strides, offset, dtype} plus autograd metadata
// (requires_grad, grad, grad_fn). Copying a Tensor copies the handle, not the data. Views
// (reshape, transpose, permute, narrow, expand, squeeze, unsqueeze) share storage.
//
// The member functions that return new tensors (views, contiguous, to, arithmetic in
// autograd/functions.h) are *differentiable*: they are defined in autograd/ and record the
// graph when grad mode is on. The raw, autograd-free versions live in tensor/ops.h
// (namespace mox::raw) and are what kernels and optimizers use.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/shape.h"

namespace mox {

namespace autograd { struct Node; }

// A block of device memory, freed through its device's backend when the last view goes.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;        // in elements
  int64_t offset = 0;   // in elements
  DType dtype = DType::f32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;             // accumulated gradient of a leaf
  std::shared_ptr<autograd::Node> grad_fn;      // the node that produced this tensor
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl()->shape; }
  const Shape& strides() const { return impl()->strides; }
  int dim() const { return impl()->shape.size(); }
  int64_t size(int64_t d) const;     // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return impl()->shape.numel(); }
  int64_t offset() const { return impl()->offset; }
  DType dtype() const { return impl()->dtype; }
  Device device() const { return impl()->storage->device; }
  bool is_contiguous() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype()); }
  const std::shared_ptr<Storage>& storage() const { return impl()->storage; }

  // Typed pointer to the first element; checks that T matches the dtype.
  template <typename T> T* data() const {
    MOX_CHECK(dtype() == dtype_of<T>::value, "data<", dtype_name(dtype_of<T>::value),
              ">() called on a tensor of dtype ", dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const {
    return static_cast<char*>(impl()->storage->data) + impl()->offset * int64_t(dtype_size(dtype()));
  }
  // The single value of a one-element tensor, converted to T (copies from device if needed).
  template <typename T> T item() const;
  // All values, converted to T, in row-major order (copies from device if needed).
  template <typename T> std::vector<T> to_vector() const;

  // ---- views (differentiable; defined in autograd/views.cpp) ----
  Tensor reshape(const Shape& shape) const;   // a view when strides allow, else a copy; -1 infers one dim
  Tensor view(const Shape& shape) const;      // always a view; throws when strides do not allow it
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor clone() const;

  // ---- autograd ----
  bool requires_grad() const { return impl()->requires_grad; }
  Tensor& set_requires_grad(bool on = true);   // only on leaves
  bool is_leaf() const { return impl()->grad_fn == nullptr; }
  Tensor grad() const { return Tensor(impl()->grad); }
  void set_grad(const Tensor& g) { impl()->grad = g.impl_; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return impl()->grad_fn; }
  // A new handle on the same storage with no graph history.
  Tensor detach() const;
  // Backpropagate from this tensor. A non-scalar needs an explicit gradient.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

  TensorImpl* impl() const {
    MOX_CHECK(impl_ != nullptr, "use of an undefined (default-constructed) Tensor");
    return impl_.get();
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// "Tensor(shape=[2, 3], dtype=f32, device=cpu)" followed by the values, nested like NumPy
// (large tensors are summarised with "..."). Used by operator<<.
std::string to_string(const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Tensor& t);

// "[2, 3] f32" — the short description used in error messages.
std::string describe(const Tensor& t);

// ---- factories (raw; results do not require grad) ----
Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = Device::cpu());
// [start, end) with step; dtype i64 unless given.
Tensor arange(int64_t start, int64_t end, int64_t step = 1, DType dtype = DType::i64,
              Device device = Device::cpu());
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
// Copy host values into a new tensor of dtype_of<T>; values.size() must equal shape.numel().
template <typename T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());
// Same, converting each value to `dtype`.
Tensor from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype,
                    Device device = Device::cpu());

}  // namespace mox
