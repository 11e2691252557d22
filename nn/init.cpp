// init.cpp — see init.h.
#include "nn/init.h"

#include <cmath>

namespace mox::nn::init {

int64_t fan_in(const Tensor& w) {
  MOX_CHECK(w.dim() >= 2, "fan_in: weight ", describe(w), " needs at least 2 dims");
  int64_t f = w.size(1);
  for (int d = 2; d < w.dim(); ++d) f *= w.size(d);
  return f;
}

void kaiming_uniform_(const Tensor& w, double a, Generator* gen) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = gain * std::sqrt(3.0 / double(fan_in(w)));
  raw::uniform_(w, -bound, bound, gen);
}

void uniform_(const Tensor& t, double low, double high, Generator* gen) { raw::uniform_(t, low, high, gen); }
void normal_(const Tensor& t, double mean, double std, Generator* gen) { raw::normal_(t, mean, std, gen); }
void zeros_(const Tensor& t) { raw::fill_(t, 0.0); }
void ones_(const Tensor& t) { raw::fill_(t, 1.0); }

}  // namespace mox::nn::init
