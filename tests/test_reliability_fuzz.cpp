// test_reliability_fuzz.cpp — what the fuzzers (fuzz/) found stays fixed, and the seeds
// they start from stay valid.
//
// tests/data/fuzz/<target>/ holds every input a fuzz target ever crashed on (one file per
// finding, named after the bug). Each is fed to the same parser as its target: it must
// give a result or a mox::Error — under `make test SANITIZE=1` any memory error or UB in
// the path is fatal too — and where the fix made it an error, the message is checked.
// fuzz/corpus/<target>/ (valid files written by fuzz/make_seeds.cpp) must all be accepted,
// so the image guards refuse no valid file; with MOX_DATA set, so must the 500 real JPEGs
// of cifar10-images/. Plus the image guards' own cases: truncated BMP/PNG are refused.
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
#include "fuzz/checkpoint_model.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"

namespace {

namespace fs = std::filesystem;
using namespace mox;

// The repository root: two levels above the test binary (build/bin, build-san/bin).
fs::path repo_root() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path(".") : exe.parent_path().parent_path().parent_path();
}

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
    {"image/png-idat-length-past-end-2gib-alloc.png", "PNG chunk 'IDAT'"},
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

TEST(ReliabilityImages, TruncatedBmpAndPngAreRefused) {
  const fs::path seeds = repo_root() / "fuzz" / "corpus" / "image";
  const std::vector<uint8_t> bmp = bytes_of(seeds / "rgb.bmp"), png = bytes_of(seeds / "rgb.png");
  ASSERT_EQ(decode_error(bmp), "");
  ASSERT_EQ(decode_error(png), "");
  // stb alone would decode a BMP missing its last rows as black pixels.
  for (size_t cut = 1; cut <= 20; ++cut) {
    const std::string e = decode_error(std::vector<uint8_t>(bmp.begin(), bmp.end() - long(cut)));
    EXPECT_NE(e.find("truncated BMP"), std::string::npos) << "cut " << cut << ": " << e;
    EXPECT_NE(e.find("'cut'"), std::string::npos) << e;
  }
  for (size_t keep = 0; keep < png.size(); ++keep)
    EXPECT_NE(decode_error(std::vector<uint8_t>(png.begin(), png.begin() + long(keep))), "") << "kept " << keep;
}

}  // namespace
