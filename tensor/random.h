// random.h — seeded, counter-based random numbers (Philox-4x32-10).
//
// A Generator is a (seed, offset) pair: each draw of n numbers uses counters
// [offset, offset+n) and advances the offset, so a stream is reproducible from its seed
// and position alone, on any device and any thread count (checkpoints save both). The
// Philox rounds are MOX_HD so the CPU and CUDA backends produce identical numbers.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace mox {

struct Philox {
  // Four 32-bit random words for counter `ctr` under key `seed`.
  MOX_HD static void draw4(uint64_t seed, uint64_t ctr, uint32_t out[4]) {
    uint32_t c0 = uint32_t(ctr), c1 = uint32_t(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
      uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
      c1 = uint32_t(p1); c3 = uint32_t(p0); c0 = n0; c2 = n2;
      k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  }
  // Element i of a stream uses counter i alone (four words), whatever its dtype, so
  // streams of different dtypes never share counters.
  // Uniform in [0, 1) with 24-bit resolution (float).
  MOX_HD static float uniform01(uint64_t seed, uint64_t i) {
    uint32_t w[4];
    draw4(seed, i, w);
    return float(w[0] >> 8) * (1.0f / 16777216.0f);
  }
  // Uniform in [0, 1) with 53-bit resolution (double).
  MOX_HD static double uniform01_f64(uint64_t seed, uint64_t i) {
    uint32_t w[4];
    draw4(seed, i, w);
    return double((uint64_t(w[0]) << 21) ^ (w[1] >> 11)) * (1.0 / 9007199254740992.0);
  }
  // Standard normal by Box–Muller from the four words of counter i.
  MOX_HD static double normal(uint64_t seed, uint64_t i) {
    uint32_t w[4];
    draw4(seed, i, w);
    double u1 = (double((uint64_t(w[0]) << 21) ^ (w[1] >> 11)) + 1.0) * (1.0 / 9007199254740992.0);  // (0, 1]
    double u2 = double((uint64_t(w[2]) << 21) ^ (w[3] >> 11)) * (1.0 / 9007199254740992.0);
    return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586477 * u2);
  }
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  // Reserve n counters (one per element drawn); returns the first.
  uint64_t advance(uint64_t n) { uint64_t o = offset_; offset_ += n; return o; }
  // Host draws, for data shuffling and augmentation decisions.
  double next_uniform() { return Philox::uniform01_f64(seed_, advance(1)); }
  // Uniform integer in [0, n).
  uint64_t next_below(uint64_t n);
  // A random permutation of 0..n-1 (Fisher–Yates).
  std::vector<int64_t> permutation(int64_t n);

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The process-wide default generator used when an op is not given one; seeded by manual_seed.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace mox
