// expect_error.h — the assertions bad-input tests use: expect_error runs a callable and
// checks it throws mox::Error whose message contains each of the given parts (shapes, keys,
// values); EXPECT_CONTAINS(text, part) checks a message or a program's output contains part.
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "tensor/error.h"

#define EXPECT_CONTAINS(text, part) \
  EXPECT_NE((text).find(part), std::string::npos) << "expected \"" << (part) << "\" in:\n" << (text)

namespace mox::testing {

// The message of the mox::Error f throws, or "(no error)": for comparing two errors' texts.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected mox::Error mentioning '" << (parts.empty() ? "" : parts[0]) << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "message lacks '" << p << "':\n  " << msg;
  }
}

}  // namespace mox::testing
