// child_process.h — run one of mox's programs from a test and capture what it prints.
//
// The programs sit beside the test binary (build/bin/), found through /proc/self/exe.
// run_program() runs "<binary> <args> 2>&1" through /bin/sh (or "... 2>/dev/null" with
// Stderr::discard) and returns the exit status and the captured output; a binary that is
// missing gives an empty path (tests skip).
#pragma once
#include <sys/wait.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

namespace mox::testing {

inline std::filesystem::path program_beside_tests(const std::string& name) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  std::filesystem::path p = self.parent_path() / name;
  return std::filesystem::is_regular_file(p) ? p : std::filesystem::path();
}

// Single-quotes a string for /bin/sh.
inline std::string sh_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct ProgramResult {
  int code = -1;        // exit status, or -1 when it did not exit normally
  std::string output;   // stdout, and stderr too unless it was discarded
};

// What run_program does with the program's stderr: join it to stdout, or drop it.
enum class Stderr { merge, discard };

inline ProgramResult run_program(const std::filesystem::path& binary, const std::string& args,
                                 Stderr err = Stderr::merge) {
  ProgramResult r;
  const std::string cmd =
      sh_quote(binary.string()) + " " + args + (err == Stderr::discard ? " 2>/dev/null" : " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    r.output = std::string("popen failed: ") + std::strerror(errno);
    return r;
  }
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  if (status != -1 && WIFEXITED(status)) r.code = WEXITSTATUS(status);
  return r;
}

}  // namespace mox::testing
