// image_folder.h — a dataset of image files laid out as root/CLASS/NAME.{jpg,jpeg,png,bmp}.
//
// Class folders sorted by name give the labels (0, 1, ...); files within a class are sorted
// by name. Images are decoded on every get() with stb_image into RGB u8 (3, H, W) — a grey
// or RGBA file is converted to 3 channels. Sizes may differ between files (the DataLoader
// refuses to batch mixed sizes). The format is told by the file's magic bytes, not its name;
// a header that claims more than 16,384 pixels a side or 64 Mi pixels in all is refused
// before any pixel is decoded, and so is a JPEG whose scans would walk its image more than 8
// times over (kMaxJpegScanPasses; see image_guard.h).
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
// Decoding work a JPEG may ask for: its scans may walk the frame's 8x8 blocks at most this
// many times over (datasets/image_guard.cpp). libjpeg's progressive scripts walk each block
// at most 6 times (its generic script, used for RGB and CMYK: 2 DC and 4 AC scans per
// component; its YCbCr one 4.7 on average), a baseline JPEG once. The worst file within the
// pixel cap, a 4-component frame, may thus ask for 2^31 samples: about 13 s to decode.
constexpr int64_t kMaxJpegScanPasses = 8;

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
