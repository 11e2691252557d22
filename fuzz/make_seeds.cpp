// make_seeds.cpp — writes the seed corpora of the fuzz targets: small valid inputs, each a
// few KB at most, under <out>/<target>/ (default fuzz/corpus). Run by `make fuzz-seeds`;
// the output is committed, so this only needs re-running when a format changes.
//
//   safetensors/  f32 + metadata; every dtype incl. BOOL, a 0-d and a zero-size tensor; "{}"
//   cifar10/      one record (label 3) and two records (labels 0, 9)
//   image/        PNG (RGB, grey, RGBA), BMP, baseline JPEG — 5×3 pixels (the two progressive
//                 JPEG seeds there are Pillow's, committed as files: stb_image_write has no
//                 progressive mode)
//   checkpoint/   fuzz/checkpoint_model.h with Adam, before and after one step
//   tokenizer/    char- and byte-tokenizer JSON; ASCII, multi-byte UTF-8 and non-UTF-8 corpora
//   text/         an ASCII and a UTF-8 corpus (char-level), a non-UTF-8 one (byte-level)
//   llm_config/   mox-llm ModelConfig JSON: gpt dense, llama MoE with a pyramid list
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

#include "datasets/tokenizer.h"
#include "examples/llm/config.h"
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

std::vector<uint8_t> bytes_of(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

const char* const kAscii =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";
const char* const kUtf8 = "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82 ok\n";
const std::string kNotUtf8 = std::string("bytes \xff\xfe and a lone \x80 continuation, ") + std::string(1, '\0') + "nul\n";

void tokenizer_seeds(const fs::path& dir) {
  write_bytes(dir / "char.json", bytes_of(data::CharTokenizer::from_text(kAscii).to_json()));
  write_bytes(dir / "char_utf8.json", bytes_of(data::CharTokenizer::from_text(kUtf8).to_json()));
  write_bytes(dir / "byte.json", bytes_of(data::ByteTokenizer().to_json()));
  write_bytes(dir / "corpus_ascii.txt", bytes_of(kAscii));
  write_bytes(dir / "corpus_utf8.txt", bytes_of(kUtf8));
  write_bytes(dir / "corpus_not_utf8.bin", bytes_of(kNotUtf8));
}

void text_seeds(const fs::path& dir) {
  write_bytes(dir / "ascii.txt", bytes_of(kAscii));
  write_bytes(dir / "utf8.txt", bytes_of(std::string(kUtf8) + kUtf8));
  write_bytes(dir / "not_utf8.bin", bytes_of(kNotUtf8));
}

void llm_config_seeds(const fs::path& dir) {
  llm::ModelConfig gpt;
  gpt.vocab_size = 65;
  gpt.validate();
  write_bytes(dir / "gpt_dense.json", bytes_of(gpt.to_json()));
  llm::ModelConfig llama;
  llama.arch = "llama";
  llama.vocab_size = 256;
  llama.n_layer = 4;
  llama.n_head = 2;
  llama.n_embd = 32;
  llama.num_experts = {4, 8};
  llama.expert_interval = 2;
  llama.use_residual = true;
  llama.gate.k = 2;
  llama.gate.noisy_gate_policy = moe::NoisyGatePolicy::rsample;
  llama.gate.drop_tokens = false;
  llama.gate.z_loss_coef = 0.001;
  llama.validate();
  write_bytes(dir / "llama_moe_pyramid.json", bytes_of(llama.to_json()));
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "fuzz/corpus";
  try {
    for (const char* t : {"safetensors", "cifar10", "image", "checkpoint", "tokenizer", "text", "llm_config"})
      fs::create_directories(root / t);
    safetensors_seeds(root / "safetensors");
    cifar_seeds(root / "cifar10");
    image_seeds(root / "image");
    checkpoint_seeds(root / "checkpoint");
    tokenizer_seeds(root / "tokenizer");
    text_seeds(root / "text");
    llm_config_seeds(root / "llm_config");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
