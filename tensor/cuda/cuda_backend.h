// cuda_backend.h — the CUDA backend: tensor/backend.h's kernel table on NVIDIA GPUs.
//
// Compiled by nvcc when the build finds it (Makefile: CUDA=1, the default where nvcc exists),
// into libmox_cuda.so, which the CPU code loads on first use (tensor/cuda_library.h).
// Each op family lives in its own .cu file beside this header, as the CPU backend's do:
//   runtime.cu     memory (stream-ordered pool), host↔device copies, the stream, registration
//   elementwise.cu copy, fill, unary (+ backward), binary, binary_scalar, where, axpy
//   reduce.cu      reduce, arg_reduce, softmax (+ backward), cumsum
//   index.cu       gather, scatter_add, index_select, index_add, topk, argsort
//   random.cu      uniform, normal (Philox, the same numbers as the CPU for a seed and offset)
//   optim.cu       fused SGD and Adam/AdamW updates (tensor/optim_math.h, shared with the CPU)
//   gemm.cu        bmm, grouped_gemm through cuBLAS (strided-batched, grouped; TF32 only with MOX_ALLOW_TF32=1)
//   conv.cu        conv2d (+ backward) through cuDNN; max_pool2d (+ backward) as exact custom kernels
//   llm.cu         norm (+ backward), attention (+ backward), bias_gelu (+ backward), rotary
//   fused_attention.cu  attention_fused (+ backward): flash-style kernels, no probabilities kept
// Scalar math is shared with the CPU through MOX_HD functions (tensor/math.h, dtype.h).
//
// mox_cuda_backend() (runtime.cu) returns the backend only when the runtime sees a device:
// backend_available(CUDA) is then true; otherwise cuda_unavailable_reason() says why, and tests
// skip naming it.
// What it is not: multi-GPU within a process (one device per rank, chosen by local rank),
// NCCL (dist/), graphs/streams beyond the one compute stream.
#pragma once
#include "tensor/backend.h"

namespace mox {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t nbytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t nbytes) override;

  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                      const Tensor& gx) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void binary_scalar(BinaryOp op, const Tensor& a, double scalar, bool reversed,
                     const Tensor& out) override;
  void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void axpy(double alpha, const Tensor& x, const Tensor& y) override;

  void reduce(ReduceOp op, const Tensor& x, const bool* reduce_dims, const Tensor& out) override;
  void arg_reduce(bool is_max, const Tensor& x, int dim, const Tensor& out) override;
  void softmax(const Tensor& x, bool log, const Tensor& out) override;
  void softmax_backward(const Tensor& y, const Tensor& gy, bool log, const Tensor& gx) override;
  void cumsum(const Tensor& x, int dim, const Tensor& out) override;

  void bmm(const Tensor& a, const Tensor& b, const Tensor& out, bool accumulate) override;
  void grouped_gemm(const std::vector<Tensor>& a, const std::vector<Tensor>& b, const std::vector<Tensor>& out,
                    bool accumulate) override;

  void conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, const Conv2dParams& p,
              const Tensor& out) override;
  void conv2d_backward(const Tensor& x, const Tensor& w, const Tensor& gy, const Conv2dParams& p,
                       const Tensor* gx, const Tensor* gw, const Tensor* gb) override;
  void max_pool2d(const Tensor& x, const Pool2dParams& p, const Tensor& out,
                  const Tensor& indices) override;
  void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Tensor& gx) override;

  void gather(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void scatter_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
  void index_select(const Tensor& x, int dim, const Tensor& index, const Tensor& out) override;
  void index_add(const Tensor& out, int dim, const Tensor& index, const Tensor& src) override;
  void topk(const Tensor& x, int64_t k, bool largest, const Tensor& values,
            const Tensor& indices) override;
  void argsort(const Tensor& x, bool descending, const Tensor& indices) override;

  void uniform(const Tensor& out, double low, double high, uint64_t seed, uint64_t offset) override;
  void normal(const Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) override;

  void sgd_step(const Tensor& param, const Tensor& grad, const Tensor* momentum_buf,
                const SgdHyper& h) override;
  void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg,
                 const Tensor& exp_avg_sq, const AdamHyper& h) override;

  void norm(const Tensor& x, const Tensor* w, const Tensor* b, double eps, const Tensor* mean,
            const Tensor& rstd, const Tensor& y) override;
  void norm_backward(const Tensor& x, const Tensor* w, const Tensor* mean, const Tensor& rstd,
                     const Tensor& gy, const Tensor* gx, const Tensor* gw, const Tensor* gb) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                 const Tensor* keep, const Tensor* probs, const Tensor& out) override;
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& probs,
                          const Tensor* keep, const Tensor& gout, double scale, const Tensor& gq,
                          const Tensor& gk, const Tensor& gv) override;
  void attention_fused(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                       const AttentionDropout& dropout, const Tensor& out, const Tensor& lse) override;
  void attention_fused_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                const Tensor& lse, const Tensor& gout, bool causal, double scale,
                                const AttentionDropout& dropout, const Tensor& gq, const Tensor& gk,
                                const Tensor& gv) override;
  void bias_gelu(const Tensor& x, const Tensor* b, const Tensor& y) override;
  void bias_gelu_backward(const Tensor& x, const Tensor* b, const Tensor& gy, const Tensor& gx,
                          const Tensor* gb) override;
  void rotary(const Tensor& x, int64_t start, double theta, bool inverse, const Tensor& out) override;
};

}  // namespace mox
