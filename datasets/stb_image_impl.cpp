// stb_image_impl.cpp — the one translation unit that compiles stb_image (libstb-dev).
//
// Defining the implementation here keeps the build free of an extra link flag. Only the
// formats the image folder accepts (JPEG, PNG, BMP) are compiled in: less decoder code
// reachable from untrusted files. Decoding goes through memory buffers only (no stdio).
// Not here: any policy (size limits, channel handling) — that is datasets/image_folder.cpp.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
// stb's asserts are internal consistency checks that corrupt input can trip (an abort on a
// crafted JPEG, fuzz/README.md); release builds of stb (NDEBUG) compile them out, and so do
// we: stb's own bounds checks and datasets/image_guard.cpp stay in force, and the fuzzer
// runs this under ASan + UBSan.
#define STBI_ASSERT(x) ((void)0)
// stb 2.27 allocates its JPEG decoder state with malloc and never clears it, so a scan that
// names a Huffman table no DHT segment defined decodes through uninitialised memory (an
// out-of-bounds read; the fuzzer found it). image_guard.cpp refuses such scans; zeroed
// allocations make whatever stb reads without the guard's knowledge deterministic: an
// all-zero table yields symbol 0 and consumes no bits.
#include <cstdlib>
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(p, size) std::realloc(p, size)
#define STBI_FREE(p) std::free(p)

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
