// loss_window.h — LossWindow: the training losses of one logging window of the examples,
// averaged over its steps and the ranks, as the train metrics records and log lines say them.
//
// Each step adds its losses (the task loss first, then those the example logs beside it) or,
// when its task loss is not finite on this rank, only itself: with fp16 such a step is skipped
// (its forward overflowed; elsewhere a non-finite loss stops the run). At the end of the window
// reduce() sums the losses and the number of steps that had them over the ranks (one
// all-reduce), so every rank gets the same means, over the (step, rank) pairs with a finite
// loss. The count is summed, not taken from one rank: a rank's loss is over its own shard of the
// batch, so it can be finite where another rank's is not. The window's steps, and the skipped
// steps the examples count, need no reduction: every rank takes the same steps and skips the
// same ones, since the overflow flag is max-reduced over the world before each step
// (overflow_anywhere, precision.h).
//
// A window with no finite loss on any rank — all of its steps skipped — has no mean: its losses
// are null in the metrics record (bench/plot_metrics.py leaves such a window out) and the log
// line says "n/a (all N steps skipped)", not NaN.
#pragma once
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dist/process_group.h"
#include "tensor/error.h"
#include "tensor/tensor.h"

namespace mox::examples {

class LossWindow {
 public:
  // `num_losses`: how many losses a step adds (the same on every rank).
  explicit LossWindow(size_t num_losses) : sums_(num_losses, 0.0) {}

  // One step: its num_losses losses, or none when its task loss is not finite on this rank.
  void add(const std::vector<double>& losses) {
    ++steps_;
    if (losses.empty()) return;
    MOX_CHECK(losses.size() == sums_.size(), "loss window: a step added ", losses.size(), " losses, not ",
              sums_.size());
    for (size_t i = 0; i < sums_.size(); ++i) sums_[i] += losses[i];
    ++with_loss_;
  }

  // A window over every rank.
  struct Means {
    int64_t steps = 0;            // the window's steps, the same on every rank
    int64_t with_loss = 0;        // (step, rank) pairs with finite losses, over the ranks
    std::vector<double> values;   // the mean of each loss; empty when with_loss is 0

    // Loss i for the metrics record: its mean, or null.
    nlohmann::json json(size_t i) const { return values.empty() ? nlohmann::json(nullptr) : nlohmann::json(values[i]); }
    // The task loss for the log line: its mean with `decimals` decimals ("2.304"), or
    // "n/a (all 5 steps skipped)".
    std::string text(int decimals) const {
      if (values.empty()) return str("n/a (all ", steps, " step", steps == 1 ? "" : "s", " skipped)");
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.*f", decimals, values[0]);
      return buf;
    }
  };

  // Collective over `world` (every rank, at the end of the window); the next window starts empty.
  Means reduce(dist::ProcessGroup& world) {
    std::vector<double> totals = sums_;
    totals.push_back(double(with_loss_));
    if (world.size() > 1) {
      Tensor t = from_vector<double>(totals, {int64_t(totals.size())});
      world.all_reduce(t);
      totals = t.to_vector<double>();
    }
    Means m;
    m.steps = steps_;
    m.with_loss = int64_t(totals.back());
    if (m.with_loss > 0)
      for (size_t i = 0; i < sums_.size(); ++i) m.values.push_back(totals[i] / double(m.with_loss));
    std::fill(sums_.begin(), sums_.end(), 0.0);
    steps_ = with_loss_ = 0;
    return m;
  }

 private:
  std::vector<double> sums_;   // this rank's sum of each loss over the steps that had them
  int64_t steps_ = 0, with_loss_ = 0;
};

}  // namespace mox::examples
