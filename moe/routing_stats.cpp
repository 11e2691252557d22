// routing_stats.cpp — RoutingStats (see routing_stats.h).
#include "moe/routing_stats.h"

namespace mox::moe {

void RoutingStats::add(const std::vector<const MoE*>& layers) {
  MOX_CHECK(layers_.empty() || layers_.size() == layers.size(), "RoutingStats: ", layers.size(),
            " MoE layers given, the window started with ", layers_.size());
  layers_.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const MoEOutput& out = layers[i]->last();
    Layer& l = layers_[i];
    l.tokens_per_expert.resize(out.exp_counts.size(), 0);
    for (size_t e = 0; e < out.exp_counts.size(); ++e) {
      l.tokens_per_expert[e] += out.exp_counts[e];
      l.assignments += out.exp_counts[e];
    }
    l.dropped += out.routing.dropped;
    l.l_aux += out.l_aux.item<double>();
    l.z_loss += out.routing.z_loss_unscaled;
    l.entropy += out.routing.entropy;
  }
  ++steps_;
}

std::vector<nlohmann::json> RoutingStats::records() {
  std::vector<nlohmann::json> out;
  if (steps_ == 0) return out;
  const double n = double(steps_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    out.push_back({{"split", "routing"},
                   {"layer", i},
                   {"tokens_per_expert", l.tokens_per_expert},
                   {"dropped_fraction", l.assignments ? double(l.dropped) / double(l.assignments) : 0.0},
                   {"l_aux", l.l_aux / n},
                   {"z_loss", l.z_loss / n},
                   {"entropy", l.entropy / n}});
  }
  layers_.clear();
  steps_ = 0;
  return out;
}

}  // namespace mox::moe
