// state_text.h — numbers in optimizer and loss-scaler state as exact text, and back.
//
// Checkpoint metadata is text: doubles are written with 17 significant digits (read back
// bit-exactly), and reading refuses anything that is not entirely a number, naming the state
// (`what`, e.g. "optimizer state"), the key and the text found.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tensor/error.h"

namespace mox::optim {

inline std::string exact_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

inline double parse_state_double(const char* what, const std::string& key, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  MOX_CHECK(!text.empty() && *end == '\0' && errno == 0, what, ": key '", key, "' holds '", text,
            "', expected a number");
  return v;
}

// An integer >= min; `expected` describes it in the error ("an integer", "a step count >= 1").
inline int64_t parse_state_int(const char* what, const std::string& key, const std::string& text, int64_t min,
                               const char* expected) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  MOX_CHECK(!text.empty() && *end == '\0' && errno == 0 && v >= min, what, ": key '", key, "' holds '", text,
            "', expected ", expected);
  return int64_t(v);
}

}  // namespace mox::optim
