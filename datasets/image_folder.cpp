// image_folder.cpp — directory scan and stb_image decoding for ImageFolder (see image_folder.h).
#include "datasets/image_folder.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <system_error>
#include <filesystem>
#include <memory>
#include <string>

#include <stb/stb_image.h>

#include "datasets/file_bytes.h"
#include "datasets/image_guard.h"

namespace mox::data {
namespace fs = std::filesystem;
namespace {

bool is_image_file(const fs::directory_entry& e) {
  std::error_code ec;
  if (!e.is_regular_file(ec)) return false;
  std::string name = e.path().filename().string();
  if (name[0] == '.') return false;   // hidden files, editor droppings
  std::string ext = e.path().extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

bool is_class_folder(const fs::directory_entry& e) {
  std::error_code ec;
  return e.is_directory(ec) && e.path().filename().string()[0] != '.';
}

// Entries of `dir` that satisfy `keep`, sorted by name; errors name the directory.
std::vector<fs::path> sorted_entries(const fs::path& dir, bool (*keep)(const fs::directory_entry&)) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (keep(*it)) out.push_back(it->path());
  if (ec) MOX_FAIL("cannot list directory '", dir.string(), "': ", ec.message());
  std::sort(out.begin(), out.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return out;
}

bool exceeds_cap(int64_t w, int64_t h) {   // w, h < 2^32: the product is taken only when both fit the side cap
  return w > kMaxImageSide || h > kMaxImageSide || w * h > kMaxImagePixels;
}

[[noreturn]] void refuse_dimensions(const std::string& source, const char* format, int64_t w, int64_t h) {
  MOX_FAIL("image '", source, "' claims ", w, "x", h, " pixels in its ", format,
           " header; refusing to decode (at most ", kMaxImageSide, " a side and ", kMaxImagePixels,
           " pixels in all) — corrupt or hostile file?");
}

// "first bytes 0x3c 0x68 … ("<html>…")": up to 8 bytes in hex, and as text when they all are.
std::string describe_first_bytes(const uint8_t* bytes, size_t nbytes) {
  static const char hex[] = "0123456789abcdef";
  const size_t shown = std::min<size_t>(nbytes, 8);
  std::string out = shown == 1 ? "first byte" : "first bytes", text;
  bool printable = true;
  for (size_t k = 0; k < shown; ++k) {
    const uint8_t c = bytes[k];
    out += std::string(" 0x") + hex[c >> 4] + hex[c & 15];
    if (c >= 0x20 && c < 0x7f) text += char(c);
    else if (c == '\n') text += "\\n";
    else if (c == '\r') text += "\\r";
    else if (c == '\t') text += "\\t";
    else printable = false;
  }
  if (printable) out += " (\"" + text + "\")";
  return out;
}

// stb's failure reason, where it is about this file. stb keeps only its last reason (per
// thread), and some of its failures record none — a truncated JPEG can fail after stb's PNG
// test recorded "Not a PNG" — so a reason naming another format, or stb's catch-all for
// input no loader accepts, is stale and not repeated.
std::string stb_reason(ImageFormat format) {
  const char* r = stbi_failure_reason();
  const std::string reason = r ? r : "";
  bool stale = reason.empty() || reason.find("not of any known type") != std::string::npos;
  for (ImageFormat other : {ImageFormat::png, ImageFormat::jpeg, ImageFormat::bmp})
    if (other != format && reason.find(image_format_name(other)) != std::string::npos) stale = true;
  return stale ? "stb_image gave no reason" : "stb_image: " + reason;
}

}  // namespace

Tensor decode_image(const uint8_t* bytes, size_t nbytes, const std::string& source) {
  MOX_CHECK(nbytes <= size_t(INT_MAX), "image '", source, "' is ", nbytes,
            " bytes; images over 2 GiB are not supported");
  // The format from the magic bytes, so that every later message can name it.
  if (nbytes == 0) MOX_FAIL("cannot decode image '", source, "': the file is empty (0 bytes)");
  const ImageFormat format = sniff_image_format(bytes, nbytes);
  const char* const name = image_format_name(format);
  if (format == ImageFormat::unknown)
    MOX_FAIL("cannot decode image '", source, "': not an image format mox reads (PNG, JPEG or BMP): ",
             describe_first_bytes(bytes, nbytes));
  if (!image_format_supported(format))
    MOX_FAIL("cannot decode image '", source, "': it is ", name,
             " data, not a format mox reads (PNG, JPEG or BMP; convert the file first)");

  // The guards first, before stb reads a byte (see image_guard.h): the Huffman-table check
  // protects stb's header reader itself. A file they refuse is refused for that reason, even
  // when its header also claims an absurd size.
  check_image_structure(bytes, nbytes, source);
  // The cap on what the header claims, read by mox: stb's PNG header reader refuses sizes past
  // its own limit (2^30 bytes of pixels) with a message that names neither the format nor the
  // size. stb's dimensions are capped again below (they are what it would allocate for).
  int64_t hw = 0, hh = 0;
  std::string note;
  const bool have_dims = read_image_dimensions(bytes, nbytes, format, &hw, &hh, &note);
  if (have_dims && exceeds_cap(hw, hh)) refuse_dimensions(source, name, hw, hh);

  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(bytes, int(nbytes), &w, &h, &channels))   // its reason is always the catch-all
    MOX_FAIL("cannot read the header of image '", source, "': ",
             note.empty() ? "corrupt or truncated " + std::string(name) + " header" : note);
  if (w <= 0 || h <= 0 || exceeds_cap(w, h)) refuse_dimensions(source, name, w, h);

  int dw = 0, dh = 0, file_channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> hwc(
      stbi_load_from_memory(bytes, int(nbytes), &dw, &dh, &file_channels, 3), &stbi_image_free);
  if (!hwc) {
    const std::string cut = missing_image_end(bytes, nbytes, format);
    MOX_FAIL("cannot decode image '", source, "': corrupt or truncated ", name, " data (",
             cut.empty() ? stb_reason(format) : cut, ")");
  }
  MOX_CHECK(dw == w && dh == h, "image '", source, "': header says ", w, "x", h,
            " but decoding gave ", dw, "x", dh);

  // (H, W, 3) interleaved → (3, H, W) planar
  Tensor image = empty({3, int64_t(h), int64_t(w)}, DType::u8);
  uint8_t* dst = image.data<uint8_t>();
  const size_t plane = size_t(w) * size_t(h);
  for (size_t p = 0; p < plane; ++p)
    for (size_t c = 0; c < 3; ++c) dst[c * plane + p] = hwc.get()[p * 3 + c];
  return image;
}

Tensor decode_image_file(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path, "image");
  return decode_image(bytes.data(), bytes.size(), path);
}

ImageFolder::ImageFolder(const std::string& root) {
  MOX_CHECK(fs::is_directory(root), "image folder '", root,
            "' not found or not a directory (expected root/CLASS/IMAGE.jpg)");
  std::vector<fs::path> classes = sorted_entries(root, is_class_folder);
  MOX_CHECK(!classes.empty(), "image folder '", root,
            "' has no class folders (expected root/CLASS/IMAGE.jpg, one folder per class)");
  for (const fs::path& cls : classes) {
    std::vector<fs::path> files = sorted_entries(cls, is_image_file);
    MOX_CHECK(!files.empty(), "class folder '", cls.string(),
              "' holds no .jpg, .jpeg, .png or .bmp files");
    for (const fs::path& f : files) {
      paths_.push_back(f.string());
      labels_.push_back(int64_t(class_names_.size()));
    }
    class_names_.push_back(cls.filename().string());
  }
}

const std::string& ImageFolder::path(int64_t i) const {
  MOX_CHECK(i >= 0 && i < size(), "ImageFolder: index ", i, " out of range [0, ", size(), ")");
  return paths_[size_t(i)];
}

Example ImageFolder::get(int64_t i) const {
  return {decode_image_file(path(i)), labels_[size_t(i)]};   // (3, H, W)
}

}  // namespace mox::data
