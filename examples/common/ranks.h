// ranks.h — what both examples' main() does to run on one process or on every rank of a
// scripts/moxrun job: start the distributed runtime first, pick the per-rank thread count.
//
// What it is not: the distributed runtime (dist/world.h) or the launcher (scripts/moxrun).
#pragma once
#include <cstdlib>
#include <iostream>
#include <string>

#include "dist/world.h"

namespace mox::examples {

// dist::init() for `program`: fills world_size and rank and returns true, or prints
// "<program>: error: ..." and returns false (main then exits 2: a launch problem, e.g. a bad
// MOX_DIST_TIMEOUT).
inline bool start_ranks(const char* program, int& world_size, int& rank) {
  try {
    dist::ProcessGroup& world = dist::init();
    world_size = world.size();
    rank = world.rank();
    return true;
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return false;
  }
}

// Threads for this rank: `given` when the flag was given, else $OMP_NUM_THREADS (moxrun sets
// it to cores / ranks), else 2.
inline int64_t thread_count(int64_t given, bool was_given) {
  if (was_given) return given;
  const char* env = std::getenv("OMP_NUM_THREADS");
  const int64_t n = env ? std::atoll(env) : 0;
  return n > 0 && n <= 1024 ? n : 2;
}

}  // namespace mox::examples
