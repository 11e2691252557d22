// image_folder.cpp — directory scan and stb_image decoding for ImageFolder (see image_folder.h).
#include "datasets/image_folder.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <system_error>
#include <filesystem>
#include <memory>

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

}  // namespace

Tensor decode_image(const uint8_t* bytes, size_t nbytes, const std::string& source) {
  MOX_CHECK(nbytes <= size_t(INT_MAX), "image '", source, "' is ", nbytes,
            " bytes; images over 2 GiB are not supported");
  check_image_structure(bytes, nbytes, source);   // before stb reads a byte: see image_guard.h
  int w = 0, h = 0, channels = 0;
  if (!stbi_info_from_memory(bytes, int(nbytes), &w, &h, &channels))
    MOX_FAIL("cannot read the header of image '", source, "': ", stbi_failure_reason(),
             " (is it a JPEG, PNG or BMP file?)");
  if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide ||
      int64_t(w) * int64_t(h) > kMaxImagePixels)
    MOX_FAIL("image '", source, "' claims ", w, "x", h, " pixels; refusing to decode (at most ",
             kMaxImageSide, " a side and ", kMaxImagePixels, " pixels) — corrupt or hostile file?");

  int dw = 0, dh = 0, file_channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> hwc(
      stbi_load_from_memory(bytes, int(nbytes), &dw, &dh, &file_channels, 3), &stbi_image_free);
  if (!hwc) MOX_FAIL("cannot decode image '", source, "': ", stbi_failure_reason());
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
