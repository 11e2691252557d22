// routing_stats.h — routing statistics of a model's MoE layers, summed over a logging window.
//
// After each training step, add() reads every layer's last() routing; records() returns one
// JSON object per layer for the metrics file and starts a new window:
//   {"split":"routing","layer":i,"tokens_per_expert":[...],"dropped_fraction":f,
//    "l_aux":a,"z_loss":z,"entropy":h}
// tokens_per_expert sums exp_counts (routed assignments, before dropping) over the window;
// dropped_fraction is dropped / routed assignments; l_aux, z_loss (unscaled) and the router
// entropy (nats, mean over tokens; ln E = uniform) are means over the window's steps.
// bench/plot_metrics.py draws these records.
//
// What it is not: it runs nothing and reduces nothing across ranks.
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "moe/moe_layer.h"

namespace mox::moe {

class RoutingStats {
 public:
  // layers: the model's MoE layers in order; their count must not change between calls.
  void add(const std::vector<const MoE*>& layers);
  // One record per layer (fields above, plus nothing else; the caller adds step/epoch), then
  // the window is reset. Empty when nothing was added.
  std::vector<nlohmann::json> records();

 private:
  struct Layer {
    std::vector<int64_t> tokens_per_expert;
    int64_t dropped = 0, assignments = 0;
    double l_aux = 0, z_loss = 0, entropy = 0;
  };
  std::vector<Layer> layers_;
  int64_t steps_ = 0;
};

}  // namespace mox::moe
