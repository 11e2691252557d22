// test_datasets.cpp — CIFAR-10 reader, image folder, transforms and DataLoader.
//
// Every test writes its own small files into a fresh temp dir (known pixels and labels);
// the test that reads the real CIFAR-10 skips unless MOX_DATA/cifar10 exists.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "datasets/cifar10.h"
#include "datasets/dataloader.h"
#include "datasets/image_folder.h"
#include "datasets/image_guard.h"
#include "datasets/transforms.h"
#include "tests/temp_dir.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace fs = std::filesystem;
using namespace mox;
using namespace mox::data;
using mox::testing::TempDir;

namespace {

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// The message of the mox::Error that `fn` throws ("" when it throws nothing).
template <typename F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const mox::Error& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------- CIFAR-10

// The pixel a test CIFAR record holds at plane c, row y, column x.
uint8_t cifar_pixel(int64_t record, int c, int y, int x) {
  return uint8_t((record * 7 + c * 85 + y * 3 + x) & 255);
}

std::vector<uint8_t> cifar_records(int64_t n) {
  std::vector<uint8_t> bytes(size_t(n * kCifarRecordBytes));
  for (int64_t r = 0; r < n; ++r) {
    uint8_t* rec = bytes.data() + r * kCifarRecordBytes;
    rec[0] = uint8_t(r % 10);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) rec[1 + c * 1024 + y * 32 + x] = cifar_pixel(r, c, y, x);
  }
  return bytes;
}

TEST(CifarParse, DecodesLabelsAndPlaneOrder) {
  TempDir dir("mox-datasets");
  std::vector<uint8_t> bytes = cifar_records(3);
  // Record 1: a red-only image except one marked pixel at row 5, column 7.
  uint8_t* rec = bytes.data() + kCifarRecordBytes;
  std::fill(rec + 1, rec + 1 + 1024, uint8_t(200));           // R
  std::fill(rec + 1 + 1024, rec + 1 + 3072, uint8_t(0));       // G, B
  rec[1 + 2048 + 5 * 32 + 7] = 99;                             // B at (5, 7)
  write_bytes(dir.path("small.bin"), bytes);

  CifarRecords got = read_cifar10_file(dir.path("small.bin"), 0);
  ASSERT_EQ(got.images.shape(), Shape({3, 3, 32, 32}));
  ASSERT_EQ(got.labels, (std::vector<int64_t>{0, 1, 2}));
  const uint8_t* px = got.images.data<uint8_t>();   // (N, 3, 32, 32)
  auto at = [&](int64_t n, int c, int y, int x) { return px[((n * 3 + c) * 32 + y) * 32 + x]; };
  EXPECT_EQ(at(1, 0, 0, 0), 200);
  EXPECT_EQ(at(1, 0, 31, 31), 200);
  EXPECT_EQ(at(1, 1, 5, 7), 0);
  EXPECT_EQ(at(1, 2, 5, 7), 99);
  EXPECT_EQ(at(1, 2, 7, 5), 0);
  for (int64_t n : {0, 2})
    for (int c = 0; c < 3; ++c) EXPECT_EQ(at(n, c, 9, 30), cifar_pixel(n, c, 9, 30));

  // The memory parser gives the same result.
  CifarRecords mem = parse_cifar10(bytes.data(), bytes.size(), "memory", 3);
  EXPECT_EQ(std::memcmp(mem.images.data<uint8_t>(), px, 3 * 3072), 0);
}

TEST(CifarParse, WrongSizeNamesFileAndBothSizes) {
  TempDir dir("mox-datasets");
  std::vector<uint8_t> bytes = cifar_records(2);
  bytes.resize(bytes.size() + 5);   // 6151 bytes
  write_bytes(dir.path("ragged.bin"), bytes);
  std::string msg = error_of([&] { read_cifar10_file(dir.path("ragged.bin"), 0); });
  EXPECT_NE(msg.find("ragged.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("6151"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3073"), std::string::npos) << msg;

  bytes.resize(2 * 3073);   // whole records, but not the 10,000 of an official file
  write_bytes(dir.path("short.bin"), bytes);
  msg = error_of([&] { read_cifar10_file(dir.path("short.bin")); });
  EXPECT_NE(msg.find("short.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("6146"), std::string::npos) << msg;
  EXPECT_NE(msg.find("30730000"), std::string::npos) << msg;

  EXPECT_THROW(parse_cifar10(bytes.data(), 0, "empty", 0), mox::Error);
}

TEST(CifarParse, LabelAboveNineNamesFileAndRecord) {
  TempDir dir("mox-datasets");
  std::vector<uint8_t> bytes = cifar_records(4);
  bytes[2 * kCifarRecordBytes] = 10;
  write_bytes(dir.path("bad_label.bin"), bytes);
  std::string msg = error_of([&] { read_cifar10_file(dir.path("bad_label.bin"), 0); });
  EXPECT_NE(msg.find("bad_label.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("record 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("label 10"), std::string::npos) << msg;
}

TEST(Cifar10, MissingDirectoryMentionsMakeData) {
  std::string msg = error_of([] { Cifar10("/nonexistent/mox/cifar10", false); });
  EXPECT_NE(msg.find("/nonexistent/mox/cifar10"), std::string::npos) << msg;
  EXPECT_NE(msg.find("make data"), std::string::npos) << msg;
  EXPECT_NE(msg.find("MOX_DATA"), std::string::npos) << msg;
}

TEST(Cifar10, MissingFileIsNamed) {
  TempDir dir("mox-datasets");
  std::string msg = error_of([&] { Cifar10(dir.path(), false); });
  EXPECT_NE(msg.find("test_batch.bin"), std::string::npos) << msg;
  write_bytes(dir.path("data_batch_1.bin"), {});
  msg = error_of([&] { Cifar10(dir.path(), true); });
  EXPECT_NE(msg.find("data_batch_2.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("make data"), std::string::npos) << msg;
}

TEST(Cifar10, ReadsTestSplitWithClassNames) {
  TempDir dir("mox-datasets");
  std::vector<uint8_t> bytes = cifar_records(kCifarRecordsPerFile);
  write_bytes(dir.path("test_batch.bin"), bytes);
  {
    Cifar10 ds(dir.path(), false);
    ASSERT_EQ(ds.size(), 10000);
    EXPECT_EQ(ds.class_names().size(), 10u);
    EXPECT_EQ(ds.class_names()[0], "airplane");   // defaults without batches.meta.txt
    EXPECT_EQ(ds.class_names()[9], "truck");
    Example ex = ds.get(1234);
    EXPECT_EQ(ex.label, 4);
    ASSERT_EQ(ex.image.shape(), Shape({3, 32, 32}));
    EXPECT_EQ(ex.image.dtype(), DType::u8);
    EXPECT_TRUE(ex.image.is_contiguous());
    const uint8_t* px = ex.image.data<uint8_t>();
    EXPECT_EQ(px[2 * 1024 + 31 * 32 + 3], cifar_pixel(1234, 2, 31, 3));
    EXPECT_EQ(px[0 * 1024 + 4 * 32 + 17], cifar_pixel(1234, 0, 4, 17));
    EXPECT_THROW(ds.get(10000), mox::Error);
    EXPECT_THROW(ds.get(-1), mox::Error);
  }
  {
    std::ofstream meta(dir.path("batches.meta.txt"));
    for (int i = 0; i < 10; ++i) meta << "class" << i << "\r\n";
    meta << "\n";
  }
  EXPECT_EQ(Cifar10(dir.path(), false).class_names()[3], "class3");
  {
    std::ofstream meta(dir.path("batches.meta.txt"));
    meta << "only\ntwo\n";
  }
  std::string msg = error_of([&] { Cifar10(dir.path(), false); });
  EXPECT_NE(msg.find("batches.meta.txt"), std::string::npos) << msg;
  fs::remove(dir.path("batches.meta.txt"));

  bytes.pop_back();   // a truncated download
  write_bytes(dir.path("test_batch.bin"), bytes);
  msg = error_of([&] { Cifar10(dir.path(), false); });
  EXPECT_NE(msg.find("test_batch.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("30729999"), std::string::npos) << msg;
  EXPECT_NE(msg.find("30730000"), std::string::npos) << msg;
}

// The real data, when the machine has it.
std::string real_data_dir(const char* sub) {
  const char* root = std::getenv("MOX_DATA");
  if (!root) return "";
  fs::path dir = fs::path(root) / sub;
  return fs::is_directory(dir) ? dir.string() : "";
}

TEST(Cifar10, RealTestBatchIsBalanced) {
  std::string dir = real_data_dir("cifar10");
  if (dir.empty()) GTEST_SKIP() << "set MOX_DATA to a folder holding cifar10/ (make data) to run this";
  Cifar10 ds(dir, false);
  ASSERT_EQ(ds.size(), 10000);
  std::vector<int64_t> counts(10, 0);
  for (int64_t label : ds.labels()) ++counts[size_t(label)];
  for (int c = 0; c < 10; ++c) {
    EXPECT_GE(counts[c], 900) << "class " << c;
    EXPECT_LE(counts[c], 1100) << "class " << c;
  }
}

// ---------------------------------------------------------------- image folder

// A w×h RGB image (row-major, interleaved) with a distinct value in every byte.
std::vector<uint8_t> rgb_pattern(int w, int h, int seed) {
  std::vector<uint8_t> px(size_t(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) px[size_t((y * w + x) * 3 + c)] = uint8_t(seed + 40 * c + 5 * y + x);
  return px;
}

void write_png(const std::string& path, int w, int h, int channels, const std::vector<uint8_t>& px) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_TRUE(stbi_write_png(path.c_str(), w, h, channels, px.data(), w * channels)) << path;
}

void write_bmp(const std::string& path, int w, int h, const std::vector<uint8_t>& px) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_TRUE(stbi_write_bmp(path.c_str(), w, h, 3, px.data())) << path;
}

// Checks a decoded (3, H, W) image against an interleaved RGB pattern.
void expect_planar_equals(const Tensor& image, int w, int h, const std::vector<uint8_t>& px) {
  ASSERT_EQ(image.shape(), Shape({3, h, w}));
  const uint8_t* d = image.data<uint8_t>();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        ASSERT_EQ(d[(c * h + y) * w + x], px[size_t((y * w + x) * 3 + c)])
            << "c=" << c << " y=" << y << " x=" << x;
}

TEST(ImageFolder, LabelsFromSortedClassFoldersAndExactPixels) {
  TempDir dir("mox-datasets");
  std::vector<uint8_t> a = rgb_pattern(5, 4, 10), b = rgb_pattern(5, 4, 90), c = rgb_pattern(3, 2, 7);
  write_png(dir.path("dog/b.png"), 5, 4, 3, b);
  write_png(dir.path("dog/a.png"), 5, 4, 3, a);
  write_bmp(dir.path("cat/x.bmp"), 3, 2, c);
  write_png(dir.path("bird/grey.PNG"), 2, 2, 1, {0, 50, 100, 250});
  write_bytes(dir.path("dog/notes.txt"), {'h', 'i'});   // ignored: not an image
  write_bytes(dir.path("README"), {'h', 'i'});          // ignored: not a folder

  ImageFolder ds(dir.path());
  ASSERT_EQ(ds.class_names(), (std::vector<std::string>{"bird", "cat", "dog"}));
  ASSERT_EQ(ds.size(), 4);
  EXPECT_EQ(fs::path(ds.path(2)).filename(), "a.png");
  EXPECT_EQ(fs::path(ds.path(3)).filename(), "b.png");
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < ds.size(); ++i) labels.push_back(ds.get(i).label);
  EXPECT_EQ(labels, (std::vector<int64_t>{0, 1, 2, 2}));

  expect_planar_equals(ds.get(2).image, 5, 4, a);
  expect_planar_equals(ds.get(3).image, 5, 4, b);
  expect_planar_equals(ds.get(1).image, 3, 2, c);   // BMP: bottom-up rows handled by stb
  Tensor grey = ds.get(0).image;                    // 1 channel → 3 equal planes
  ASSERT_EQ(grey.shape(), Shape({3, 2, 2}));
  const uint8_t* g = grey.data<uint8_t>();
  for (int ch = 0; ch < 3; ++ch) EXPECT_EQ(g[ch * 4 + 3], 250);
  EXPECT_THROW(ds.get(4), mox::Error);
}

TEST(ImageFolder, CorruptFileNamesPath) {
  TempDir dir("mox-datasets");
  std::vector<uint8_t> junk(300);
  for (size_t i = 0; i < junk.size(); ++i) junk[i] = uint8_t(i * 131 + 17);
  write_bytes(dir.path("cls/junk.png"), junk);
  ImageFolder ds(dir.path());
  std::string msg = error_of([&] { ds.get(0); });
  EXPECT_NE(msg.find(dir.path("cls/junk.png")), std::string::npos) << msg;
}

TEST(ImageFolder, TruncatedPngThrows) {
  TempDir dir("mox-datasets");
  write_png(dir.path("full.png"), 16, 16, 3, rgb_pattern(16, 16, 3));
  std::ifstream in(dir.path("full.png"), std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 80u);
  bytes.resize(bytes.size() / 2);
  write_bytes(dir.path("cls/cut.png"), bytes);
  ImageFolder ds(dir.path() + "/");
  std::string msg = error_of([&] { ds.get(0); });
  EXPECT_NE(msg.find("cut.png"), std::string::npos) << msg;
}

void put32le(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put32be(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 3; i >= 0; --i) b.push_back(uint8_t(v >> (8 * i)));
}

// A 24-bit BMP whose headers claim w×h but that carries only a few pixel bytes.
std::vector<uint8_t> bmp_header(uint32_t w, uint32_t h) {
  std::vector<uint8_t> b = {'B', 'M'};
  put32le(b, 54 + 64);   // file size
  put32le(b, 0);         // reserved
  put32le(b, 54);        // pixel data offset
  put32le(b, 40);        // BITMAPINFOHEADER
  put32le(b, w);
  put32le(b, h);
  b.push_back(1); b.push_back(0);    // planes
  b.push_back(24); b.push_back(0);   // bits per pixel
  for (int i = 0; i < 6; ++i) put32le(b, 0);   // compression, sizes, resolution, palette
  b.resize(b.size() + 64, 0x7f);
  return b;
}

TEST(ImageFolder, AbsurdDimensionsRefusedBeforeDecoding) {
  std::vector<uint8_t> bmp = bmp_header(100000, 100000);
  std::string msg = error_of([&] { decode_image(bmp.data(), bmp.size(), "huge.bmp"); });
  EXPECT_NE(msg.find("huge.bmp"), std::string::npos) << msg;
  EXPECT_NE(msg.find("100000x100000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("refusing"), std::string::npos) << msg;

  bmp = bmp_header(20000, 1);   // one side too long
  msg = error_of([&] { decode_image(bmp.data(), bmp.size(), "wide.bmp"); });
  EXPECT_NE(msg.find("20000x1"), std::string::npos) << msg;
  bmp = bmp_header(10000, 10000);   // sides fine, 100 M pixels too many
  msg = error_of([&] { decode_image(bmp.data(), bmp.size(), "big.bmp"); });
  EXPECT_NE(msg.find("10000x10000"), std::string::npos) << msg;

  // A PNG whose IHDR claims 100000×100000 RGB, through a file in a folder.
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  put32be(png, 13);
  for (char ch : {'I', 'H', 'D', 'R'}) png.push_back(uint8_t(ch));
  put32be(png, 100000);
  put32be(png, 100000);
  for (uint8_t v : {8, 2, 0, 0, 0}) png.push_back(v);   // depth 8, RGB, no interlace
  put32be(png, 0);                                       // CRC (not checked by stb)
  TempDir dir("mox-datasets");
  write_bytes(dir.path("cls/huge.png"), png);
  ImageFolder ds(dir.path());
  msg = error_of([&] { ds.get(0); });
  EXPECT_EQ(msg, "image '" + dir.path("cls/huge.png") +
                     "' claims 100000x100000 pixels in its PNG header; refusing to decode (at most 16384 a "
                     "side and 67108864 pixels in all) — corrupt or hostile file?");
}

// ---------------------------------------------------------------- image formats and headers
//
// decode_image tells the format by its magic bytes and reads the header's dimensions itself,
// so its errors name the format and the claimed size even where stb_image's own reason is
// stale (stb keeps only its last reason: a truncated JPEG used to report "Not a PNG") or
// generic (stb's header reader refuses sizes past 2^30 bytes of pixels before mox's cap).

// stb_image_write's callback: appends to the std::vector<uint8_t> at ctx.
void append_bytes(void* ctx, void* data, int size) {
  auto* v = static_cast<std::vector<uint8_t>*>(ctx);
  v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

// A w×h RGB JPEG / PNG of rgb_pattern, encoded in memory.
std::vector<uint8_t> encode_jpeg(int w, int h, int quality) {
  std::vector<uint8_t> out;
  const std::vector<uint8_t> px = rgb_pattern(w, h, 3);
  EXPECT_TRUE(stbi_write_jpg_to_func(append_bytes, &out, w, h, 3, px.data(), quality));
  return out;
}
std::vector<uint8_t> encode_png(int w, int h) {
  std::vector<uint8_t> out;
  const std::vector<uint8_t> px = rgb_pattern(w, h, 1);
  EXPECT_TRUE(stbi_write_png_to_func(append_bytes, &out, w, h, 3, px.data(), w * 3));
  return out;
}

std::string decode_error(const std::vector<uint8_t>& bytes, const std::string& source) {
  return error_of([&] { decode_image(bytes.data(), bytes.size(), source); });
}

// Offset of the first marker 0xFF `m` after the SOI (the encoder's segments are well formed).
size_t jpeg_marker(const std::vector<uint8_t>& j, uint8_t m) {
  for (size_t i = 2; i + 4 <= j.size(); i += 2 + (size_t(j[i + 2]) << 8 | j[i + 3]))
    if (j[i] == 0xFF && j[i + 1] == m) return i;
  ADD_FAILURE() << "marker " << int(m) << " not found";
  return 0;
}

TEST(ImageDecode, CorruptDataGivesStbReasonOnlyWhenItIsAboutTheFormat) {
  // Complete files (end marker present) that stb refuses: its reason is quoted...
  std::vector<uint8_t> jpg = encode_jpeg(24, 16, 90);
  std::vector<uint8_t> bad = jpg;
  bad[jpeg_marker(jpg, 0xDA) + 4] = 0;   // scan header: 0 components
  EXPECT_EQ(decode_error(bad, "sos.jpg"), "cannot decode image 'sos.jpg': corrupt or truncated JPEG data (stb_image: Corrupt JPEG)");
  std::vector<uint8_t> png = encode_png(8, 8);
  ASSERT_EQ(decode_error(png, "z.png"), "");
  ASSERT_EQ(std::string(png.begin() + 37, png.begin() + 41), "IDAT");
  png[41] = 0x7F;   // the zlib header of the image data
  EXPECT_EQ(decode_error(png, "z.png"), "cannot decode image 'z.png': corrupt or truncated PNG data (stb_image: Corrupt PNG)");
  // ...but where stb fails without recording a reason (here a DQT segment of length 3 after
  // the scan), its last reason is another format's ("Not a PNG", from its PNG test) and is
  // not repeated.
  bad = jpg;
  bad.insert(bad.end() - 2, {0xFF, 0xDB, 0x00, 0x03, 0x00});
  EXPECT_EQ(decode_error(bad, "dqt.jpg"), "cannot decode image 'dqt.jpg': corrupt or truncated JPEG data (stb_image gave no reason)");
}

TEST(ImageDecode, TruncatedJpegNamesJpeg) {
  const std::vector<uint8_t> jpg = encode_jpeg(24, 16, 90);
  ASSERT_EQ(decode_error(jpg, "full.jpg"), "");
  const size_t sos = jpeg_marker(jpg, 0xDA);
  ASSERT_GT(sos, 100u);

  // Cut inside the entropy-coded data, through a file in a class folder.
  TempDir dir("mox-datasets");
  write_bytes(dir.path("cat/cut.jpg"), std::vector<uint8_t>(jpg.begin(), jpg.begin() + long(sos + 40)));
  ImageFolder ds(dir.path());
  EXPECT_EQ(error_of([&] { ds.get(0); }), "cannot decode image '" + dir.path("cat/cut.jpg") +
                                              "': corrupt or truncated JPEG data (the file ends at byte " +
                                              std::to_string(sos + 40) + ", before its end-of-image marker)");

  // Every cut: refused, and the message names JPEG and no other format — the header
  // ("corrupt or truncated JPEG header") up to the end of the frame header, the data after
  // (where stb alone said "Not a PNG" for most cuts).
  const size_t sof = jpeg_marker(jpg, 0xC0), sof_end = sof + 2 + (size_t(jpg[sof + 2]) << 8 | jpg[sof + 3]);
  int header = 0, data = 0;
  for (size_t keep = 2; keep < jpg.size(); ++keep) {
    const std::string e = decode_error(std::vector<uint8_t>(jpg.begin(), jpg.begin() + long(keep)), "cut.jpg");
    ASSERT_NE(e, "") << "kept " << keep;
    EXPECT_NE(e.find("JPEG"), std::string::npos) << "kept " << keep << ": " << e;
    EXPECT_EQ(e.find("PNG"), std::string::npos) << "kept " << keep << ": " << e;
    EXPECT_EQ(e.find("BMP"), std::string::npos) << "kept " << keep << ": " << e;
    if (e.find("cannot read the header of image 'cut.jpg': corrupt or truncated JPEG header") == 0) ++header;
    else if (e.find("cannot decode image 'cut.jpg': corrupt or truncated JPEG data (") == 0) ++data;
    else ADD_FAILURE() << "kept " << keep << ": " << e;
    // stb's header reader stops after the frame header: up to there the header is cut (stb
    // reads a missing last byte, a quantisation table id, as 0, which is valid).
    if (keep + 1 < sof_end) {
      EXPECT_EQ(e.find("cannot read the header"), 0u) << "kept " << keep << ": " << e;
    } else if (keep >= sof_end) {
      EXPECT_EQ(e, "cannot decode image 'cut.jpg': corrupt or truncated JPEG data (the file ends at byte " +
                       std::to_string(keep) + ", before its end-of-image marker)");
    }
  }
  EXPECT_GT(header, 0);
  EXPECT_GT(data, 0);
  EXPECT_EQ(decode_error({0xFF}, "one.jpg"),
            "cannot decode image 'one.jpg': not an image format mox reads (PNG, JPEG or BMP): first byte 0xff");
}

// A PNG of an IHDR claiming w×h RGB, an IDAT chunk claiming `idat_claim` bytes and holding
// `idat_bytes`, and IEND.
std::vector<uint8_t> png_with_ihdr(uint32_t w, uint32_t h, uint32_t idat_claim, size_t idat_bytes) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  put32be(png, 13);
  for (char ch : {'I', 'H', 'D', 'R'}) png.push_back(uint8_t(ch));
  put32be(png, w);
  put32be(png, h);
  for (uint8_t v : {8, 2, 0, 0, 0}) png.push_back(v);   // depth 8, RGB, no interlace
  put32be(png, 0);                                       // CRC (not checked by stb)
  put32be(png, idat_claim);
  for (char ch : {'I', 'D', 'A', 'T'}) png.push_back(uint8_t(ch));
  for (size_t i = 0; i < idat_bytes; ++i) png.push_back(uint8_t(0x78 + i));
  put32be(png, 0);
  put32be(png, 0);
  for (char ch : {'I', 'E', 'N', 'D'}) png.push_back(uint8_t(ch));
  put32be(png, 0);
  return png;
}

TEST(ImageDecode, HugePngHeaderNamesDimensions) {
  // 100000×100000 with a 2-byte IDAT: past stb's own limit (its header reader refused it with
  // "Image not of any known type, or corrupt"), so only mox's header read can name the size.
  const std::string cap = "; refusing to decode (at most 16384 a side and 67108864 pixels in all) — corrupt or hostile file?";
  std::vector<uint8_t> png = png_with_ihdr(100000, 100000, 2, 2);
  EXPECT_EQ(decode_error(png, "cat/huge.png"), "image 'cat/huge.png' claims 100000x100000 pixels in its PNG header" + cap);
  png = png_with_ihdr(4294967295u, 1, 2, 2);   // the largest width a PNG header can state
  EXPECT_EQ(decode_error(png, "w.png"), "image 'w.png' claims 4294967295x1 pixels in its PNG header" + cap);
  png = png_with_ihdr(20000, 20000, 2, 2);   // within stb's limit: refused by the same cap
  EXPECT_EQ(decode_error(png, "big.png"), "image 'big.png' claims 20000x20000 pixels in its PNG header" + cap);
  // The guard still runs first: an IDAT claiming more bytes than the file holds is refused
  // for that (stb would grow its buffer to the claim), whatever the header says.
  png = png_with_ihdr(100000, 100000, 1000000000, 2);
  const std::string e = decode_error(png, "idat.png");
  EXPECT_EQ(e.rfind("cannot decode image 'idat.png': PNG chunk 'IDAT' at byte 33 claims 1000000000 bytes", 0), 0u) << e;
}

TEST(ImageDecode, HugeJpegHeaderNamesDimensions) {
  // A valid JPEG whose frame header is patched to the largest size a JPEG can state
  // (65535 a side: SOF holds 16-bit dimensions, so 100000x100000 cannot be written).
  std::vector<uint8_t> jpg = encode_jpeg(16, 16, 90);
  const size_t sof = jpeg_marker(jpg, 0xC0);
  auto patch = [&](uint16_t w, uint16_t h) {
    std::vector<uint8_t> b = jpg;
    b[sof + 5] = uint8_t(h >> 8), b[sof + 6] = uint8_t(h);
    b[sof + 7] = uint8_t(w >> 8), b[sof + 8] = uint8_t(w);
    return b;
  };
  const std::string cap = "; refusing to decode (at most 16384 a side and 67108864 pixels in all) — corrupt or hostile file?";
  EXPECT_EQ(decode_error(patch(65535, 65535), "cat/huge.jpg"),
            "image 'cat/huge.jpg' claims 65535x65535 pixels in its JPEG header" + cap);
  EXPECT_EQ(decode_error(patch(30000, 40000), "wide.jpg"), "image 'wide.jpg' claims 30000x40000 pixels in its JPEG header" + cap);

  // A hand-built progressive frame header behind an APP0 segment and fill bytes.
  std::vector<uint8_t> hand = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 'J', 'F', 0xFF, 0xFF,
                               0xC2, 0x00, 0x0B, 0x08, 0xEA, 0x60, 0xEA, 0x60, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9};
  EXPECT_EQ(decode_error(hand, "prog.jpg"), "image 'prog.jpg' claims 60000x60000 pixels in its JPEG header" + cap);

  // The guard's Huffman-table check still comes first (stb's header reader overflows on it).
  std::vector<uint8_t> dht = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x13, 0x00};
  for (int i = 0; i < 16; ++i) dht.push_back(i == 15 ? 21 : 16);   // 15 * 16 + 21 = 261 codes
  dht.insert(dht.end(), {0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9});
  const std::string e = decode_error(dht, "dht.jpg");
  EXPECT_EQ(e.rfind("cannot decode image 'dht.jpg': corrupt JPEG (a Huffman table declares 261 codes; at most 256 are possible)", 0), 0u) << e;

  // A frame type stb does not decode is named as such.
  std::vector<uint8_t> lossless = {0xFF, 0xD8, 0xFF, 0xC3, 0x00, 0x0B, 0x08, 0x00, 0x10, 0x00, 0x10, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xD9};
  EXPECT_EQ(decode_error(lossless, "ll.jpg"),
            "cannot read the header of image 'll.jpg': a lossless JPEG (SOF3 frame), which mox's decoder (stb_image) "
            "does not support; it reads baseline and progressive JPEGs");
}

// stb 2.27 decodes a scan with whatever its table memory holds when the scan names a Huffman
// table no DHT segment defined (fuzz finding, an out-of-bounds read); the guard refuses the
// scan, checking only the tables stb's decoder would read.
TEST(ImageDecode, ScanWithUndefinedHuffmanTableIsRefused) {
  const std::vector<uint8_t> jpg = encode_jpeg(24, 16, 90);   // DHT: DC 0, AC 0, DC 1, AC 1
  const size_t sos = jpeg_marker(jpg, 0xDA);
  ASSERT_EQ(jpg[sos + 5], 1);      // first component: id 1,
  ASSERT_EQ(jpg[sos + 6], 0x00);   // DC table 0, AC table 0
  auto with_tables = [&](uint8_t tables) {
    std::vector<uint8_t> b = jpg;
    b[sos + 6] = tables;
    return b;
  };
  EXPECT_EQ(decode_error(with_tables(0x11), "ok.jpg"), "");   // tables 1 are defined too
  EXPECT_EQ(decode_error(with_tables(0x20), "dc.jpg"),
            "cannot decode image 'dc.jpg': corrupt JPEG (scan 1 decodes component 1 with the DC Huffman table 2, "
            "which no DHT segment before it defines)");
  EXPECT_EQ(decode_error(with_tables(0x03), "ac.jpg"),
            "cannot decode image 'ac.jpg': corrupt JPEG (scan 1 decodes component 1 with the AC Huffman table 3, "
            "which no DHT segment before it defines)");
  // A table defined only after the scan does not count.
  std::vector<uint8_t> late = with_tables(0x02);
  const size_t dht = jpeg_marker(jpg, 0xC4);
  const std::vector<uint8_t> ac1_as_ac2 = [&] {   // the encoder's DHT segment, every table renamed to AC 2
    std::vector<uint8_t> seg(jpg.begin() + long(dht), jpg.begin() + long(dht + 2 + (size_t(jpg[dht + 2]) << 8 | jpg[dht + 3])));
    for (size_t p = 4; p < seg.size();) {
      size_t codes = 0;
      for (size_t c = 1; c <= 16; ++c) codes += seg[p + c];
      seg[p] = 0x12;
      p += 17 + codes;
    }
    return seg;
  }();
  late.insert(late.end() - 2, ac1_as_ac2.begin(), ac1_as_ac2.end());
  EXPECT_NE(decode_error(late, "late.jpg").find("AC Huffman table 2, which no DHT segment before it defines"), std::string::npos);
  std::vector<uint8_t> early = with_tables(0x02);
  early.insert(early.begin() + long(sos), ac1_as_ac2.begin(), ac1_as_ac2.end());
  EXPECT_EQ(decode_error(early, "early.jpg").find("which no DHT segment"), std::string::npos);

  // Progressive frames: a first DC scan reads only its DC tables, a DC refinement scan
  // (Ah > 0) none, an AC scan (Ss > 0) only its AC table.
  const std::vector<uint8_t> head = {0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x0B, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00,
                                     0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00};
  auto progressive = [&](uint8_t tables, uint8_t ss, uint8_t se, uint8_t ah_al) {
    std::vector<uint8_t> b = head;
    b.insert(b.end(), {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, tables, ss, se, ah_al, 0x00, 0x00, 0xFF, 0xD9});
    return decode_error(b, "p.jpg");
  };
  EXPECT_EQ(progressive(0x03, 0, 0, 0x00).find("which no DHT segment"), std::string::npos);   // DC 0 defined, AC 3 unused
  EXPECT_EQ(progressive(0x33, 0, 0, 0x10).find("which no DHT segment"), std::string::npos);   // refinement: no table
  EXPECT_EQ(progressive(0x10, 0, 0, 0x00),
            "cannot decode image 'p.jpg': corrupt JPEG (scan 1 decodes component 1 with the DC Huffman table 1, "
            "which no DHT segment before it defines)");
  EXPECT_EQ(progressive(0x00, 1, 63, 0x00),
            "cannot decode image 'p.jpg': corrupt JPEG (scan 1 decodes component 1 with the AC Huffman table 0, "
            "which no DHT segment before it defines)");
}

// The markers of a progressive JPEG: a W x H frame of components {id, h, v}, DC and AC
// Huffman tables 0, then one scan per entry — the component ids it names, an AC scan (1..63)
// or a DC one — each with a zero byte of entropy-coded data (stb reads zero bits past it),
// then EOI.
struct ScanOf {
  std::vector<uint8_t> ids;
  bool ac;
};
std::vector<uint8_t> progressive_jpeg(uint16_t w, uint16_t h, const std::vector<std::array<uint8_t, 3>>& components,
                                      const std::vector<ScanOf>& scans) {
  std::vector<uint8_t> b = {0xFF, 0xD8, 0xFF, 0xC2, 0x00, uint8_t(8 + 3 * components.size()), 0x08, uint8_t(h >> 8),
                            uint8_t(h), uint8_t(w >> 8), uint8_t(w), uint8_t(components.size())};
  for (const auto& [id, hs, vs] : components) b.insert(b.end(), {id, uint8_t(hs << 4 | vs), 0x00});
  b.insert(b.end(), {0xFF, 0xC4, 0x00, 0x26, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00,
                     0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00});
  for (const ScanOf& scan : scans) {
    b.insert(b.end(), {0xFF, 0xDA, 0x00, uint8_t(6 + 2 * scan.ids.size()), uint8_t(scan.ids.size())});
    for (uint8_t id : scan.ids) b.insert(b.end(), {id, 0x00});
    b.insert(b.end(), {uint8_t(scan.ac ? 1 : 0), uint8_t(scan.ac ? 63 : 0), 0x00, 0x00});
  }
  b.insert(b.end(), {0xFF, 0xD9});
  return b;
}

std::string structure_error(const std::vector<uint8_t>& jpeg, const std::string& source) {
  return error_of([&] { check_image_structure(jpeg.data(), jpeg.size(), source); });
}

// libjpeg's progressive scripts (jcparam.c, jpeg_simple_progression): the generic one (RGB,
// CMYK) walks every block 6 times, the YCbCr one 6 times for luma and 4 for each chroma.
std::vector<ScanOf> libjpeg_script(int ncomponents, bool ycbcr) {
  std::vector<uint8_t> all;
  for (int c = 1; c <= ncomponents; ++c) all.push_back(uint8_t(c));
  std::vector<ScanOf> s = {{all, false}};
  if (ycbcr) {              // Y AC 1-5, Cr AC, Cb AC, Y AC 6-63, Y AC refine, DC refine, Cb, Cr, Y refine
    for (uint8_t id : {1, 3, 2, 1, 1}) s.push_back({{id}, true});
    s.push_back({all, false});
    for (uint8_t id : {3, 2, 1}) s.push_back({{id}, true});
  } else {                  // per component AC 1-5, 6-63, refine; DC refine; per component AC refine
    for (uint8_t id : all) s.insert(s.end(), {{{id}, true}, {{id}, true}, {{id}, true}});
    s.push_back({all, false});
    for (uint8_t id : all) s.push_back({{id}, true});
  }
  return s;
}

TEST(ImageDecode, JpegScansBeyondTheDecodingBudgetAreRefused) {
  // 17 x 17 at 4:2:0 (Y 2x2, Cb and Cr 1x1): 2 x 2 MCUs of 16 x 16 pixels, so the DC scan of
  // all three components walks 4·(4 + 1 + 1) = 24 blocks (padding included) — the frame's
  // blocks — and an AC scan of Y alone ceil(17/8)^2 = 9. The budget, 8 x 24 = 192, holds the
  // DC scan and 18 Y scans (186 blocks); the 19th makes 195.
  const std::vector<std::array<uint8_t, 3>> yuv420 = {{1, 2, 2}, {2, 1, 1}, {3, 1, 1}};
  auto dc_then_y = [&](int y_scans, uint16_t side) {
    std::vector<ScanOf> scans = {{{1, 2, 3}, false}};
    scans.insert(scans.end(), size_t(y_scans), ScanOf{{1}, true});
    return progressive_jpeg(side, side, yuv420, scans);
  };
  EXPECT_EQ(structure_error(dc_then_y(18, 17), "ok.jpg"), "");
  EXPECT_EQ(decode_error(dc_then_y(19, 17), "many.jpg"),
            "cannot decode image 'many.jpg': its JPEG scans ask for more decoding work than mox allows (by scan 20 "
            "they walk 195 blocks of 8x8 samples, more than 8 times the 24 of the 17x17 frame; libjpeg's progressive "
            "scripts need at most 6) — corrupt or hostile file?");
  // The same at 8191 x 8191 (512 x 512 MCUs: 1,572,864 blocks; Y alone 1024^2): 10 Y scans fit.
  EXPECT_EQ(structure_error(dc_then_y(10, 8191), "big.jpg"), "");
  EXPECT_NE(structure_error(dc_then_y(11, 8191), "big.jpg").find("by scan 12 they walk 13107200 blocks"), std::string::npos);
  // A 1-pixel-wide image pays per block like any other: 2,048 blocks, a DC and 7 AC scans fit.
  auto grey_column = [&](int ac_scans) {
    std::vector<ScanOf> scans = {{{1}, false}};
    scans.insert(scans.end(), size_t(ac_scans), ScanOf{{1}, true});
    return progressive_jpeg(1, 16384, {{1, 1, 1}}, scans);
  };
  EXPECT_EQ(structure_error(grey_column(7), "column.jpg"), "");
  EXPECT_NE(structure_error(grey_column(8), "column.jpg").find("by scan 9 they walk 18432 blocks"), std::string::npos);
  // libjpeg's scripts pass at the largest size allowed: YCbCr (4:4:4), RGB and CMYK.
  for (const auto& [n, ycbcr] : {std::pair{3, true}, std::pair{3, false}, std::pair{4, false}}) {
    std::vector<std::array<uint8_t, 3>> full;
    for (int c = 1; c <= n; ++c) full.push_back({uint8_t(c), 1, 1});
    EXPECT_EQ(structure_error(progressive_jpeg(8192, 8192, full, libjpeg_script(n, ycbcr)), "real.jpg"), "")
        << n << " components, " << (ycbcr ? "YCbCr" : "generic") << " script";
  }
}

TEST(ImageDecode, UnknownOrUnsupportedFormatIsNamed) {
  TempDir dir("mox-datasets");
  write_bytes(dir.path("cat/page.jpg"), {'<', '!', 'D', 'O', 'C', 'T', 'Y', 'P', 'E', ' ', 'h'});
  write_bytes(dir.path("cat/junk.png"), {0x00, 0x01, 0xfe, 0x7f, 0x80});
  write_bytes(dir.path("cat/empty.bmp"), {});
  ImageFolder ds(dir.path());
  ASSERT_EQ(ds.size(), 3);   // empty.bmp, junk.png, page.jpg
  EXPECT_EQ(error_of([&] { ds.get(0); }), "cannot decode image '" + dir.path("cat/empty.bmp") + "': the file is empty (0 bytes)");
  EXPECT_EQ(error_of([&] { ds.get(1); }), "cannot decode image '" + dir.path("cat/junk.png") +
                                              "': not an image format mox reads (PNG, JPEG or BMP): first bytes 0x00 0x01 0xfe 0x7f 0x80");
  EXPECT_EQ(error_of([&] { ds.get(2); }),
            "cannot decode image '" + dir.path("cat/page.jpg") +
                "': not an image format mox reads (PNG, JPEG or BMP): first bytes 0x3c 0x21 0x44 0x4f 0x43 0x54 0x59 0x50 (\"<!DOCTYP\")");

  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  const std::string not_read = " data, not a format mox reads (PNG, JPEG or BMP; convert the file first)";
  EXPECT_EQ(decode_error(bytes(std::string("GIF89a\x02\x00\x02\x00", 10)), "a.gif"), "cannot decode image 'a.gif': it is GIF" + not_read);
  EXPECT_EQ(decode_error(bytes("P6\n2 2\n255\n"), "a.ppm"), "cannot decode image 'a.ppm': it is PNM (PBM/PGM/PPM)" + not_read);
  EXPECT_EQ(decode_error(bytes("P5 2 2 255 xxxx"), "a.pgm"), "cannot decode image 'a.pgm': it is PNM (PBM/PGM/PPM)" + not_read);
  EXPECT_EQ(decode_error(bytes(std::string("II*\0\x08\0\0\0", 8)), "a.tif"), "cannot decode image 'a.tif': it is TIFF" + not_read);
  EXPECT_EQ(decode_error(bytes(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)), "a.webp"), "cannot decode image 'a.webp': it is WebP" + not_read);
  EXPECT_EQ(decode_error(bytes(std::string("\0\0\0\x18" "ftypheic\0\0\0\0", 16)), "a.heic"),
            "cannot decode image 'a.heic': it is HEIF/HEIC" + not_read);
  // stb's JPEG test accepts fill bytes before the SOI; so does the sniffing.
  std::vector<uint8_t> jpg = encode_jpeg(8, 8, 90);
  jpg.insert(jpg.begin(), 0xFF);
  EXPECT_EQ(decode_error(jpg, "fill.jpg"), "");
}

TEST(ImageFolder, EmptyOrMissingRootIsAnError) {
  TempDir dir("mox-datasets");
  std::string msg = error_of([&] { ImageFolder ds(dir.path()); });
  EXPECT_NE(msg.find("no class folders"), std::string::npos) << msg;
  msg = error_of([&] { ImageFolder ds(dir.path("absent")); });
  EXPECT_NE(msg.find("absent"), std::string::npos) << msg;
  fs::create_directories(dir.path("empty_class"));
  msg = error_of([&] { ImageFolder ds(dir.path()); });
  EXPECT_NE(msg.find("empty_class"), std::string::npos) << msg;
}

TEST(ImageFolder, RealCifarImages) {
  std::string dir = real_data_dir("cifar10-images");
  if (dir.empty()) GTEST_SKIP() << "set MOX_DATA to a folder holding cifar10-images/ to run this";
  auto ds = std::make_shared<ImageFolder>(dir);
  ASSERT_EQ(ds->size(), 500);
  ASSERT_EQ(ds->class_names().size(), 10u);
  EXPECT_EQ(ds->class_names()[0], "airplane");
  LoaderOptions opt;
  opt.batch_size = 50;
  DataLoader loader(ds, opt);
  loader.start_epoch(0);
  Batch b;
  int64_t seen = 0;
  while (loader.next(b)) {
    ASSERT_EQ(b.images.shape(), Shape({50, 3, 32, 32}));
    seen += b.labels.size(0);
  }
  EXPECT_EQ(seen, 500);
}

// ---------------------------------------------------------------- transforms

// A u8 (C, H, W) tensor with the given values.
Tensor u8_image(int64_t c, int64_t h, int64_t w, const std::vector<uint8_t>& values) {
  Tensor t = empty({c, h, w}, DType::u8);
  std::memcpy(t.data<uint8_t>(), values.data(), values.size());
  return t;
}

// Identity normalisation scaled back to 0..255 so outputs compare as pixel values.
Normalize pixel_scale() { return {{0.0}, {1.0 / 255.0}}; }

std::vector<float> floats(const Tensor& t) {
  const float* p = t.data<float>();
  return std::vector<float>(p, p + t.numel());
}

TEST(Transform, NormalizeHandChecked) {
  Tensor img = u8_image(3, 1, 2, {0, 255, 51, 102, 128, 64});
  NormalizeTable table({{0.5, 0.25, 0.0}, {0.5, 0.25, 2.0}});
  std::vector<float> out = floats(transform(img, {}, table));
  std::vector<float> want = {-1.0f, 1.0f, (0.2f - 0.25f) / 0.25f, (0.4f - 0.25f) / 0.25f,
                             128 / 255.0f / 2.0f, 64 / 255.0f / 2.0f};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(out[i], want[i], 1e-6) << i;
  // No mean/std: plain x / 255; one entry: every channel.
  EXPECT_FLOAT_EQ(floats(transform(img, {}, NormalizeTable({})))[4], 128 / 255.0f);
  EXPECT_FLOAT_EQ(floats(transform(img, {}, NormalizeTable({{0.5}, {0.5}})))[1], 1.0f);
}

TEST(Transform, NormalizeTableRejectsBadSettings) {
  EXPECT_THROW(NormalizeTable({{0.5, 0.5}, {0.5}}), mox::Error);
  EXPECT_THROW(NormalizeTable({{0.5}, {0.0}}), mox::Error);
  NormalizeTable three({{0, 0, 0}, {1, 1, 1}});
  std::string msg = error_of([&] { transform(u8_image(1, 1, 1, {7}), {}, three); });
  EXPECT_NE(msg.find("1 channels"), std::string::npos) << msg;
}

TEST(Transform, FlipMirrorsColumns) {
  Tensor img = u8_image(1, 2, 3, {1, 2, 3, 4, 5, 6});
  AugmentDraw flip;
  flip.flip = true;
  EXPECT_EQ(floats(transform(img, flip, NormalizeTable(pixel_scale()))),
            (std::vector<float>{3, 2, 1, 6, 5, 4}));
}

TEST(Transform, CropShiftsWithZeroPadding) {
  Tensor img = u8_image(2, 3, 3, {1, 2, 3, 4, 5, 6, 7, 8, 9,   //
                                  11, 12, 13, 14, 15, 16, 17, 18, 19});
  NormalizeTable px(pixel_scale());
  AugmentDraw d;
  d.dy = 1;    // window starts one row down: the last row is padding
  d.dx = -1;   // and one column left: the first column is padding
  EXPECT_EQ(floats(transform(img, d, px)),
            (std::vector<float>{0, 4, 5, 0, 7, 8, 0, 0, 0,   //
                                0, 14, 15, 0, 17, 18, 0, 0, 0}));
  d.flip = true;   // crop first, then mirror the cropped window
  EXPECT_EQ(floats(transform(img, d, px)),
            (std::vector<float>{5, 4, 0, 8, 7, 0, 0, 0, 0,   //
                                15, 14, 0, 18, 17, 0, 0, 0, 0}));
  d = {};
  d.dx = 5;   // a shift past the edge leaves only padding
  EXPECT_EQ(floats(transform(img, d, px)), std::vector<float>(18, 0.0f));
  // Padding is normalised black, like torchvision's pad-then-normalise.
  EXPECT_FLOAT_EQ(floats(transform(img, d, NormalizeTable({{0.5}, {0.25}})))[0], -2.0f);
}

TEST(Transform, DrawAugmentIsSeededAndCoversRange) {
  Augment aug;
  aug.crop_padding = 2;
  aug.hflip = true;
  Generator g1(42), g2(42);
  std::set<int64_t> dys;
  int flips = 0;
  for (int i = 0; i < 2000; ++i) {
    AugmentDraw a = draw_augment(aug, g1), b = draw_augment(aug, g2);
    ASSERT_EQ(a.dy, b.dy);
    ASSERT_EQ(a.dx, b.dx);
    ASSERT_EQ(a.flip, b.flip);
    ASSERT_GE(a.dy, -2);
    ASSERT_LE(a.dy, 2);
    ASSERT_GE(a.dx, -2);
    ASSERT_LE(a.dx, 2);
    dys.insert(a.dy);
    flips += a.flip;
  }
  EXPECT_EQ(dys.size(), 5u);
  EXPECT_GT(flips, 850);
  EXPECT_LT(flips, 1150);
  Generator g3(0);
  AugmentDraw none = draw_augment(Augment{}, g3);
  EXPECT_EQ(none.dy, 0);
  EXPECT_FALSE(none.flip);
  EXPECT_EQ(g3.offset(), 0u);   // no augmentation draws nothing
}

// ---------------------------------------------------------------- DataLoader

// n examples of shape (C, H, W); example i has label i and every pixel (i * 37 + k) % 256
// where k is the pixel's flat index, so batches can be checked exactly.
class PatternDataset : public Dataset {
 public:
  PatternDataset(int64_t n, int64_t c = 3, int64_t h = 4, int64_t w = 4, int64_t fail_at = -1,
                 int64_t odd_size_at = -1)
      : n_(n), c_(c), h_(h), w_(w), fail_at_(fail_at), odd_size_at_(odd_size_at) {}
  int64_t size() const override { return n_; }
  Example get(int64_t i) const override {
    ++gets;
    if (i == fail_at_) MOX_FAIL("PatternDataset: example ", i, " is corrupt");
    int64_t w = i == odd_size_at_ ? w_ + 1 : w_;
    Tensor img = empty({c_, h_, w}, DType::u8);
    uint8_t* p = img.data<uint8_t>();
    for (int64_t k = 0; k < img.numel(); ++k) p[k] = uint8_t((i * 37 + k) % 256);
    return {img, i};
  }
  std::vector<std::string> class_names() const override { return {"pattern"}; }
  mutable std::atomic<int64_t> gets{0};

 private:
  int64_t n_, c_, h_, w_, fail_at_, odd_size_at_;
};

std::vector<int64_t> labels_of(const Batch& b) {
  const int64_t* p = b.labels.data<int64_t>();
  return std::vector<int64_t>(p, p + b.labels.numel());
}

// All batches of one epoch.
std::vector<Batch> run_epoch(DataLoader& loader, int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

std::vector<int64_t> epoch_labels(DataLoader& loader, int64_t epoch) {
  std::vector<int64_t> all;
  for (const Batch& b : run_epoch(loader, epoch)) {
    std::vector<int64_t> l = labels_of(b);
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

void expect_bitwise_equal(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].images.shape(), b[i].images.shape()) << "batch " << i;
    EXPECT_EQ(labels_of(a[i]), labels_of(b[i])) << "batch " << i;
    EXPECT_EQ(std::memcmp(a[i].images.data<float>(), b[i].images.data<float>(), a[i].images.nbytes()), 0)
        << "batch " << i;
  }
}

TEST(DataLoader, ShuffleSeesEverySampleOncePerEpoch) {
  auto ds = std::make_shared<PatternDataset>(103);
  LoaderOptions opt;
  opt.batch_size = 10;
  opt.shuffle = true;
  opt.seed = 7;
  DataLoader loader(ds, opt);
  std::vector<Batch> batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 11u);
  EXPECT_EQ(batches[0].images.shape(), Shape({10, 3, 4, 4}));
  EXPECT_EQ(batches[0].images.dtype(), DType::f32);
  EXPECT_EQ(batches[0].labels.dtype(), DType::i64);
  EXPECT_EQ(batches[10].images.shape(), Shape({3, 3, 4, 4}));
  std::vector<int64_t> seen = epoch_labels(loader, 0);
  std::vector<int64_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 103; ++i) ASSERT_EQ(sorted[size_t(i)], i);
  std::vector<int64_t> identity(sorted);
  EXPECT_NE(seen, identity) << "shuffle left the order unchanged";
  // Pixels follow their label: the image is the dataset's example, x / 255.
  const float* px = batches[2].images.data<float>();
  int64_t label = labels_of(batches[2])[1];
  EXPECT_FLOAT_EQ(px[48 + 5], float(((label * 37 + 5) % 256) / 255.0));
}

TEST(DataLoader, SameSeedSameOrderOtherEpochOrSeedDiffers) {
  auto ds = std::make_shared<PatternDataset>(64);
  LoaderOptions opt;
  opt.batch_size = 8;
  opt.shuffle = true;
  opt.seed = 1234;
  DataLoader a(ds, opt), b(ds, opt);
  EXPECT_EQ(epoch_labels(a, 3), epoch_labels(b, 3));
  EXPECT_NE(epoch_labels(a, 3), epoch_labels(a, 4));
  opt.seed = 1235;
  DataLoader c(ds, opt);
  EXPECT_NE(epoch_labels(a, 3), epoch_labels(c, 3));
  opt.shuffle = false;
  DataLoader d(ds, opt);
  std::vector<int64_t> in_order = epoch_labels(d, 5);
  for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(in_order[size_t(i)], i);
}

TEST(DataLoader, DropLastBatchCounts) {
  auto ds = std::make_shared<PatternDataset>(103);
  LoaderOptions opt;
  opt.batch_size = 10;
  DataLoader keep(ds, opt);
  EXPECT_EQ(keep.batches_per_epoch(), 11);
  EXPECT_EQ(run_epoch(keep, 0).size(), 11u);
  opt.drop_last = true;
  DataLoader drop(ds, opt);
  EXPECT_EQ(drop.batches_per_epoch(), 10);
  std::vector<Batch> batches = run_epoch(drop, 0);
  ASSERT_EQ(batches.size(), 10u);
  for (const Batch& b : batches) EXPECT_EQ(b.labels.numel(), 10);
  opt.batch_size = 200;   // drop_last with fewer samples than a batch: an empty epoch
  EXPECT_THROW(DataLoader(ds, opt), mox::Error);
}

TEST(DataLoader, ShardingCoversDatasetWithEqualBatchCounts) {
  auto ds = std::make_shared<PatternDataset>(103);
  LoaderOptions opt;
  opt.batch_size = 8;
  opt.shuffle = true;
  opt.seed = 99;
  opt.world_size = 2;
  std::multiset<int64_t> all;
  std::vector<int64_t> batch_counts;
  for (int64_t rank = 0; rank < 2; ++rank) {
    opt.rank = rank;
    DataLoader loader(ds, opt);
    EXPECT_EQ(loader.samples_per_epoch(), 52);
    std::vector<Batch> batches = run_epoch(loader, 2);
    batch_counts.push_back(int64_t(batches.size()));
    EXPECT_EQ(int64_t(batches.size()), loader.batches_per_epoch());
    for (const Batch& b : batches)
      for (int64_t l : labels_of(b)) all.insert(l);
  }
  EXPECT_EQ(batch_counts[0], batch_counts[1]);
  EXPECT_EQ(all.size(), 104u);   // 103 padded to a multiple of 2
  for (int64_t i = 0; i < 103; ++i) EXPECT_GE(all.count(i), 1u) << i;
  opt.rank = 2;
  EXPECT_THROW(DataLoader(ds, opt), mox::Error);
}

TEST(DataLoader, PrefetchGivesBitwiseIdenticalBatches) {
  auto ds = std::make_shared<PatternDataset>(77, 3, 6, 5);
  LoaderOptions opt;
  opt.batch_size = 9;
  opt.shuffle = true;
  opt.seed = 5;
  opt.normalize = {{0.49, 0.48, 0.45}, {0.25, 0.24, 0.26}};
  opt.augment.crop_padding = 2;
  opt.augment.hflip = true;
  opt.prefetch = 0;
  DataLoader sync(ds, opt);
  opt.prefetch = 3;
  DataLoader async(ds, opt);
  for (int64_t epoch : {0, 1}) expect_bitwise_equal(run_epoch(sync, epoch), run_epoch(async, epoch));
  // Augmentation actually changes something, and differs between epochs.
  LoaderOptions plain = opt;
  plain.augment = {};
  plain.prefetch = 0;
  DataLoader no_aug(ds, plain);
  std::vector<Batch> a = run_epoch(async, 0), n = run_epoch(no_aug, 0);
  EXPECT_NE(std::memcmp(a[0].images.data<float>(), n[0].images.data<float>(), a[0].images.nbytes()), 0);
}

TEST(DataLoader, RestoreContinuesMidEpochExactly) {
  auto ds = std::make_shared<PatternDataset>(50);
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.shuffle = true;
  opt.seed = 11;
  opt.augment.crop_padding = 1;
  opt.augment.hflip = true;
  DataLoader full(ds, opt);
  std::vector<Batch> whole = run_epoch(full, 6);

  DataLoader first(ds, opt);
  first.start_epoch(6);
  Batch b;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(first.next(b));
  LoaderState st = first.state();
  EXPECT_EQ(st.epoch, 6);
  EXPECT_EQ(st.batch, 5);

  DataLoader resumed(ds, opt);
  resumed.restore(st.epoch, st.batch);
  std::vector<Batch> rest;
  while (resumed.next(b)) rest.push_back(b);
  expect_bitwise_equal(std::vector<Batch>(whole.begin() + 5, whole.end()), rest);
  EXPECT_EQ(resumed.state().batch, resumed.batches_per_epoch());
  EXPECT_THROW(resumed.restore(6, resumed.batches_per_epoch() + 1), mox::Error);
}

TEST(DataLoader, WorkerExceptionReachesCaller) {
  for (int64_t prefetch : {0, 2}) {
    auto ds = std::make_shared<PatternDataset>(40, 3, 4, 4, /*fail_at=*/25);
    LoaderOptions opt;
    opt.batch_size = 10;
    opt.prefetch = prefetch;
    DataLoader loader(ds, opt);
    loader.start_epoch(0);
    Batch b;
    ASSERT_TRUE(loader.next(b));
    ASSERT_TRUE(loader.next(b));
    std::string msg = error_of([&] { loader.next(b); });
    EXPECT_NE(msg.find("example 25 is corrupt"), std::string::npos) << "prefetch " << prefetch << ": " << msg;
    EXPECT_EQ(loader.state().batch, 2);
    msg = error_of([&] { loader.next(b); });   // retrying the batch fails the same way
    EXPECT_NE(msg.find("example 25"), std::string::npos) << msg;
    loader.restore(0, 3);   // skipping it works
    ASSERT_TRUE(loader.next(b));
    EXPECT_EQ(labels_of(b)[0], 30);
    EXPECT_FALSE(loader.next(b));
  }
}

TEST(DataLoader, MixedImageSizesNameTheExample) {
  auto ds = std::make_shared<PatternDataset>(12, 3, 4, 4, -1, /*odd_size_at=*/6);
  LoaderOptions opt;
  opt.batch_size = 4;
  DataLoader loader(ds, opt);
  loader.start_epoch(0);
  Batch b;
  ASSERT_TRUE(loader.next(b));
  std::string msg = error_of([&] { loader.next(b); });
  EXPECT_NE(msg.find("example 6"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 4, 5]"), std::string::npos) << msg;
}

TEST(DataLoader, AbandoningAnEpochStopsTheWorker) {
  auto ds = std::make_shared<PatternDataset>(200);
  LoaderOptions opt;
  opt.batch_size = 2;
  opt.prefetch = 4;
  opt.shuffle = true;
  {
    DataLoader loader(ds, opt);
    loader.start_epoch(0);
    Batch b;
    ASSERT_TRUE(loader.next(b));
    std::vector<int64_t> second_epoch = epoch_labels(loader, 1);   // restarts midway
    EXPECT_EQ(second_epoch.size(), 200u);
    loader.start_epoch(2);
    ASSERT_TRUE(loader.next(b));
  }   // destroyed with a full queue and a blocked worker: must join, not hang
  // The queue is bounded: a loader that is never read builds at most `prefetch` batches
  // (plus one in flight).
  auto counted = std::make_shared<PatternDataset>(200);
  DataLoader idle(counted, opt);
  idle.start_epoch(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(counted->gets.load(), (opt.prefetch + 1) * opt.batch_size);
}

TEST(DataLoader, MisuseIsReported) {
  auto ds = std::make_shared<PatternDataset>(10);
  LoaderOptions opt;
  opt.batch_size = 4;
  DataLoader loader(ds, opt);
  Batch b;
  EXPECT_THROW(loader.next(b), mox::Error);   // before start_epoch
  EXPECT_THROW(loader.start_epoch(-1), mox::Error);
  opt.batch_size = 0;
  EXPECT_THROW(DataLoader(ds, opt), mox::Error);
  opt.batch_size = 4;
  EXPECT_THROW(DataLoader(nullptr, opt), mox::Error);
  EXPECT_THROW(DataLoader(std::make_shared<PatternDataset>(0), opt), mox::Error);
  opt.normalize = {{0.5, 0.5}, {0.2, 0.2}};   // 2 entries for 3-channel images
  DataLoader wrong(ds, opt);
  wrong.start_epoch(0);
  std::string msg = error_of([&] { wrong.next(b); });
  EXPECT_NE(msg.find("3 channels"), std::string::npos) << msg;
}

}  // namespace
