// random.cpp — host-side draws of the Generator and the default generator.
#include "tensor/random.h"

namespace mox {

uint64_t Generator::next_below(uint64_t n) {
  // 53-bit uniform scaled; bias is below 2^-53·n, negligible for data-sized n.
  uint64_t v = uint64_t(next_uniform() * double(n));
  return v < n ? v : n - 1;
}

std::vector<int64_t> Generator::permutation(int64_t n) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = int64_t(next_below(uint64_t(i + 1)));
    std::swap(p[size_t(i)], p[size_t(j)]);
  }
  return p;
}

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

}  // namespace mox
