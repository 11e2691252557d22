// init.h — parameter initialisation, matching PyTorch's defaults so results compare.
//
// PyTorch initialises Linear and Conv2d weights with kaiming_uniform_(a=√5), which is
// U(−1/√fan_in, 1/√fan_in), and their biases with U(−1/√fan_in, 1/√fan_in). The values
// differ from PyTorch's (different RNG), the distributions do not.
#pragma once
#include "tensor/ops.h"

namespace mox::nn::init {

// fan_in of a weight: in_features for (out, in); C·KH·KW for (O, C, KH, KW).
int64_t fan_in(const Tensor& weight);
// U(−b, b) with b = gain·√(3/fan_in), gain = √(2/(1+a²)).
void kaiming_uniform_(const Tensor& weight, double a, Generator* gen = nullptr);
void uniform_(const Tensor& t, double low, double high, Generator* gen = nullptr);
void normal_(const Tensor& t, double mean, double std, Generator* gen = nullptr);
void zeros_(const Tensor& t);
void ones_(const Tensor& t);

}  // namespace mox::nn::init
