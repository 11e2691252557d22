// make_seeds.cpp — writes the seed corpora of the fuzz targets: small valid inputs, each a
// few KB at most, under <out>/<target>/ (default fuzz/corpus). Run by `make fuzz-seeds`;
// the output is committed, so this only needs re-running when a format changes.
//
//   safetensors/  f32 + metadata; every dtype incl. BOOL, a 0-d and a zero-size tensor; "{}"
//   cifar10/      one record (label 3) and two records (labels 0, 9)
//   image/        PNG (RGB, grey, RGBA), BMP, baseline JPEG — 5×3 pixels
//   checkpoint/   fuzz/checkpoint_model.h with Adam, before and after one step
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include "fuzz/checkpoint_model.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"

namespace fs = std::filesystem;
using namespace mox;

namespace {

void write_bytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  MOX_CHECK(out.good(), "cannot write ", path.string());
  std::printf("  %s (%zu bytes)\n", path.string().c_str(), bytes.size());
}

void append(void* ctx, void* data, int size) {
  auto* v = static_cast<std::vector<uint8_t>*>(ctx);
  v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

void safetensors_seeds(const fs::path& dir) {
  nn::save_safetensors((dir / "f32_meta.safetensors").string(),
                       {{"w", from_vector<float>({1, -2, 3.5f, 0, 1e-3f, 7}, {2, 3})},
                        {"b", from_vector<float>({0.25f, -0.5f}, {2})}},
                       {{"format", "pt"}, {"step", "12"}});
  nn::save_safetensors((dir / "all_dtypes.safetensors").string(),
                       {{"f64", from_vector<double>({1.5, -2}, {2})},
                        {"f16", raw::to_dtype(from_vector<float>({1, 2, 3}, {3}), DType::f16)},
                        {"bf16", raw::to_dtype(from_vector<float>({-1, 0.5f}, {1, 2}), DType::bf16)},
                        {"i32", from_vector<int32_t>({-7, 8}, {2, 1})},
                        {"i64", from_vector<int64_t>({1LL << 40}, {})},
                        {"u8", from_vector<uint8_t>({0, 255, 9}, {3})},
                        {"bool", raw::to_dtype(from_vector<uint8_t>({1, 0, 1, 1}, {2, 2}), DType::boolean)},
                        {"empty", empty({0, 4}, DType::f32)}});
  nn::save_safetensors((dir / "no_tensors.safetensors").string(), {});
  for (const char* name : {"f32_meta.safetensors", "all_dtypes.safetensors", "no_tensors.safetensors"})
    std::printf("  %s (%ju bytes)\n", (dir / name).string().c_str(), uintmax_t(fs::file_size(dir / name)));
}

void cifar_seeds(const fs::path& dir) {
  auto records = [](std::vector<uint8_t> labels) {
    std::vector<uint8_t> out;
    for (size_t r = 0; r < labels.size(); ++r) {
      out.push_back(labels[r]);
      for (int i = 0; i < 3072; ++i) out.push_back(uint8_t((i * 7 + r * 31) & 0xff));
    }
    return out;
  };
  write_bytes(dir / "one_record.bin", records({3}));
  write_bytes(dir / "two_records.bin", records({0, 9}));
}

void image_seeds(const fs::path& dir) {
  const int w = 5, h = 3;
  std::vector<uint8_t> rgba;
  for (int i = 0; i < w * h * 4; ++i) rgba.push_back(uint8_t(i * 13));
  std::vector<uint8_t> rgb, grey;
  for (int p = 0; p < w * h; ++p) {
    for (int c = 0; c < 3; ++c) rgb.push_back(rgba[size_t(p * 4 + c)]);
    grey.push_back(rgba[size_t(p * 4)]);
  }
  std::vector<uint8_t> out;
  MOX_CHECK(stbi_write_png_to_func(append, &out, w, h, 3, rgb.data(), w * 3), "png");
  write_bytes(dir / "rgb.png", out);
  out.clear();
  MOX_CHECK(stbi_write_png_to_func(append, &out, w, h, 1, grey.data(), w), "png");
  write_bytes(dir / "grey.png", out);
  out.clear();
  MOX_CHECK(stbi_write_png_to_func(append, &out, w, h, 4, rgba.data(), w * 4), "png");
  write_bytes(dir / "rgba.png", out);
  out.clear();
  MOX_CHECK(stbi_write_bmp_to_func(append, &out, w, h, 3, rgb.data()), "bmp");
  write_bytes(dir / "rgb.bmp", out);
  out.clear();
  MOX_CHECK(stbi_write_jpg_to_func(append, &out, w, h, 3, rgb.data(), 90), "jpg");
  write_bytes(dir / "rgb.jpg", out);
}

void checkpoint_seeds(const fs::path& dir) {
  fuzz::CheckpointModel model;
  optim::Adam adam(model.named_parameters());
  nn::save_checkpoint((dir / "adam_fresh.safetensors").string(), model, &adam, {{"epoch", "0"}, {"step", "0"}});
  Tensor x = from_vector<float>({1, 2, 3, -1, 0, 4}, {2, 3});
  Tensor loss = sum(model.forward(x));
  loss.backward();
  adam.step();
  nn::save_checkpoint((dir / "adam_step1.safetensors").string(), model, &adam, {{"epoch", "1"}, {"step", "1"}});
  for (const char* name : {"adam_fresh.safetensors", "adam_step1.safetensors"})
    std::printf("  %s (%ju bytes)\n", (dir / name).string().c_str(), uintmax_t(fs::file_size(dir / name)));
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "fuzz/corpus";
  try {
    for (const char* t : {"safetensors", "cifar10", "image", "checkpoint"}) fs::create_directories(root / t);
    safetensors_seeds(root / "safetensors");
    cifar_seeds(root / "cifar10");
    image_seeds(root / "image");
    checkpoint_seeds(root / "checkpoint");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
