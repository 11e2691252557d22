// file_bytes.cpp — read_file_bytes (see file_bytes.h).
#include "datasets/file_bytes.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "tensor/error.h"

namespace mox::data {

std::vector<uint8_t> read_file_bytes(const std::string& path, const char* what) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) MOX_FAIL("cannot open ", what, " '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes;
  if (std::fseek(f.get(), 0, SEEK_END) == 0) {   // reserve when the size is known
    long size = std::ftell(f.get());
    if (size > 0) bytes.reserve(size_t(size));
    std::rewind(f.get());
  }
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f.get())) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  if (std::ferror(f.get())) MOX_FAIL("cannot read ", what, " '", path, "': ", std::strerror(errno));
  return bytes;
}

}  // namespace mox::data
