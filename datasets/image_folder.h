// image_folder.h — a dataset of image files laid out as root/CLASS/NAME.{jpg,jpeg,png,bmp}.
//
// Class folders sorted by name give the labels (0, 1, ...); files within a class are sorted
// by name. Images are decoded on every get() with stb_image into RGB u8 (3, H, W) — a grey
// or RGBA file is converted to 3 channels. Sizes may differ between files (the DataLoader
// refuses to batch mixed sizes). The format is told by the file's magic bytes, not its name;
// a header that claims more than 16,384 pixels a side or 64 Mi pixels in all is refused
// before any pixel is decoded, and so is a JPEG whose scans add up to more than 2^30 samples
// to decode (16 passes over a 64 Mi-pixel image; see image_guard.h).
// Not here: resizing, caching decoded images, other formats (GIF, TGA, ...).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "datasets/dataset.h"

namespace mox::data {

constexpr int64_t kMaxImageSide = 16384;
constexpr int64_t kMaxImagePixels = int64_t(64) << 20;
// Decoding work a JPEG may ask for: the samples its scans decode, summed over the scans.
// A standard progressive JPEG (libjpeg's 10-scan script) needs 8 samples per pixel at 4:2:0
// chroma and 14 at 4:4:4, so every image within the pixel cap fits.
constexpr int64_t kMaxJpegScanSamples = int64_t(1) << 30;

// Decode an encoded JPEG/PNG/BMP held in memory to RGB u8 (3, H, W); `source` names it in
// errors, which also name the format (from the magic bytes) and, for absurd dimensions, the
// width x height the header claims. Safe to call from several threads.
Tensor decode_image(const uint8_t* bytes, size_t nbytes, const std::string& source);
// Read and decode one file; errors name the path.
Tensor decode_image_file(const std::string& path);

class ImageFolder final : public Dataset {
 public:
  // Scans root; throws when it is not a directory, holds no class folders, or a class
  // folder holds no image files.
  explicit ImageFolder(const std::string& root);

  int64_t size() const override { return int64_t(paths_.size()); }
  Example get(int64_t i) const override;   // decodes the file: (3, H, W) u8
  std::vector<std::string> class_names() const override { return class_names_; }

  const std::string& path(int64_t i) const;

 private:
  std::vector<std::string> class_names_;
  std::vector<std::string> paths_;
  std::vector<int64_t> labels_;
};

}  // namespace mox::data
