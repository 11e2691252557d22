// fuzz_image.cpp — libFuzzer target for data::decode_image (the image-folder decoder path:
// stb_image JPEG/PNG/BMP behind mox's header and size checks). Accepted input: an RGB u8
// (3, H, W) tensor within the documented caps.
#include "datasets/image_folder.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return mox::fuzz::run_one([&] {
    mox::Tensor img = mox::data::decode_image(data, size, "fuzz.img");
    MOX_FUZZ_ASSERT(img.dim() == 3 && img.size(0) == 3 && img.dtype() == mox::DType::u8);
    MOX_FUZZ_ASSERT(img.size(1) >= 1 && img.size(1) <= mox::data::kMaxImageSide);
    MOX_FUZZ_ASSERT(img.size(2) >= 1 && img.size(2) <= mox::data::kMaxImageSide);
    MOX_FUZZ_ASSERT(img.size(1) * img.size(2) <= mox::data::kMaxImagePixels);
  });
}
