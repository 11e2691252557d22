// loops.h — the CPU backend's iteration helpers: dtype dispatch and strided loops.
//
// dispatch_*(dtype, f) calls f(Tag<T>{}) with the C++ type of the dtype, so a kernel is
// written once as a generic lambda. StridedLoop<N> walks N operands of the same shape
// with arbitrary strides (stride 0 = broadcast): it coalesces dims that are contiguous in
// every operand, then runs the innermost dim as a plain loop, splitting rows (or one long
// row) across OpenMP threads when there is enough work.
#pragma once
#include <omp.h>

#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace mox::cpu {

template <typename T> struct Tag { using type = T; };

// Compute type: 16-bit floats compute in float, everything else in itself.
template <typename T> struct acc { using type = T; };
template <> struct acc<half> { using type = float; };
template <> struct acc<bfloat16> { using type = float; };
template <typename T> using acc_t = typename acc<T>::type;

template <typename F> void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
    case DType::f16: return f(Tag<half>{});
    case DType::bf16: return f(Tag<bfloat16>{});
    default: MOX_FAIL(op, " is not implemented for dtype ", t, " on the CPU");
  }
}

// For kernels written for f32 and f64 only (the transformer layers: llm.cpp,
// fused_attention.cpp); other dtypes are an error telling the user to convert.
template <typename F> void dispatch_f32_f64(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
    default: MOX_FAIL(op, " is implemented for f32 and f64 on the CPU, got ", t, "; convert with .to(DType::f32)");
  }
}

template <typename F> void dispatch_all(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::i32: return f(Tag<int32_t>{});
    case DType::i64: return f(Tag<int64_t>{});
    case DType::u8: return f(Tag<uint8_t>{});
    case DType::boolean: return f(Tag<bool>{});
    default: return dispatch_float(t, op, f);
  }
}

// Elements below which a loop stays single-threaded (thread start-up costs more).
constexpr int64_t kParallelGrain = 32768;

template <int N>
class StridedLoop {
 public:
  // strides[k] are the element strides of operand k over `shape`.
  StridedLoop(const Shape& shape, const std::array<const Shape*, N>& strides) {
    rank_ = 0;
    for (int d = 0; d < shape.size(); ++d) {
      if (shape[d] == 1) continue;
      bool merge = rank_ > 0;
      for (int k = 0; k < N && merge; ++k)
        merge = strides_[k][rank_ - 1] == (*strides[k])[d] * shape[d];
      if (merge) {
        shape_[rank_ - 1] *= shape[d];
        for (int k = 0; k < N; ++k) strides_[k][rank_ - 1] = (*strides[k])[d];
      } else {
        shape_[rank_] = shape[d];
        for (int k = 0; k < N; ++k) strides_[k][rank_] = (*strides[k])[d];
        ++rank_;
      }
    }
    numel_ = 1;
    for (int d = 0; d < rank_; ++d) numel_ *= shape_[d];
    for (int d = 0; d < shape.size(); ++d) if (shape[d] == 0) numel_ = 0;
  }

  // f(const int64_t off[N], int64_t n, const int64_t step[N]): process n elements of each
  // operand starting at element offset off[k] and advancing by step[k].
  template <typename F> void run(F&& f) const {
    if (numel_ == 0) return;
    std::array<int64_t, N> step{};
    if (rank_ == 0) {
      std::array<int64_t, N> off{};
      f(off.data(), int64_t(1), step.data());
      return;
    }
    for (int k = 0; k < N; ++k) step[k] = strides_[k][rank_ - 1];
    const int64_t inner = shape_[rank_ - 1];
    const int64_t rows = numel_ / inner;
    const bool parallel = numel_ >= kParallelGrain && omp_get_max_threads() > 1 && !omp_in_parallel();
    if (rows == 1) {   // one long row: split it into chunks
      const int64_t chunks = parallel ? omp_get_max_threads() : 1;
      const int64_t per = (inner + chunks - 1) / chunks;
#pragma omp parallel for if (parallel) schedule(static)
      for (int64_t c = 0; c < chunks; ++c) {
        int64_t begin = c * per, n = std::min(per, inner - begin);
        if (n <= 0) continue;
        std::array<int64_t, N> off;
        for (int k = 0; k < N; ++k) off[k] = begin * step[k];
        f(off.data(), n, step.data());
      }
      return;
    }
#pragma omp parallel for if (parallel) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      std::array<int64_t, N> off{};
      int64_t rem = r;
      for (int d = rank_ - 2; d >= 0; --d) {
        int64_t i = rem % shape_[d];
        rem /= shape_[d];
        for (int k = 0; k < N; ++k) off[k] += i * strides_[k][d];
      }
      f(off.data(), inner, step.data());
    }
  }

 private:
  int rank_ = 0;
  int64_t numel_ = 0;
  int64_t shape_[Shape::kMaxRank] = {};
  int64_t strides_[N][Shape::kMaxRank] = {};
};

// The (rows, D) matrix of each (batch, head) of a (B, H, rows, D) tensor with unit stride on
// D: row t of head (b, h) at at(b, h) + t·ld. Head views of (B, T, H, D) memory (a fused qkv
// projection) qualify without a copy.
template <typename T> struct HeadMatrices {
  T* data;
  int64_t stride_b, stride_h, ld;
  T* at(int64_t b, int64_t h) const { return data + b * stride_b + h * stride_h; }
};
template <typename T> HeadMatrices<T> head_matrices(const Tensor& t) {
  return {static_cast<T*>(t.raw_data()), t.stride(0), t.stride(1), t.size(2) == 1 ? t.size(3) : t.stride(2)};
}

}  // namespace mox::cpu
