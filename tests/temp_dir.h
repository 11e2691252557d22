// temp_dir.h — a fresh directory for a test's files, removed with everything in it.
//
// TempDir dir("mox-foo") makes a unique directory "<system temp dir>/mox-foo-XXXXXX"
// (mkdtemp); dir.path() is it and dir.path("a/b.bin") a path inside it. The destructor
// removes the whole tree (errors ignored). If mkdtemp fails the constructor throws
// std::runtime_error naming the template and the reason, which GoogleTest reports as a
// failure of the test (or of its fixture's constructor).
#pragma once
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace mox::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    const std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    std::string buf = tmpl;   // mkdtemp fills in the X's
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
    path_ = buf;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string path(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace mox::testing
