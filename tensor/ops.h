// ops.h — raw tensor ops (namespace mox::raw): validate, allocate, dispatch. No autograd.
//
// These are the building blocks that autograd/functions.h wraps with backward rules, and
// what optimizers and data pipelines call directly. Every op checks its inputs once and
// throws mox::Error naming the op and the offending shapes/dtypes; then it calls the
// kernel of the inputs' device (tensor/backend.h). Outputs are fresh contiguous tensors
// unless the name ends in '_' (in place).
#pragma once
#include <utility>

#include "tensor/backend.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace mox::raw {

// ---- views (share storage) ----
Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset);
Tensor view(const Tensor& t, const Shape& shape);       // throws when the strides do not allow it
Tensor reshape(const Tensor& t, const Shape& shape);    // view if possible, else copy
Tensor transpose(const Tensor& t, int64_t d0, int64_t d1);
Tensor permute(const Tensor& t, const Shape& dims);
Tensor narrow(const Tensor& t, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& t, int64_t dim, int64_t index);   // drops dim
Tensor expand(const Tensor& t, const Shape& shape);
Tensor squeeze(const Tensor& t, int64_t dim);
Tensor unsqueeze(const Tensor& t, int64_t dim);
// Resolve one -1 entry of `shape` against numel; throws when impossible.
Shape infer_shape(const Shape& shape, int64_t numel);

// ---- copies and casts ----
Tensor contiguous(const Tensor& t);                 // t itself when already contiguous
Tensor clone(const Tensor& t);                      // always a fresh contiguous copy
Tensor to_dtype(const Tensor& t, DType dtype);      // t itself when dtype matches
Tensor to_device(const Tensor& t, Device device);   // t itself when device matches
void copy_(const Tensor& dst, const Tensor& src);   // src broadcast to dst, cast to dst's dtype
void fill_(const Tensor& dst, double value);

// ---- elementwise ----
Tensor unary(UnaryOp op, const Tensor& x);
Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);    // broadcasting
Tensor binary_scalar(BinaryOp op, const Tensor& a, double s, bool reversed = false);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
inline Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::add, a, b); }
inline Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::sub, a, b); }
inline Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::mul, a, b); }
inline Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::div, a, b); }
void add_(const Tensor& y, const Tensor& x, double alpha = 1.0);   // y += alpha·x (x broadcast to y)
void mul_(const Tensor& y, double s);                               // y *= s

// ---- reductions (dims may be negative; empty dims = all) ----
Tensor reduce(ReduceOp op, const Tensor& x, const Shape& dims, bool keepdim);
inline Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false) {
  return reduce(ReduceOp::sum, x, dims, keepdim);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor softmax(const Tensor& x, int64_t dim, bool log = false);
Tensor softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim, bool log);
Tensor cumsum(const Tensor& x, int64_t dim);
// Reduce a gradient of a broadcast result back to `shape` (sums broadcast dims).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- linear algebra ----
// (M,K)@(K,N), (B,M,K)@(B,K,N) with batch broadcasting, (K)@(K,N), (M,K)@(K).
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- convolution and pooling (NCHW) ----
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p);
// returns {output, indices}
std::pair<Tensor, Tensor> max_pool2d(const Tensor& x, const Pool2dParams& p);

// ---- indexing ----
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
void scatter_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
void index_add_(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
// {values, indices} of the k largest (or smallest) along dim, sorted.
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k, int64_t dim = -1, bool largest = true);
Tensor argsort(const Tensor& x, int64_t dim = -1, bool descending = false);   // stable

// ---- random (advance the generator; default generator when none given) ----
Tensor uniform(const Shape& shape, double low, double high, DType dtype = DType::f32,
               Device device = Device::cpu(), Generator* gen = nullptr);
Tensor normal(const Shape& shape, double mean, double std, DType dtype = DType::f32,
              Device device = Device::cpu(), Generator* gen = nullptr);
void uniform_(const Tensor& out, double low, double high, Generator* gen = nullptr);
void normal_(const Tensor& out, double mean, double std, Generator* gen = nullptr);
// Standard Gumbel noise: -log(-log(U)), U in (0,1).
Tensor gumbel(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu(),
              Generator* gen = nullptr);
Tensor randperm(int64_t n, Device device = Device::cpu(), Generator* gen = nullptr);

// ---- predicates used by optimizers and anomaly checks ----
bool all_finite(const Tensor& x);

}  // namespace mox::raw
