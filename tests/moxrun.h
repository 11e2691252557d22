// moxrun.h — for tests that start distributed jobs: where scripts/moxrun is, and whether a
// program (mpirun) is on PATH.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

namespace mox::testing {

// <repo>/scripts/moxrun, found from the test binary at <repo>/<build dir>/bin/; empty if absent.
inline std::filesystem::path moxrun_script() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const std::filesystem::path p = self.parent_path().parent_path().parent_path() / "scripts" / "moxrun";
  return std::filesystem::is_regular_file(p) ? p : std::filesystem::path();
}

inline bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && access((std::filesystem::path(dir) / name).c_str(), X_OK) == 0) return true;
  return false;
}

}  // namespace mox::testing
