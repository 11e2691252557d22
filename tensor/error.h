// error.h — the one family of check macros used everywhere in mox.
//
// MOX_CHECK(cond, msg...) throws mox::Error carrying the failed expression, file and line
// plus a message built from the remaining arguments (streamed, so shapes print readably).
// Every error a user can cause goes through it: tests EXPECT_THROW on it and examples
// catch it in main. It never aborts. (CUDA_CHECK and friends join this family with the
// CUDA backend.)
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mox {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void stream_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void stream_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  stream_all(os, rest...);
}
template <typename... Args>
[[noreturn]] void throw_error(const char* expr, const char* file, int line, const Args&... args) {
  std::ostringstream os;
  stream_all(os, args...);
  if (expr) os << "  [check `" << expr << "` failed at " << file << ":" << line << "]";
  throw Error(os.str());
}
}  // namespace detail

// Concatenate arguments with operator<< into a std::string.
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::stream_all(os, args...);
  return os.str();
}

}  // namespace mox

#define MOX_CHECK(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond)) ::mox::detail::throw_error(#cond, __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

// For failures that are not a single boolean condition (e.g. a parse error).
#define MOX_FAIL(...) ::mox::detail::throw_error(nullptr, __FILE__, __LINE__, __VA_ARGS__)
