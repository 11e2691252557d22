// transforms.h — per-example image transforms: normalise, random crop, random flip.
//
// The three are fused into one pass that reads a u8 (C, H, W) image and writes f32
// (C, H, W) straight into its slot of a batch, so the DataLoader's hot path does no
// per-image allocation:
//   out[c, y, x] = (src[c, y + dy, x' + dx] / 255 - mean[c]) / std[c],  x' = flip ? W-1-x : x
// where a source pixel outside the image reads as 0 (the zero padding of a random crop with
// padding P is exactly a shift dy, dx in [-P, P]). This is torchvision's
// RandomCrop(H, padding=P) → RandomHorizontalFlip() → ToTensor() → Normalize(mean, std).
// Randomness comes only from the Generator passed to draw_augment (never global state), so
// a run is reproducible from its seed.
// Not here: resizing, colour jitter, anything operating on float images.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace mox::data {

// out = (x / 255 - mean[c]) / std[c]. Empty vectors mean mean 0, std 1 (plain x / 255);
// a single entry applies to every channel.
struct Normalize {
  std::vector<double> mean;
  std::vector<double> std;
};

// Training-time augmentation switches.
struct Augment {
  int64_t crop_padding = 0;   // P > 0: zero-pad by P, crop back to H×W at a random offset
  bool hflip = false;         // mirror left-right with probability 0.5
};

// One example's random choices: the crop as a shift (0, 0 = centre) and the flip.
struct AugmentDraw {
  int64_t dy = 0, dx = 0;   // each in [-crop_padding, crop_padding]
  bool flip = false;
};

// Draws dy, dx (when crop_padding > 0) then flip (when hflip), in that order.
AugmentDraw draw_augment(const Augment& augment, Generator& gen);

// Normalize as one 256-entry u8 → f32 lookup table per channel, built once per loader.
class NormalizeTable {
 public:
  explicit NormalizeTable(const Normalize& normalize);   // checks sizes match and std > 0
  // Throws naming `what` unless the table serves images of `channels` channels.
  void check_channels(int64_t channels, const std::string& what) const;
  const float* channel(int64_t c) const { return lut_.data() + (channels_ == 1 ? 0 : c) * 256; }

 private:
  int64_t channels_ = 1;    // 1 = applies to every channel
  std::vector<float> lut_;  // (channels_, 256)
};

// The fused transform of one image. image: (C, H, W) u8 contiguous CPU; out: C*H*W floats.
void transform_into(const Tensor& image, const AugmentDraw& draw, const NormalizeTable& table,
                    float* out);
// Same, into a new (C, H, W) f32 tensor.
Tensor transform(const Tensor& image, const AugmentDraw& draw, const NormalizeTable& table);

}  // namespace mox::data
