// image_guard.cpp — see image_guard.h. Each walk follows the order in which stb_image 2.27
// itself reads the bytes, so that it sees every length stb would act on.
#include "datasets/image_guard.h"

#include "datasets/image_folder.h"
#include "tensor/error.h"

namespace mox::data {
namespace {

// Big-/little-endian reads that yield 0 past the end, as stb's readers do.
struct Bytes {
  const uint8_t* p;
  size_t n;
  unsigned at(size_t k) const { return k < n ? p[k] : 0u; }
  uint32_t be16(size_t k) const { return uint32_t(at(k)) << 8 | at(k + 1); }
  uint32_t be32(size_t k) const { return be16(k) << 16 | be16(k + 2); }
  uint32_t le16(size_t k) const { return uint32_t(at(k + 1)) << 8 | at(k); }
  uint32_t le32(size_t k) const { return le16(k + 2) << 16 | le16(k); }
};

// JPEG: walk the markers as stb's parser does — segments skipped by their length, anything
// else scanned byte by byte to the next 0xFF (stb does so for padding between segments and
// for entropy-coded data), stuffed zeros and restart markers passed over, fill bytes
// skipped. Visiting a superset of the places where stb could read a DHT is safe: a valid
// file has no oversized table anywhere.
void check_jpeg(const Bytes& b, const std::string& source) {
  size_t i = 0;
  while (i < b.n) {
    while (i < b.n && b.p[i] != 0xFF) ++i;   // padding or entropy-coded data
    while (i < b.n && b.p[i] == 0xFF) ++i;   // the 0xFF and any fill bytes
    if (i >= b.n) return;
    const unsigned marker = b.p[i++];
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;   // no length
    if (marker == 0xD9) return;   // EOI: stb stops here
    const size_t len = b.be16(i);
    if (marker == 0xC4) {   // DHT: tables of (class/id byte, 16 code counts, values)
      size_t p = i + 2;
      for (int64_t left = int64_t(len) - 2; left > 0;) {
        if ((b.at(p) >> 4) > 1 || (b.at(p) & 15) > 3) break;   // stb refuses the segment
        unsigned codes = 0;
        for (size_t c = 1; c <= 16; ++c) codes += b.at(p + c);
        MOX_CHECK(codes <= 256, "cannot decode image '", source, "': corrupt JPEG (a Huffman table declares ",
                  codes, " codes; at most 256 are possible)");
        p += 17 + codes;
        left -= int64_t(17 + codes);
      }
    }
    i += len;
  }
}

// PNG: after the 8-byte signature, chunks of [u32 length][type][data][u32 CRC] up to IEND.
// stb reads them in this order and, where it succeeds, consumes exactly `length` bytes.
void check_png(const Bytes& b, const std::string& source) {
  for (size_t pos = 8; pos + 8 <= b.n;) {
    const uint64_t len = b.be32(pos);
    const char type[5] = {char(b.at(pos + 4)), char(b.at(pos + 5)), char(b.at(pos + 6)), char(b.at(pos + 7)), 0};
    MOX_CHECK(len + 12 <= b.n - pos, "cannot decode image '", source, "': PNG chunk '", type, "' at byte ", pos,
              " claims ", len, " bytes but the file has ", b.n - pos, " left (truncated or corrupt PNG)");
    if (type[0] == 'I' && type[1] == 'E' && type[2] == 'N' && type[3] == 'D') return;
    pos += 12 + size_t(len);
  }
}

// BMP: the pixel rows (uncompressed or bitfields — stb decodes nothing else) must fit in
// the file: [offset, offset + row_bytes * |height|).
void check_bmp(const Bytes& b, const std::string& source) {
  const uint32_t offset = b.le32(10), header = b.le32(14);
  int64_t w, h;
  size_t bpp_at;
  if (header == 12) {
    w = b.le16(18), h = b.le16(20), bpp_at = 24;
  } else if (header == 40 || header == 56 || header == 108 || header == 124) {
    w = int32_t(b.le32(18)), h = int32_t(b.le32(22)), bpp_at = 28;
    const uint32_t compression = b.le32(30);
    if (compression != 0 && compression != 3) return;   // stb refuses RLE and the rest
  } else {
    return;   // stb refuses other headers
  }
  const int64_t bpp = b.le16(bpp_at);
  w = w < 0 ? -w : w;
  h = h < 0 ? -h : h;
  if (w == 0 || h == 0 || bpp == 0 || bpp > 64 || w > kMaxImageSide || h > kMaxImageSide || w * h > kMaxImagePixels)
    return;   // stb or the dimension cap (with its own message) refuses these
  const uint64_t row_bytes = (uint64_t(bpp) * uint64_t(w) + 31) / 32 * 4;
  const uint64_t end = uint64_t(offset) + row_bytes * uint64_t(h);
  MOX_CHECK(end <= b.n, "cannot decode image '", source, "': the BMP's ", w, "x", h, " pixels at ", bpp,
            " bits need bytes [", offset, ", ", end, ") but the file has ", b.n, " (truncated BMP?)");
}

}  // namespace

void check_image_structure(const uint8_t* bytes, size_t nbytes, const std::string& source) {
  const Bytes b{bytes, nbytes};
  if (nbytes >= 2 && bytes[0] == 0xFF) check_jpeg(b, source);   // stb's JPEG test: FF (FF)* D8
  else if (nbytes >= 8 && bytes[0] == 0x89 && bytes[1] == 'P' && bytes[2] == 'N' && bytes[3] == 'G') check_png(b, source);
  else if (nbytes >= 2 && bytes[0] == 'B' && bytes[1] == 'M') check_bmp(b, source);
}

}  // namespace mox::data
