// image_guard.h — what mox reads from untrusted image bytes before stb_image sees them:
// the format (from the magic bytes), the dimensions the header claims, and structural checks.
//
// stb_image 2.27 (Debian 12's libstb-dev, which mox compiles in datasets/stb_image_impl.cpp)
// trusts some of its input. The fuzzer (fuzz/fuzz_image.cpp) found (the scan budget: pointed
// at), and check_image_structure refuses, each with a mox::Error naming the file:
//   - JPEG: a DHT segment whose Huffman table declares more than 256 codes — stb writes past
//     its tables (heap overflow; fixed upstream in 2.28). stbi_info reaches it too.
//   - JPEG: a scan (SOS) that decodes with a Huffman table no DHT segment before it defined —
//     stb reads its never-initialised table memory and indexes the symbol table with
//     whatever it finds (out-of-bounds read).
//   - JPEG: scans that walk the frame's blocks more than kMaxJpegScanPasses times over. stb
//     walks every block of each component a scan names whatever the entropy-coded data holds
//     (past its end it reads zero bits), so 11 bytes of scan header buy one pass over the
//     image: a 1.5 KB progressive file claiming 10240x6412 pixels with 100 AC scans took 43 s,
//     300 scans minutes (an ASan build about ten times that).
//   - PNG: a chunk longer than the bytes left in the file — stb grows its IDAT buffer to the
//     claimed size first (up to 2 GiB for a 100-byte file) and only then finds the data
//     missing.
//   - BMP: pixel data running past the end of the file — stb decodes the missing rows as
//     zeros, so a truncated file would be taken for a complete, partly black image.
// The format and the header's dimensions are read here (not through stb) so that errors can
// name them: stb's failure reason is the last one it recorded, often from another format's
// test ("Not a PNG" for a truncated JPEG), and its PNG header reader refuses dimensions
// beyond its own limit (2^30 bytes of pixels) with a generic message before mox's cap could
// name them. What this is not: a validator of the formats. Whatever passes is decoded by stb,
// which rejects the rest of what is malformed; the dimension caps and the messages that use
// this are in image_folder.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mox::data {

// What the first bytes say. png, jpeg and bmp are the formats mox decodes (the stb loaders
// compiled in); the others are recognised only to name them when refusing the file.
enum class ImageFormat { unknown, png, jpeg, bmp, gif, pnm, tiff, webp, psd, hdr, heif, avif };

// By magic bytes: PNG 89 'PNG'; JPEG FF (FF)* D8 (the SOI marker as stb reads it, fill bytes
// allowed); BMP 'BM'; GIF 'GIF8'; PNM 'P1'…'P7' then white space; TIFF 'II*\0' / 'MM\0*';
// WebP 'RIFF' … 'WEBP'; PSD '8BPS'; Radiance HDR '#?RADIANCE' / '#?RGBE'; HEIF / AVIF an
// ISO-BMFF 'ftyp' box of brand heic/heix/mif1/… or avif/avis. A file too short to hold its
// magic is unknown. Every file stb's PNG, JPEG and BMP tests accept is sniffed as such.
ImageFormat sniff_image_format(const uint8_t* bytes, size_t nbytes);
// "PNG", "JPEG", "BMP", "GIF", "PNM (PBM/PGM/PPM)", …; "unknown" for unknown.
const char* image_format_name(ImageFormat format);
// True for the formats mox decodes: PNG, JPEG, BMP.
bool image_format_supported(ImageFormat format);

// The width and height the header of a PNG (IHDR), JPEG (the first baseline, extended or
// progressive SOF, reached by walking the markers as stb does) or BMP (info header) states,
// without decoding anything. False when the header is cut short, malformed, or (JPEG) holds
// no frame stb could decode; *note then says what was found where there is more to say (a
// JPEG frame type stb does not decode: "a lossless JPEG (SOF3 frame), which …"), else it is
// left empty. Dimensions are as stb reads them: PNG and BMP width up to 2^32 - 1 (a negative
// BMP width is read unsigned), BMP height as its magnitude (negative means top-down rows),
// JPEG up to 65535 a side.
bool read_image_dimensions(const uint8_t* bytes, size_t nbytes, ImageFormat format, int64_t* width,
                           int64_t* height, std::string* note);

// Why a PNG or JPEG that stb failed to decode may have failed: "the file ends at byte N
// inside a chunk header, before its IEND chunk" (or "…inside its 'IDAT' chunk at byte P…",
// or "the file ends at byte N, before…"; JPEG: "…, before its end-of-image marker") when the
// file stops before the marker that ends it, else "" (also for other formats). stb needs that
// marker and reads the missing bytes as zeros, so its own reason for a truncated file is
// about those zeros ("PNG not supported: unknown PNG chunk type") or missing.
std::string missing_image_end(const uint8_t* bytes, size_t nbytes, ImageFormat format);

// Throws mox::Error naming `source` when the bytes hit one of the cases listed at the top of
// this file; returns quietly for anything else (including bytes that are no image at all).
void check_image_structure(const uint8_t* bytes, size_t nbytes, const std::string& source);

}  // namespace mox::data
