// fuzz_common.h — what every libFuzzer target in fuzz/ shares.
//
// A target feeds the fuzzer's bytes to one parser of untrusted input. mox::Error is the
// expected outcome for bad bytes (the parser said what is wrong); anything else is a
// finding: a sanitizer report, a crash, a hang, or an exception of another type (e.g.
// std::out_of_range from a library, std::bad_alloc from an unchecked size) — those abort
// here so libFuzzer saves the input. Accepted inputs are checked for the parser's
// documented invariants (MOX_FUZZ_ASSERT), since "parsed but nonsense" is a finding too.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "tensor/error.h"

#define MOX_FUZZ_ASSERT(cond)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

namespace mox::fuzz {

template <typename Body>
int run_one(Body&& body) {
  try {
    body();
  } catch (const mox::Error&) {
    // expected: the input was rejected with a message
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finding: exception other than mox::Error: %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "finding: non-std exception\n");
    std::abort();
  }
  return 0;
}

}  // namespace mox::fuzz
