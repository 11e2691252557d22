// moe_layer.cpp — MoE forward: gate, gather kept rows, run the experts (grouped or one by one,
// locally or across the expert-parallel group), weight, index_add back.
#include "moe/moe_layer.h"

#include "dist/functional.h"
#include "dist/groups.h"
#include "dist/world.h"
#include "moe/grouped_experts.h"

namespace mox::moe {

MoE::MoE(int64_t hidden, const ExpertFactory& expert, const MoEConfig& cfg, std::shared_ptr<Generator> gen)
    : cfg_(cfg), hidden_(hidden) {
  const int64_t E = cfg.gate.num_experts;
  MOX_CHECK(cfg.ep_size >= 1, "MoE: ep_size=", cfg.ep_size, " must be at least 1");
  MOX_CHECK(E >= 1 && E % cfg.ep_size == 0, "MoE: num_experts=", E,
            " must be a positive multiple of ep_size=", cfg.ep_size);
  if (cfg.ep_size > 1) {
    MOX_CHECK(dist::initialized(), "MoE: ep_size=", cfg.ep_size,
              " needs the distributed runtime: call mox::dist::init() and start the program with scripts/moxrun "
              "(or mpirun) on a multiple of ", cfg.ep_size, " ranks");
    ep_group_ = dist::expert_groups(int(cfg.ep_size)).expert_parallel;
    first_expert_ = ep_group_->rank() * (E / cfg.ep_size);
  }
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

Tensor MoE::run_local_experts(const Tensor& x, const Tensor& rows, const std::vector<int64_t>& counts) {
  Tensor y;   // (Σ counts, M)
  std::optional<GroupedExperts> grouped = cfg_.grouped_gemm ? GroupedExperts::recognise(*experts) : std::nullopt;
  if (grouped) {
    y = grouped->forward(index_select(x, 0, rows), counts);
  } else {
    std::vector<Tensor> ys;   // each (n_i, M)
    int64_t off = 0;
    for (int64_t i = 0; i < experts->size(); ++i) {
      const int64_t n = counts[size_t(i)];
      if (n == 0) continue;
      ys.push_back((*experts)[i].forward(index_select(x, 0, raw::narrow(rows, 0, off, n))));
      off += n;
      MOX_CHECK(ys.back().dim() == 2 && ys.back().size(0) == n, "MoE: expert ", global_expert_id(i), " mapped ", n,
                " rows of hidden=", hidden_, " to ", describe(ys.back()),
                "; experts must map (n, hidden) → (n, hidden)");
    }
    if (ys.empty()) return x.narrow(0, 0, 0);   // (0, M), still on x's graph
    y = ys.size() == 1 ? ys[0] : cat(ys, 0);
  }
  MOX_CHECK(y.dim() == 2 && y.size(0) == rows.numel() && y.size(1) == hidden_, "MoE: the experts mapped ",
            rows.numel(), " rows of hidden=", hidden_, " to ", describe(y), "; experts must map (n, hidden) → (n, hidden)");
  return y;
}

// One process holds every expert: expert e's tokens are g.token[off_e, off_e + kept_e).
Tensor MoE::experts_forward(const Tensor& xs, const GateOutput& g) {
  return run_local_experts(xs, g.token, g.kept_per_expert);
}

// Expert parallel: xin (N, M) is sorted by global expert, hence by owning rank.
Tensor MoE::experts_forward_parallel(const Tensor& xin, const GateOutput& g) {
  const int p = ep_group_->size();
  const int64_t El = experts->size();
  // send[q]: rows for rank q's experts; the per-expert counts travel first so each rank
  // knows how many rows of each of its experts come from each peer.
  std::vector<int64_t> send(size_t(p), 0);
  for (int64_t e = 0; e < cfg_.gate.num_experts; ++e) send[size_t(e / El)] += g.kept_per_expert[size_t(e)];
  const std::vector<int64_t> from = ep_group_->exchange_counts(g.kept_per_expert);   // (p·El): peer q, expert i
  std::vector<int64_t> recv(size_t(p), 0);
  for (int q = 0; q < p; ++q)
    for (int64_t i = 0; i < El; ++i) recv[size_t(q)] += from[size_t(q * El + i)];
  Tensor xr = dist::all_to_all(ep_group_, xin, send, recv);   // (R, M): by peer, then local expert

  // Row indices of each local expert in xr, and where each of them sits in expert order.
  std::vector<std::vector<int64_t>> rows_of(static_cast<size_t>(El));
  int64_t r = 0;
  for (int q = 0; q < p; ++q)
    for (int64_t i = 0; i < El; ++i)
      for (int64_t j = 0; j < from[size_t(q * El + i)]; ++j) rows_of[size_t(i)].push_back(r++);
  std::vector<int64_t> rows, counts;   // rows of xr in expert order; rows per local expert
  std::vector<int64_t> back(static_cast<size_t>(r));   // back[row of xr] = its position in expert order
  for (int64_t i = 0; i < El; ++i) {
    for (int64_t row : rows_of[size_t(i)]) {
      back[size_t(row)] = int64_t(rows.size());
      rows.push_back(row);
    }
    counts.push_back(int64_t(rows_of[size_t(i)].size()));
  }
  Tensor ye = run_local_experts(xr, from_vector(rows, {r}, xr.device()), counts);   // (R, M) in expert order
  Tensor yr = r == 0 ? ye : index_select(ye, 0, from_vector(back, {r}, xr.device()));    // (R, M) in xr's order
  return dist::all_to_all(ep_group_, yr, recv, send);                          // (N, M) in xin's order
}

MoEOutput MoE::forward_moe(const Tensor& x) {
  MOX_CHECK(x.dim() >= 1 && x.size(-1) == hidden_, "MoE: input ", describe(x),
            " must have a last dim of hidden=", hidden_);
  Tensor xs = x.reshape({-1, hidden_});   // (S, M)
  MoEOutput out;
  out.routing = gate->route(xs);
  const GateOutput& g = out.routing;

  Tensor y = ep_group_ ? experts_forward_parallel(index_select(xs, 0, g.token), g)   // (N, M) sorted by expert
                       : experts_forward(xs, g);
  y = mul(y, g.weight.to(y.dtype()).unsqueeze(1));                             // (N, M) · (N, 1)
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
