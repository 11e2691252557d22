// memory.cpp — CPU storage: 64-byte aligned host memory.
//
// Not a caching allocator: glibc's malloc already reuses freed blocks, once it is told
// not to return large blocks to the OS via mmap/munmap on every free (which costs page
// faults on every training step). The start-up tuning below does that; see
// docs/DECISIONS.md ("CPU allocator").
#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include "tensor/cpu/cpu_backend.h"

namespace mox {

namespace {
struct MallocTuning {
  MallocTuning() {
    mallopt(M_MMAP_THRESHOLD, 256 << 20);   // blocks below 256 MiB come from the heap
    mallopt(M_TRIM_THRESHOLD, 512 << 20);   // keep up to 512 MiB of freed heap for reuse
  }
};
}  // namespace

CpuBackend& cpu_backend() {
  static MallocTuning tuning;
  static CpuBackend instance;
  return instance;
}

void* CpuBackend::allocate(size_t nbytes) {
  size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded ? rounded : 64);
  MOX_CHECK(p != nullptr, "out of host memory allocating ", nbytes, " bytes");
  return p;
}

void CpuBackend::deallocate(void* ptr, size_t) { std::free(ptr); }

void CpuBackend::copy_to_host(void* dst, const void* src, size_t nbytes) { std::memcpy(dst, src, nbytes); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t nbytes) { std::memcpy(dst, src, nbytes); }

}  // namespace mox
