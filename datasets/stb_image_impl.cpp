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

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
