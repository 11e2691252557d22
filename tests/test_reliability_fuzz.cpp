// test_reliability_fuzz.cpp — what the fuzzers (fuzz/) found stays fixed, and the seeds
// they start from stay valid.
//
// tests/data/fuzz/<target>/ holds every input a fuzz target ever crashed on (one file per
// finding, named after the bug). Each is fed to the same parser as its target: it must
// give a result or a mox::Error — under `make test SANITIZE=1` any memory error or UB in
// the path is fatal too — and where the fix made it an error, the message is checked.
// fuzz/corpus/<target>/ (valid files written by fuzz/make_seeds.cpp) must all be accepted,
// so the image guards refuse no valid file; with MOX_DATA set, so must the 500 real JPEGs
// of cifar10-images/. Plus the image guards' own cases: truncated BMP/PNG/JPEG are refused,
// naming their format.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "datasets/cifar10.h"
#include "datasets/file_bytes.h"
#include "datasets/image_folder.h"
#include "datasets/text.h"
#include "datasets/tokenizer.h"
#include "examples/llm/config.h"
#include "fuzz/checkpoint_model.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "tests/repo_root.h"

namespace {

namespace fs = std::filesystem;
using namespace mox;

using mox::testing::repo_root;

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> bytes_of(const fs::path& p) { return data::read_file_bytes(p.string(), "test input"); }

// Feeds bytes to the parser of one fuzz target; returns "" when accepted, else the error.
using Parser = std::function<void(const std::vector<uint8_t>&, const std::string& name)>;

std::string scratch_file() {
  return (fs::temp_directory_path() / ("mox-fuzz-regression." + std::to_string(::getpid()) + ".safetensors")).string();
}

// Writes b to scratch_file(), removed again when the returned guard goes.
struct ScratchFile {
  std::string path = scratch_file();
  explicit ScratchFile(const std::vector<uint8_t>& b) {
    FILE* f = std::fopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    if (!f) return;
    std::fwrite(b.data(), 1, b.size(), f);
    std::fclose(f);
  }
  ~ScratchFile() { std::remove(path.c_str()); }
};

// fuzz_tokenizer feeds every input both ways; here a file named *.json is a tokenizer's
// JSON (tokenizer_from_json, then its to_json round trip), any other a corpus
// (make_tokenizer "auto", whose encode/decode round trip must be exact).
void tokenizer_parser(const std::vector<uint8_t>& b, const std::string& name) {
  const std::string bytes(b.begin(), b.end());
  if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".json") == 0) {
    const std::string j = data::tokenizer_from_json(bytes)->to_json();
    EXPECT_EQ(data::tokenizer_from_json(j)->to_json(), j);
    return;
  }
  std::unique_ptr<data::Tokenizer> tok = data::make_tokenizer(bytes);
  EXPECT_EQ(tok->decode(tok->encode(bytes)), bytes);
}

const std::map<std::string, Parser>& parsers() {
  static const std::map<std::string, Parser> p = {
      {"safetensors", [](const std::vector<uint8_t>& b, const std::string& n) { nn::parse_safetensors(b.data(), b.size(), n); }},
      {"cifar10", [](const std::vector<uint8_t>& b, const std::string& n) { data::parse_cifar10(b.data(), b.size(), n, 0); }},
      {"image", [](const std::vector<uint8_t>& b, const std::string& n) { data::decode_image(b.data(), b.size(), n); }},
      {"checkpoint",
       [](const std::vector<uint8_t>& b, const std::string&) {
         const std::string path = scratch_file();
         {
           FILE* f = std::fopen(path.c_str(), "wb");
           ASSERT_NE(f, nullptr);
           std::fwrite(b.data(), 1, b.size(), f);
           std::fclose(f);
         }
         struct Remove {
           std::string p;
           ~Remove() { std::remove(p.c_str()); }
         } remove{path};
         fuzz::CheckpointModel model;
         optim::Adam adam(model.named_parameters());
         const nn::NamedTensors before = fuzz::snapshot(model);
         try {
           nn::load_checkpoint(path, model, &adam);
         } catch (const Error&) {
           EXPECT_TRUE(fuzz::same_bytes(before, fuzz::snapshot(model))) << "a failed load changed the model";
           throw;
         }
       }},
      {"tokenizer", tokenizer_parser},
      {"text",
       [](const std::vector<uint8_t>& b, const std::string&) {
         ScratchFile file(b);
         data::TextDataset ds(file.path, 4);   // fuzz_text's block_size
         Generator gen(1);
         for (data::Split s : {data::Split::train, data::Split::val}) ds.sample(s, 2, gen);
       }},
      {"llm_config",
       [](const std::vector<uint8_t>& b, const std::string&) {
         llm::ModelConfig::from_json(std::string(b.begin(), b.end()));
       }},
  };
  return p;
}

std::string outcome(const std::string& target, const fs::path& file) {
  try {
    parsers().at(target)(bytes_of(file), file.filename().string());
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

// Findings whose fix turned them into a specific error; the others only must not crash.
const std::map<std::string, std::string> kExpectedErrors = {
    {"image/jpeg-dht-over-256-codes.jpg", "Huffman table declares"},
    {"image/jpeg-scan-uses-undefined-huffman-table.jpg", "DC Huffman table 2, which no DHT segment before it defines"},
    {"image/jpeg-slow-unit-grown-to-100-scans.jpg", "its JPEG scans ask for more decoding work than mox allows"},
    {"image/png-idat-length-past-end-2gib-alloc.png", "PNG chunk 'IDAT'"},
    {"tokenizer/number-overflow-out_of_range-406.json", "tokenizer JSON is not valid JSON"},
    {"llm_config/float-2e56-cast-to-int64-ub.json", "key 'vocab_size' must be an integer"},
    {"llm_config/n_layer-9e18-vector-length-error.json", "exceeds the limit of 4096 layers"},
};

TEST(ReliabilityFuzz, EveryFindingStaysFixed) {
  const fs::path root = repo_root() / "tests" / "data" / "fuzz";
  ASSERT_TRUE(fs::is_directory(root)) << root << " is missing";
  int cases = 0;
  for (const auto& [target, parser] : parsers()) {
    for (const fs::path& f : files_in(root / target)) {
      SCOPED_TRACE(target + "/" + f.filename().string());
      ++cases;
      const std::string got = outcome(target, f);   // a crash or sanitizer report ends the run here
      auto want = kExpectedErrors.find(target + "/" + f.filename().string());
      if (want != kExpectedErrors.end()) {
        EXPECT_NE(got.find(want->second), std::string::npos) << "got: " << got;
      }
    }
  }
  for (const auto& [name, msg] : kExpectedErrors)
    EXPECT_TRUE(fs::is_regular_file(root / name)) << name << " is listed but missing";
  std::printf("[ fuzz regressions ] %d inputs\n", cases);
}

// fuzz_llm_config's findings, spelled out: ModelConfig::from_json reads integers itself
// (nlohmann's get_to casts a float such as 1e300 to int64: undefined behaviour) and
// validate() bounds n_layer before experts_per_layer() allocates that many entries.
TEST(ReliabilityFuzz, LlmConfigNumbersAreChecked) {
  llm::ModelConfig c;
  c.vocab_size = 65;
  const std::string good = c.to_json();
  auto with = [&](const std::string& key, const std::string& value) {
    const std::string k = "\"" + key + "\":";
    const size_t at = good.find(k) + k.size();
    const size_t end = good.find_first_of(",}", at);
    return good.substr(0, at) + value + good.substr(end);
  };
  auto error_of = [](const std::string& text) {
    try {
      llm::ModelConfig::from_json(text);
      return std::string();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  };
  EXPECT_EQ(error_of(good), "");
  EXPECT_EQ(llm::ModelConfig::from_json(with("n_layer", "4.0")).n_layer, 4);   // an integral float is fine
  for (const char* bad : {"1e300", "-1e300", "4.5", "9223372036854775808", "18446744073709551615"})
    EXPECT_NE(error_of(with("n_layer", bad)).find("key 'n_layer' must be an integer"), std::string::npos) << bad;
  EXPECT_NE(error_of(with("num_experts", "[1e300]")).find("key 'num_experts' must be an integer"), std::string::npos);
  EXPECT_NE(error_of(with("top_k", "\"2\"")).find("key 'top_k' must be an integer"), std::string::npos);
  EXPECT_NE(error_of(with("dropout", "true")).find("key 'dropout' must be a number"), std::string::npos);
  EXPECT_NE(error_of(with("bias", "1")).find("key 'bias' must be true or false"), std::string::npos);
  EXPECT_NE(error_of(with("n_layer", "9000000000000000000")).find("exceeds the limit of 4096 layers"), std::string::npos);
}

TEST(ReliabilityFuzz, SeedCorporaAreAccepted) {
  const fs::path root = repo_root() / "fuzz" / "corpus";
  ASSERT_TRUE(fs::is_directory(root)) << root << " is missing";
  for (const auto& [target, parser] : parsers()) {
    const std::vector<fs::path> seeds = files_in(root / target);
    EXPECT_FALSE(seeds.empty()) << "no seeds for " << target;
    for (const fs::path& f : seeds) EXPECT_EQ(outcome(target, f), "") << target << "/" << f.filename().string();
  }
}

TEST(ReliabilityImages, RealJpegsPassTheGuards) {
  const char* root = std::getenv("MOX_DATA");
  const fs::path dir = root ? fs::path(root) / "cifar10-images" : fs::path();
  if (!root || !fs::is_directory(dir)) GTEST_SKIP() << "MOX_DATA/cifar10-images not found";
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().extension() != ".jpg") continue;
    Tensor img = data::decode_image_file(e.path().string());
    EXPECT_EQ(img.shape(), Shape({3, 32, 32})) << e.path();
    ++n;
  }
  EXPECT_GE(n, 100);
}

std::string decode_error(const std::vector<uint8_t>& b) {
  try {
    data::decode_image(b.data(), b.size(), "cut");
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(ReliabilityImages, TruncatedImagesAreRefusedNamingTheirFormat) {
  const fs::path seeds = repo_root() / "fuzz" / "corpus" / "image";
  const std::vector<uint8_t> bmp = bytes_of(seeds / "rgb.bmp"), png = bytes_of(seeds / "rgb.png"),
                             jpg = bytes_of(seeds / "rgb.jpg");
  ASSERT_EQ(decode_error(bmp), "");
  ASSERT_EQ(decode_error(png), "");
  ASSERT_EQ(decode_error(jpg), "");
  // stb alone would decode a BMP missing its last rows as black pixels.
  for (size_t cut = 1; cut <= 20; ++cut) {
    const std::string e = decode_error(std::vector<uint8_t>(bmp.begin(), bmp.end() - long(cut)));
    EXPECT_NE(e.find("truncated BMP"), std::string::npos) << "cut " << cut << ": " << e;
    EXPECT_NE(e.find("'cut'"), std::string::npos) << e;
  }
  // A cut PNG or JPEG is refused with a message naming its own format (stb alone reported
  // its last failure, "Not a PNG" for most cut JPEGs). Below 4 bytes a PNG has no signature.
  for (size_t keep = 0; keep < png.size(); ++keep) {
    const std::string e = decode_error(std::vector<uint8_t>(png.begin(), png.begin() + long(keep)));
    EXPECT_NE(e, "") << "kept " << keep;
    if (keep < 4) continue;
    EXPECT_NE(e.find("PNG"), std::string::npos) << "kept " << keep << ": " << e;
    EXPECT_EQ(e.find("JPEG"), std::string::npos) << "kept " << keep << ": " << e;
  }
  // A cut at or inside a chunk header (the guard's chunk-length check sees no chunk to check):
  // stb reads the missing bytes as zeros and blames an "unknown PNG chunk type".
  const size_t idat = 33 + 12 + (size_t(png[33]) << 24 | size_t(png[34]) << 16 | size_t(png[35]) << 8 | png[36]);
  ASSERT_EQ(std::string(png.begin() + 37, png.begin() + 41), "IDAT");
  EXPECT_EQ(decode_error(std::vector<uint8_t>(png.begin(), png.begin() + long(idat))),
            "cannot decode image 'cut': corrupt or truncated PNG data (the file ends at byte " + std::to_string(idat) +
                ", before its IEND chunk)");
  EXPECT_EQ(decode_error(std::vector<uint8_t>(png.begin(), png.begin() + long(idat + 3))),
            "cannot decode image 'cut': corrupt or truncated PNG data (the file ends at byte " + std::to_string(idat + 3) +
                " inside a chunk header, before its IEND chunk)");
  for (size_t keep = 2; keep < jpg.size(); ++keep) {
    const std::string e = decode_error(std::vector<uint8_t>(jpg.begin(), jpg.begin() + long(keep)));
    EXPECT_NE(e.find("JPEG"), std::string::npos) << "kept " << keep << ": " << e;
    EXPECT_EQ(e.find("PNG"), std::string::npos) << "kept " << keep << ": " << e;
  }
}

}  // namespace
