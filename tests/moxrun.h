// moxrun.h — for tests that start distributed jobs: where scripts/moxrun is, whether a
// program (mpirun) is on PATH, and run_moxrun() to start a job and capture its output.
#pragma once
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include "tests/child_process.h"

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

// Runs `<env> scripts/moxrun <args>` (args and env already shell-quoted) and captures stdout and
// stderr. In a sanitizer build the ranks run without LeakSanitizer — OpenMPI leaks at
// MPI_Finalize by design, as `make test` notes for mox-dist-tests — with ASan/UBSan unchanged.
inline ProgramResult run_moxrun(const std::filesystem::path& moxrun, const std::string& args,
                                const std::string& env = "") {
  std::string prefix = env;
  if (const char* asan = std::getenv("ASAN_OPTIONS")) prefix += "ASAN_OPTIONS=" + sh_quote(std::string(asan) + ":detect_leaks=0") + " ";
  return run_program("/usr/bin/env", prefix + sh_quote(moxrun.string()) + " " + args);
}

}  // namespace mox::testing
