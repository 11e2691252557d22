// functions_grouped.cpp — grouped_linear: G Linears over consecutive row groups of one input (the
// experts of an MoE layer) as one graph node on the backend's grouped GEMM (backend.h).
//
// Forward: the rows of group g start as b_g and the GEMM accumulates x_g·W_gᵀ onto them, exactly
// as linear() does, so on the CPU each group equals linear(x_g, W_g, b_g) bit for bit (the CPU
// grouped GEMM is the same single GEMM per group). Backward: dX (x's shape, one grouped GEMM),
// dW_g = dY_gᵀ·X_g (one grouped GEMM), db_g = Σ rows of dY_g. A group without rows gives its
// weight and bias no gradient (undefined), as a Linear that never ran: optimizers skip it.
// What it is not: an activation or bias-GELU fusion; 16-bit CPU inputs are widened per group
// inside the backend, as bmm widens them.
#include "autograd/functions.h"

namespace mox {

using autograd::record;
using Grads = std::vector<Tensor>;

namespace {
// bmm reads a weight through its strides: a unit stride in one dim and a leading dimension
// covering the other (linear()'s rule); other layouts are copied.
Tensor blas_weight(const Tensor& w) {
  const bool ok = (w.stride(1) == 1 && w.stride(0) >= w.size(1)) || (w.stride(0) == 1 && w.stride(1) >= w.size(0));
  return ok ? w : raw::clone(w);
}

void check_group_tensor(const char* what, size_t g, const Tensor& t, const Shape& want, const Tensor& x) {
  MOX_CHECK(t.defined(), "grouped_linear: ", what, " of group ", g, " is undefined");
  MOX_CHECK(t.shape() == want, "grouped_linear: ", what, " of group ", g, " is ", describe(t), ", expected shape ",
            want, " for input ", describe(x));
  MOX_CHECK(t.dtype() == x.dtype() && t.device() == x.device(), "grouped_linear: ", what, " of group ", g, " ",
            describe(t), " on ", t.device(), " must match the input ", describe(x), " on ", x.device(),
            " in dtype and device");
}
}  // namespace

Tensor grouped_linear(const Tensor& x, const std::vector<int64_t>& counts, const std::vector<Tensor>& weights,
                      const std::vector<Tensor>& biases) {
  const size_t G = counts.size();
  MOX_CHECK(x.defined() && x.dim() == 2 && is_floating(x.dtype()),
            "grouped_linear: input must be a floating (N, in) tensor, got ", x.defined() ? describe(x) : "undefined");
  MOX_CHECK(G >= 1 && weights.size() == G, "grouped_linear: ", G, " group sizes but ", weights.size(),
            " weights; give one (out, in) weight per group (at least one group)");
  MOX_CHECK(biases.empty() || biases.size() == G, "grouped_linear: ", biases.size(), " biases for ", G,
            " groups; give one (out) bias per group, or none");
  int64_t total = 0;
  for (size_t g = 0; g < G; ++g) {
    MOX_CHECK(counts[g] >= 0, "grouped_linear: group ", g, " has a negative row count ", counts[g]);
    total += counts[g];
  }
  MOX_CHECK(total == x.size(0), "grouped_linear: group sizes sum to ", total, " but the input ", describe(x), " has ",
            x.size(0), " rows");
  MOX_CHECK(weights[0].defined() && weights[0].dim() == 2, "grouped_linear: weight of group 0 must be (out, in), got ",
            weights[0].defined() ? describe(weights[0]) : "undefined");
  const int64_t N = x.size(0), in = x.size(1), outf = weights[0].size(0);
  const bool has_bias = !biases.empty();
  for (size_t g = 0; g < G; ++g) {
    check_group_tensor("weight", g, weights[g], {outf, in}, x);
    if (has_bias) check_group_tensor("bias", g, biases[g], {outf}, x);
  }

  Tensor xc = raw::contiguous(x);                       // (N, in)
  Tensor y = empty({N, outf}, x.dtype(), x.device());   // (N, out)
  std::vector<Tensor> wk(G), xs, wts, ys;
  int64_t off = 0;
  for (size_t g = 0; g < G; ++g) {
    wk[g] = blas_weight(weights[g]);
    const int64_t n = counts[g];
    if (n > 0) {
      Tensor yg = raw::narrow(y, 0, off, n);                  // (n_g, out)
      if (has_bias) raw::copy_(yg, biases[g]);                // y_g = b_g, then y_g += x_g·W_gᵀ
      xs.push_back(raw::narrow(xc, 0, off, n));               // (n_g, in)
      wts.push_back(raw::transpose(wk[g], 0, 1));             // (in, out)
      ys.push_back(yg);
    }
    off += n;
  }
  backend(x.device()).grouped_gemm(xs, wts, ys, has_bias);

  std::vector<const Tensor*> inputs{&x};
  for (const Tensor& w : weights) inputs.push_back(&w);
  for (const Tensor& b : biases) inputs.push_back(&b);
  bool any = false;
  for (const Tensor* t : inputs) any = any || t->requires_grad();
  if (!autograd::grad_enabled() || !any) return y;

  std::vector<bool> need(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) need[i] = inputs[i]->requires_grad();
  return record("grouped_linear", y, inputs, [xc, wk, counts, need, has_bias, outf](const Tensor& gy) {
    const size_t G = counts.size();
    const int64_t N = xc.size(0), in = xc.size(1);
    Tensor g = raw::contiguous(gy);   // (N, out)
    Backend& be = backend(g.device());
    Grads grads(need.size());
    std::vector<Tensor> a, b, o;
    if (need[0]) {   // dX_g (n_g, in) = dY_g (n_g, out) · W_g (out, in)
      grads[0] = empty({N, in}, xc.dtype(), xc.device());
      for (size_t gi = 0, off = 0; gi < G; off += size_t(counts[gi]), ++gi) {
        if (counts[gi] == 0) continue;
        a.push_back(raw::narrow(g, 0, int64_t(off), counts[gi]));
        b.push_back(wk[gi]);
        o.push_back(raw::narrow(grads[0], 0, int64_t(off), counts[gi]));
      }
      be.grouped_gemm(a, b, o, false);
    }
    a.clear();
    b.clear();
    o.clear();
    for (size_t gi = 0, off = 0; gi < G; off += size_t(counts[gi]), ++gi) {
      if (counts[gi] == 0) continue;   // no rows: no gradient, as a Linear that never ran
      Tensor g_rows = raw::narrow(g, 0, int64_t(off), counts[gi]);   // (n_g, out)
      if (need[1 + gi]) {   // dW_g (out, in) = dY_gᵀ (out, n_g) · X_g (n_g, in)
        grads[1 + gi] = empty({outf, in}, xc.dtype(), xc.device());
        a.push_back(raw::transpose(g_rows, 0, 1));
        b.push_back(raw::narrow(xc, 0, int64_t(off), counts[gi]));
        o.push_back(grads[1 + gi]);
      }
      if (has_bias && need[1 + G + gi]) grads[1 + G + gi] = raw::reduce(ReduceOp::sum, g_rows, {0}, false);   // (out)
    }
    be.grouped_gemm(a, b, o, false);
    return grads;
  });
}

}  // namespace mox
