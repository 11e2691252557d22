// transforms.cpp — the fused normalise / crop / flip pass (see transforms.h).
#include "datasets/transforms.h"

#include <algorithm>
#include <cmath>

namespace mox::data {

AugmentDraw draw_augment(const Augment& augment, Generator& gen) {
  MOX_CHECK(augment.crop_padding >= 0, "Augment: crop_padding must be >= 0, got ",
            augment.crop_padding);
  AugmentDraw d;
  if (augment.crop_padding > 0) {
    const uint64_t choices = uint64_t(2 * augment.crop_padding + 1);
    d.dy = int64_t(gen.next_below(choices)) - augment.crop_padding;
    d.dx = int64_t(gen.next_below(choices)) - augment.crop_padding;
  }
  if (augment.hflip) d.flip = gen.next_uniform() < 0.5;
  return d;
}

NormalizeTable::NormalizeTable(const Normalize& n) {
  MOX_CHECK(n.mean.size() == n.std.size(), "Normalize: mean has ", n.mean.size(),
            " entries but std has ", n.std.size(), " (give one per channel, or one for all)");
  channels_ = n.mean.empty() ? 1 : int64_t(n.mean.size());
  lut_.resize(size_t(channels_) * 256);
  for (int64_t c = 0; c < channels_; ++c) {
    double mean = n.mean.empty() ? 0.0 : n.mean[size_t(c)];
    double std = n.std.empty() ? 1.0 : n.std[size_t(c)];
    MOX_CHECK(std::isfinite(mean) && std::isfinite(std) && std > 0, "Normalize: channel ", c,
              " has mean ", mean, " and std ", std, "; std must be positive and both finite");
    for (int v = 0; v < 256; ++v) lut_[size_t(c * 256 + v)] = float((v / 255.0 - mean) / std);
  }
}

void NormalizeTable::check_channels(int64_t channels, const std::string& what) const {
  MOX_CHECK(channels_ == 1 || channels_ == channels, what, " has ", channels,
            " channels but Normalize mean/std have ", channels_, " entries");
}

void transform_into(const Tensor& image, const AugmentDraw& draw, const NormalizeTable& table,
                    float* out) {
  MOX_CHECK(image.dim() == 3 && image.dtype() == DType::u8 && image.device().is_cpu() &&
                image.is_contiguous(),
            "transform: expected a contiguous (C, H, W) u8 CPU image, got ", describe(image),
            " on ", image.device());
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  table.check_channels(C, "transform: the image");
  const uint8_t* src = image.data<uint8_t>();   // (C, H, W)
  const int64_t dy = draw.dy, dx = draw.dx;
  // Output columns [x0, x1) read a source column inside the image; the rest are padding.
  const int64_t x0 = std::clamp<int64_t>(draw.flip ? dx : -dx, 0, W);
  const int64_t x1 = std::clamp<int64_t>(draw.flip ? W + dx : W - dx, x0, W);
  for (int64_t c = 0; c < C; ++c) {
    const float* lut = table.channel(c);
    for (int64_t y = 0; y < H; ++y) {
      float* o = out + (c * H + y) * W;   // (W)
      const int64_t sy = y + dy;
      if (sy < 0 || sy >= H) {
        std::fill(o, o + W, lut[0]);
        continue;
      }
      const uint8_t* row = src + (c * H + sy) * W;   // (W)
      std::fill(o, o + x0, lut[0]);
      if (draw.flip) {
        for (int64_t x = x0; x < x1; ++x) o[x] = lut[row[W - 1 - x + dx]];
      } else {
        for (int64_t x = x0; x < x1; ++x) o[x] = lut[row[x + dx]];
      }
      std::fill(o + x1, o + W, lut[0]);
    }
  }
}

Tensor transform(const Tensor& image, const AugmentDraw& draw, const NormalizeTable& table) {
  MOX_CHECK(image.dim() == 3, "transform: expected a (C, H, W) image, got ", describe(image));
  Tensor out = empty({image.size(0), image.size(1), image.size(2)}, DType::f32);   // (C, H, W)
  transform_into(image, draw, table, out.data<float>());
  return out;
}

}  // namespace mox::data
