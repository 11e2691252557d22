// image_guard.cpp — see image_guard.h. Each walk follows the order in which stb_image 2.27
// itself reads the bytes, so that it sees every length stb would act on.
#include "datasets/image_guard.h"

#include "datasets/image_folder.h"
#include "tensor/error.h"

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>
#include <vector>

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

// JPEG frame markers: stb decodes baseline (C0), extended (C1) and progressive (C2) frames;
// the other SOFn (lossless, hierarchical, arithmetic-coded) it refuses as an unknown marker.
bool is_decodable_sof(unsigned m) { return m == 0xC0 || m == 0xC1 || m == 0xC2; }
bool is_other_sof(unsigned m) { return m >= 0xC3 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC; }

// A frame header's size; i is the byte after the SOF marker: [length 2][precision 1][height 2][width 2].
struct SofSize {
  int64_t width, height;
};
SofSize sof_size(const Bytes& b, size_t i) { return {b.be16(i + 5), b.be16(i + 3)}; }

// JPEG: walk the markers as stb's parser does — segments skipped by their length, anything
// else scanned byte by byte to the next 0xFF (stb does so for padding between segments and
// for entropy-coded data), stuffed zeros and restart markers passed over, fill bytes
// skipped. Two checks on the way:
//   - no DHT table declares more than 256 codes. Visiting a superset of the places where stb
//     could read a DHT is safe here: a valid file has no oversized table anywhere.
//   - every scan (SOS) uses only Huffman tables a DHT segment before it defined. stb does not
//     check this and decodes with whatever its uninitialised table memory holds (an
//     out-of-bounds read of the symbol table); libjpeg refuses such a file too. The tables a
//     scan uses are the ones stb's decoder reads: DC and AC for every component of a
//     baseline or extended scan; in a progressive frame, DC for a first DC scan (Ss = 0,
//     Ah = 0 — a refinement reads raw bits), AC for an AC scan (Ss > 0). stb_image_impl.cpp
//     also zeroes stb's allocations, so a table this walk takes for defined where stb did
//     not read it (the walk visits more markers than stb) is empty, never garbage.
//   - the scans walk at most kMaxJpegScanPasses times the frame's 8x8 blocks, counted as stb
//     walks them (JpegFrame), from the first frame header, the only one stb reads.
// The blocks of 8x8 samples stb walks for each scan of a frame, whatever the scan's data
// holds. A component of sampling factors h, v (maxima hmax, vmax) covers ceil(W·h/hmax) x
// ceil(H·v/vmax) samples. A scan of one component walks that component's blocks; a scan of
// several walks whole MCUs, ceil(W/(8·hmax)) x ceil(H/(8·vmax)) of them, with h·v blocks of
// each component in every MCU, padding included. The frame's blocks are the latter summed
// over its components: the coefficients stb keeps, each of which a decoder fills at least once.
struct JpegFrame {
  struct Component {
    unsigned id;
    int64_t alone, interleaved;   // blocks walked by a scan of this component alone / with others
  };
  int64_t width, height;
  std::vector<Component> components;
  int64_t blocks = 0;

  JpegFrame(int64_t w, int64_t h, const std::vector<std::array<unsigned, 3>>& id_h_v) : width(w), height(h) {
    unsigned hmax = 1, vmax = 1;
    for (const auto& [id, h, v] : id_h_v) hmax = std::max(hmax, h), vmax = std::max(vmax, v);
    auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
    const int64_t mcus = ceil_div(width, 8 * hmax) * ceil_div(height, 8 * vmax);
    for (const auto& [id, h, v] : id_h_v) {
      const int64_t alone = ceil_div(ceil_div(width * h, hmax), 8) * ceil_div(ceil_div(height * v, vmax), 8);
      components.push_back({id, alone, mcus * h * v});
      blocks += mcus * h * v;
    }
  }
  // Blocks walked by a scan of these component ids (an id not in the frame: stb refuses it).
  int64_t scan_blocks(const std::vector<unsigned>& ids) const {
    int64_t n = 0;
    for (unsigned id : ids)
      for (const Component& c : components)
        if (c.id == id) n += ids.size() == 1 ? c.alone : c.interleaved;
    return n;
  }
};

void check_jpeg(const Bytes& b, const std::string& source) {
  unsigned defined[2] = {0, 0};   // bit t set: table t of class 0 (DC) / 1 (AC) defined
  bool progressive = false, have_frame = false;
  std::optional<JpegFrame> frame;   // absent until the first SOF, or when the caps refuse its size
  int64_t walked = 0;
  int scans = 0;
  size_t i = 0;
  while (i < b.n) {
    while (i < b.n && b.p[i] != 0xFF) ++i;   // padding or entropy-coded data
    while (i < b.n && b.p[i] == 0xFF) ++i;   // the 0xFF and any fill bytes
    if (i >= b.n) return;
    const unsigned marker = b.p[i++];
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;   // no length
    if (marker == 0xD9) return;   // EOI: stb stops here
    const size_t len = b.be16(i);
    if (is_decodable_sof(marker) && !have_frame) {   // [length 2][P 1][Y 2][X 2][Nf 1][Nf x (id, h << 4 | v, Tq)]
      have_frame = true;
      progressive = marker == 0xC2;
      const auto [width, height] = sof_size(b, i);
      std::vector<std::array<unsigned, 3>> id_h_v;
      for (unsigned k = 0; k < b.at(i + 7); ++k) {
        const unsigned hv = b.at(i + 9 + 3 * size_t(k));
        id_h_v.push_back({b.at(i + 8 + 3 * size_t(k)), hv >> 4, hv & 15});
      }
      if (width <= kMaxImageSide && height <= kMaxImageSide && width * height <= kMaxImagePixels)
        frame.emplace(width, height, id_h_v);   // beyond the caps the dimension check refuses the file
    }
    if (marker == 0xC4) {   // DHT: tables of (class/id byte, 16 code counts, values)
      size_t p = i + 2;
      for (int64_t left = int64_t(len) - 2; left > 0;) {
        const unsigned table_class = b.at(p) >> 4, id = b.at(p) & 15;
        if (table_class > 1 || id > 3) break;   // stb refuses the segment
        unsigned codes = 0;
        for (size_t c = 1; c <= 16; ++c) codes += b.at(p + c);
        MOX_CHECK(codes <= 256, "cannot decode image '", source, "': corrupt JPEG (a Huffman table declares ",
                  codes, " codes; at most 256 are possible)");
        defined[table_class] |= 1u << id;
        p += 17 + codes;
        left -= int64_t(17 + codes);
      }
    }
    if (marker == 0xDA) {   // SOS: [length 2][Ns 1][Ns x (component 1, DC table << 4 | AC table 1)][Ss][Se][Ah << 4 | Al]
      ++scans;
      const unsigned components = b.at(i + 2);
      const size_t params = i + 3 + 2 * size_t(components);
      const unsigned ss = b.at(params), ah = b.at(params + 2) >> 4;
      const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
      std::vector<unsigned> ids;
      for (unsigned k = 0; k < components && k < 4; ++k) {   // stb refuses Ns > 4 itself
        ids.push_back(b.at(i + 3 + 2 * size_t(k)));
        const unsigned tables = b.at(i + 4 + 2 * size_t(k)), dc = tables >> 4, ac = tables & 15;
        for (const auto& [used, table_class, id] : {std::tuple{uses_dc, 0u, dc}, std::tuple{uses_ac, 1u, ac}})
          if (used && id <= 3 && !(defined[table_class] >> id & 1))
            MOX_FAIL("cannot decode image '", source, "': corrupt JPEG (scan ", scans, " decodes component ",
                     ids.back(), " with the ", table_class ? "AC" : "DC", " Huffman table ", id,
                     ", which no DHT segment before it defines)");
      }
      if (frame && (walked += frame->scan_blocks(ids)) > kMaxJpegScanPasses * frame->blocks)
        MOX_FAIL("cannot decode image '", source, "': its JPEG scans ask for more decoding work than mox allows (by scan ",
                 scans, " they walk ", walked, " blocks of 8x8 samples, more than ", kMaxJpegScanPasses,
                 " times the ", frame->blocks, " of the ", frame->width, "x", frame->height,
                 " frame; libjpeg's progressive scripts need at most 6) — corrupt or hostile file?");
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

// The first frame header, reached as stb reaches it: SOI, then segments skipped by their
// length (with padding between them scanned to the next 0xFF) until a SOF marker.
bool jpeg_dimensions(const Bytes& b, int64_t* w, int64_t* h, std::string* note) {
  size_t i = 0;
  while (i < b.n && b.p[i] == 0xFF) ++i;
  if (i >= b.n || b.p[i] != 0xD8) return false;   // no SOI
  ++i;
  while (i < b.n) {
    while (i < b.n && b.p[i] != 0xFF) ++i;
    while (i < b.n && b.p[i] == 0xFF) ++i;
    if (i >= b.n) return false;
    const unsigned marker = b.p[i++];
    if (is_other_sof(marker)) {
      static const char* const kind[16] = {
          "", "", "", "a lossless", "", "a differential sequential", "a differential progressive",
          "a differential lossless", "", "an arithmetic-coded sequential", "an arithmetic-coded progressive",
          "an arithmetic-coded lossless", "", "a differential arithmetic-coded sequential",
          "a differential arithmetic-coded progressive", "a differential arithmetic-coded lossless"};
      *note = std::string(kind[marker & 15]) + " JPEG (SOF" + std::to_string(marker - 0xC0) +
              " frame), which mox's decoder (stb_image) does not support; it reads baseline and progressive JPEGs";
      return false;
    }
    if (is_decodable_sof(marker)) {
      if (i + 7 > b.n) return false;
      const SofSize size = sof_size(b, i);
      *w = size.width;
      *h = size.height;
      return true;
    }
    if (marker == 0xDA || marker == 0xD9) return false;   // a scan or the end before any frame
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;   // no length
    i += b.be16(i);
  }
  return false;
}

}  // namespace

ImageFormat sniff_image_format(const uint8_t* p, size_t n) {
  auto starts = [&](const char* magic, size_t at = 0) {
    for (size_t k = 0; magic[k]; ++k)
      if (at + k >= n || p[at + k] != uint8_t(magic[k])) return false;
    return true;
  };
  if (starts("\x89PNG")) return ImageFormat::png;
  if (n >= 1 && p[0] == 0xFF) {   // stb's SOI test: FF (FF)* D8
    size_t i = 0;
    while (i < n && p[i] == 0xFF) ++i;
    return i < n && p[i] == 0xD8 ? ImageFormat::jpeg : ImageFormat::unknown;
  }
  if (starts("BM")) return ImageFormat::bmp;
  if (starts("GIF8")) return ImageFormat::gif;
  if (n >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7' &&
      (p[2] == ' ' || p[2] == '\t' || p[2] == '\n' || p[2] == '\r'))
    return ImageFormat::pnm;
  if (starts("II*") && n >= 4 && p[3] == 0) return ImageFormat::tiff;
  if (starts("MM") && n >= 4 && p[2] == 0 && p[3] == '*') return ImageFormat::tiff;
  if (starts("RIFF") && starts("WEBP", 8)) return ImageFormat::webp;
  if (starts("8BPS")) return ImageFormat::psd;
  if (starts("#?RADIANCE") || starts("#?RGBE")) return ImageFormat::hdr;
  if (starts("ftyp", 4)) {
    for (const char* brand : {"avif", "avis"})
      if (starts(brand, 8)) return ImageFormat::avif;
    for (const char* brand : {"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"})
      if (starts(brand, 8)) return ImageFormat::heif;
  }
  return ImageFormat::unknown;
}

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::png: return "PNG";
    case ImageFormat::jpeg: return "JPEG";
    case ImageFormat::bmp: return "BMP";
    case ImageFormat::gif: return "GIF";
    case ImageFormat::pnm: return "PNM (PBM/PGM/PPM)";
    case ImageFormat::tiff: return "TIFF";
    case ImageFormat::webp: return "WebP";
    case ImageFormat::psd: return "PSD";
    case ImageFormat::hdr: return "Radiance HDR";
    case ImageFormat::heif: return "HEIF/HEIC";
    case ImageFormat::avif: return "AVIF";
    case ImageFormat::unknown: break;
  }
  return "unknown";
}

bool image_format_supported(ImageFormat format) {
  return format == ImageFormat::png || format == ImageFormat::jpeg || format == ImageFormat::bmp;
}

bool read_image_dimensions(const uint8_t* bytes, size_t nbytes, ImageFormat format, int64_t* width,
                           int64_t* height, std::string* note) {
  const Bytes b{bytes, nbytes};
  note->clear();
  switch (format) {
    case ImageFormat::png:   // signature, then the IHDR chunk first: [13]['IHDR'][u32 w][u32 h]...
      if (nbytes < 24 || b.be32(8) != 13 || b.be32(12) != 0x49484452u) return false;
      *width = b.be32(16), *height = b.be32(20);
      return true;
    case ImageFormat::jpeg:
      return jpeg_dimensions(b, width, height, note);
    case ImageFormat::bmp: {   // file header (14 bytes), then the info header's size and dims
      const uint32_t header = b.le32(14);
      if (header == 12) {
        if (nbytes < 22) return false;
        *width = b.le16(18), *height = b.le16(20);
        return true;
      }
      if (header != 40 && header != 56 && header != 108 && header != 124) return false;   // stb refuses
      if (nbytes < 26) return false;
      const int64_t h = int32_t(b.le32(22));
      *width = b.le32(18), *height = h < 0 ? -h : h;
      return true;
    }
    default:
      return false;
  }
}

std::string missing_image_end(const uint8_t* bytes, size_t nbytes, ImageFormat format) {
  const Bytes b{bytes, nbytes};
  const std::string ends = "the file ends at byte " + std::to_string(nbytes);
  if (format == ImageFormat::jpeg) {   // the walk of check_jpeg, looking for EOI
    for (size_t i = 0; i < b.n;) {
      while (i < b.n && b.p[i] != 0xFF) ++i;
      while (i < b.n && b.p[i] == 0xFF) ++i;
      if (i >= b.n) break;
      const unsigned marker = b.p[i++];
      if (marker == 0xD9) return "";
      if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;
      i += b.be16(i);
    }
    return ends + ", before its end-of-image marker";
  }
  if (format != ImageFormat::png) return "";
  size_t pos = 8;
  while (pos + 8 <= b.n) {
    if (b.be32(pos + 4) == 0x49454E44u) return "";   // IEND
    const uint64_t next = uint64_t(pos) + 12 + b.be32(pos);
    if (next > b.n) {
      const char type[5] = {char(b.at(pos + 4)), char(b.at(pos + 5)), char(b.at(pos + 6)), char(b.at(pos + 7)), 0};
      return ends + " inside its '" + type + "' chunk at byte " + std::to_string(pos) + ", before its IEND chunk";
    }
    pos = size_t(next);
  }
  return ends + (pos < b.n ? " inside a chunk header" : "") + ", before its IEND chunk";
}

void check_image_structure(const uint8_t* bytes, size_t nbytes, const std::string& source) {
  const Bytes b{bytes, nbytes};
  if (nbytes >= 2 && bytes[0] == 0xFF) check_jpeg(b, source);   // stb's JPEG test: FF (FF)* D8
  else if (nbytes >= 8 && bytes[0] == 0x89 && bytes[1] == 'P' && bytes[2] == 'N' && bytes[3] == 'G') check_png(b, source);
  else if (nbytes >= 2 && bytes[0] == 'B' && bytes[1] == 'M') check_bmp(b, source);
}

}  // namespace mox::data
