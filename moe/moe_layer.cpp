// moe_layer.cpp — MoE forward: gate, gather rows per expert, run, weight, index_add back.
#include "moe/moe_layer.h"

namespace mox::moe {

MoE::MoE(int64_t hidden, const ExpertFactory& expert, const MoEConfig& cfg, std::shared_ptr<Generator> gen)
    : cfg_(cfg), hidden_(hidden) {
  const int64_t E = cfg.gate.num_experts;
  MOX_CHECK(cfg.ep_size >= 1, "MoE: ep_size=", cfg.ep_size, " must be at least 1");
  MOX_CHECK(E >= 1 && E % cfg.ep_size == 0, "MoE: num_experts=", E,
            " must be a positive multiple of ep_size=", cfg.ep_size);
  MOX_CHECK(cfg.ep_size == 1, "MoE: ep_size=", cfg.ep_size,
            " needs expert-parallel process groups, which mox does not provide yet; use ep_size=1");
  gate = register_module("gate", std::make_shared<TopKGate>(hidden, cfg.gate, std::move(gen)));
  experts = register_module("experts",
                            std::make_shared<Experts>(expert, E / cfg.ep_size, str("ep_size_", cfg.ep_size)));
  if (cfg.use_residual) {
    std::shared_ptr<nn::Module> m = expert();
    MOX_CHECK(m != nullptr, "MoE: the expert factory returned null for the residual MLP");
    m->load_state_dict((*experts)[0].state_dict());   // DeepSpeed's mlp is the expert copied from
    mlp = register_module("mlp", m);
    coefficient = register_module("coefficient", std::make_shared<nn::Linear>(hidden, 2));
  }
}

std::string MoE::repr() const {
  return str("MoE(hidden=", hidden_, ", experts=", cfg_.gate.num_experts, ", k=", cfg_.gate.k,
             ", ep_size=", cfg_.ep_size, cfg_.use_residual ? ", residual" : "", ")");
}

MoEOutput MoE::forward_moe(const Tensor& x) {
  MOX_CHECK(x.dim() >= 1 && x.size(-1) == hidden_, "MoE: input ", describe(x),
            " must have a last dim of hidden=", hidden_);
  Tensor xs = x.reshape({-1, hidden_});   // (S, M)
  MoEOutput out;
  out.routing = gate->route(xs);
  const GateOutput& g = out.routing;

  // Expert e's rows are g.token[off, off + kept_e): gather, run, collect.
  std::vector<Tensor> ys;   // each (n_e, M)
  int64_t off = 0;
  for (int64_t e = 0; e < experts->size(); ++e) {
    const int64_t n = g.kept_per_expert[size_t(e)];
    if (n == 0) continue;
    Tensor idx = raw::narrow(g.token, 0, off, n);   // (n_e)
    Tensor y = (*experts)[e].forward(index_select(xs, 0, idx));
    MOX_CHECK(y.dim() == 2 && y.size(0) == n && y.size(1) == hidden_, "MoE: expert ", e, " mapped ",
              n, " rows of hidden=", hidden_, " to ", describe(y), "; experts must map (n, hidden) → (n, hidden)");
    ys.push_back(y);
    off += n;
  }
  Tensor y = ys.size() == 1 ? ys[0] : cat(ys, 0);                       // (N, M)
  y = mul(y, g.weight.to(y.dtype()).unsqueeze(1));                       // (N, M) · (N, 1)
  Tensor moe_out = index_add(zeros(xs.shape(), xs.dtype(), xs.device()), 0, g.token, y);   // (S, M)

  if (cfg_.use_residual) {
    Tensor a = softmax(coefficient->forward(xs), -1);   // (S, 2)
    moe_out = add(mul(moe_out, a.narrow(1, 0, 1)), mul(mlp->forward(xs), a.narrow(1, 1, 1)));
  }
  out.output = moe_out.reshape(x.shape());
  out.l_aux = g.l_aux;
  out.z_loss = g.z_loss;
  out.exp_counts = g.exp_counts;
  return out;
}

Tensor MoE::forward(const Tensor& x) {
  last_ = forward_moe(x);
  return last_.output;
}

}  // namespace mox::moe
