// cpu_backend.h — the CPU backend: the reference implementation of tensor/backend.h.
//
// Plain loops (OpenMP where it pays) and OpenBLAS for GEMM. Each op family's kernels live
// in their own file under tensor/cpu/ (elementwise.cpp, reduce.cpp, gemm.cpp, conv.cpp,
// index.cpp, random.cpp, optim.cpp, llm.cpp, fused_attention.cpp, ...); this header only
// declares the class.
#pragma once
#include "tensor/backend.h"

namespace mox {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

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

CpuBackend& cpu_backend();

}  // namespace mox
