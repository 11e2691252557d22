// repo_root.h — where the test binary finds the repository's committed test data.
//
// The root is the directory two levels above the binary's own (build/bin/, build/bin-cpu/,
// build-san/bin/), so tests read tests/data/... whatever directory they are run from.
#pragma once
#include <filesystem>
#include <system_error>

namespace mox::testing {

inline std::filesystem::path repo_root() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path(".") : exe.parent_path().parent_path().parent_path();
}

}  // namespace mox::testing
