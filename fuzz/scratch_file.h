// scratch_file.h — the file a target of a path-reading parser (fuzz_checkpoint, fuzz_text)
// writes each input to: in memory (/dev/shm) when it exists, else $TMPDIR or /tmp, named
// after the target and the process id. It lives for one input: libFuzzer ends a run with
// _Exit (static destructors never run), so a file kept for the whole process would outlive it.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_common.h"

namespace mox::fuzz {

class ScratchFile {
 public:
  // Writes data[0, size) to e.g. /dev/shm/mox-fuzz-checkpoint.<pid>.safetensors
  // (ScratchFile("checkpoint", ".safetensors", data, size)); the destructor removes it.
  ScratchFile(const std::string& target, const std::string& extension, const uint8_t* data, size_t size) {
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp && *tmp ? tmp : "/tmp";
    path_ = dir + "/mox-fuzz-" + target + "." + std::to_string(::getpid()) + extension;
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    MOX_FUZZ_ASSERT(fd >= 0);
    while (size > 0) {
      const ssize_t w = ::write(fd, data, size);
      MOX_FUZZ_ASSERT(w > 0);
      data += w;
      size -= size_t(w);
    }
    ::close(fd);
  }
  ~ScratchFile() { ::unlink(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace mox::fuzz
