// image_guard.h — structural checks of untrusted image bytes, run before stb_image sees them.
//
// stb_image 2.27 (Debian 12's libstb-dev, which mox compiles in datasets/stb_image_impl.cpp)
// trusts some lengths in its input. The fuzzer (fuzz/fuzz_image.cpp) found, and these
// checks refuse, each with a mox::Error naming the file:
//   - JPEG: a DHT segment whose Huffman table declares more than 256 codes — stb writes past
//     its tables (heap overflow; fixed upstream in 2.28). stbi_info reaches it too.
//   - PNG: a chunk longer than the bytes left in the file — stb grows its IDAT buffer to the
//     claimed size first (up to 2 GiB for a 100-byte file) and only then finds the data
//     missing.
//   - BMP: pixel data running past the end of the file — stb decodes the missing rows as
//     zeros, so a truncated file would be taken for a complete, partly black image.
// What this is not: a validator of the formats. Whatever passes is decoded by stb, which
// rejects the rest of what is malformed; the dimension caps are in image_folder.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mox::data {

// Throws mox::Error naming `source` when the bytes hit one of the cases above; returns
// quietly for anything else (including bytes that are no image at all).
void check_image_structure(const uint8_t* bytes, size_t nbytes, const std::string& source);

}  // namespace mox::data
