// memory.cpp — CPU storage: 64-byte aligned host memory.
//
// Not a caching allocator: glibc's malloc already reuses freed blocks, once it is told
// not to return large blocks to the OS via mmap/munmap on every free (which costs page
// faults on every training step). The start-up tuning below does that; see
// docs/DECISIONS.md ("CPU allocator").
//
// The alignment is done here, over malloc(n + 64), not by aligned_alloc: glibc's memalign
// carves the aligned block out of a larger chunk and frees the slack, so the chunk a freed
// tensor leaves is exactly n bytes, too small for the next request of the same size (which
// again asks for n + 64 + header) — every step's activations then grew the heap anew, and
// the dense-FFN benchmark peaked at 1.0 GB of RSS for 560 MiB of live tensors (0.75 GB now).
#include <malloc.h>

#include <cstdint>
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

constexpr size_t kAlignment = 64;

// malloc's pointer is at least 8-byte aligned, so the first 64-byte boundary at least 8 bytes
// past it is at most 64 bytes in: room to keep malloc's pointer in front of the block.
void* CpuBackend::allocate(size_t nbytes) {
  MOX_CHECK(nbytes <= SIZE_MAX - kAlignment, "cannot allocate ", nbytes, " bytes of host memory (larger than the address space)");
  void* raw = std::malloc(nbytes + kAlignment);
  MOX_CHECK(raw != nullptr, "out of host memory allocating ", nbytes, " bytes");
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(raw) + sizeof(void*) + kAlignment - 1) & ~(kAlignment - 1);
  reinterpret_cast<void**>(aligned)[-1] = raw;
  return reinterpret_cast<void*>(aligned);
}

void CpuBackend::deallocate(void* ptr, size_t) {
  if (ptr) std::free(static_cast<void**>(ptr)[-1]);
}

void CpuBackend::copy_to_host(void* dst, const void* src, size_t nbytes) { std::memcpy(dst, src, nbytes); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t nbytes) { std::memcpy(dst, src, nbytes); }

}  // namespace mox
