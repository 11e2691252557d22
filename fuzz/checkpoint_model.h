// checkpoint_model.h — the tiny model the checkpoint fuzz target loads into and
// make_seeds.cpp saves seeds from: Linear(3, 2) → Linear(2, 1, no bias), keys
// "0.weight", "0.bias", "1.weight"; trained with Adam (state: exp_avg, exp_avg_sq, step).
#pragma once
#include <cstring>
#include <memory>

#include "nn/container.h"
#include "nn/linear.h"
#include "nn/optim/adam.h"
#include "tensor/ops.h"

namespace mox::fuzz {

class CheckpointModel : public nn::Sequential {
 public:
  CheckpointModel() {
    Generator gen(1234);
    push_back(std::make_shared<nn::Linear>(3, 2, true, &gen));
    push_back(std::make_shared<nn::Linear>(2, 1, false, &gen));
  }
};

// Deep copies of every parameter and buffer.
inline nn::NamedTensors snapshot(const nn::Module& m) {
  nn::NamedTensors out;
  for (const auto& [name, t] : m.state_dict()) out.emplace_back(name, raw::clone(t));
  return out;
}

inline bool same_bytes(const nn::NamedTensors& a, const nn::NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const Tensor& x = a[i].second;
    const Tensor& y = b[i].second;
    if (a[i].first != b[i].first || !(x.shape() == y.shape()) || x.dtype() != y.dtype() ||
        std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) != 0)
      return false;
  }
  return true;
}

}  // namespace mox::fuzz
