// test_safetensors.cpp — the safetensors reader and writer (nn/safetensors.h).
//
// Round trips (every dtype, views, metadata, order), files assembled byte by byte in the
// test (so compatibility does not rest on our own writer), one test per kind of corrupt
// file (each checks the message names the file and the key), hostile-input robustness of
// the parser, and the atomic-write guarantees. Every test works in its own temp directory
// (tests/temp_dir.h), removed afterwards. No Python needed.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nn/safetensors.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

using namespace mox;
using namespace mox::nn;
namespace fs = std::filesystem;

namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_.path(name); }
  std::vector<std::string> dir_entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_.path())) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  mox::testing::TempDir dir_{"mox-safetensors"};
};

std::string u64_le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char(uint8_t(v >> (8 * i)));
  return s;
}

// Little-endian bytes of floats, as a data buffer.
std::string f32_bytes(std::initializer_list<float> values) {
  std::string s;
  for (float f : values) s.append(reinterpret_cast<const char*>(&f), 4);
  return s;
}

// [u64 N][header, N bytes][data] — a file assembled by hand.
std::string assemble(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << "cannot write " << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The mox::Error message of loading `path` ("" and a test failure if it loads).
std::string load_error(const std::string& path) {
  try {
    load_safetensors(path);
  } catch (const mox::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "load_safetensors('" << path << "') did not throw";
  return "";
}

// Same bytes in storage (both tensors made contiguous first).
bool same_bytes(const Tensor& a, const Tensor& b) {
  Tensor ca = raw::contiguous(a), cb = raw::contiguous(b);
  return ca.nbytes() == cb.nbytes() && std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

}  // namespace

// ============================================================================ round trips

TEST_F(SafetensorsTest, RoundTripsEveryDType) {
  struct Case { const char* name; DType dtype; Shape shape; std::vector<double> values; };
  // values exactly representable in their dtype, including signs, extremes and subnormals
  const std::vector<Case> cases = {
      {"f32", DType::f32, {2, 3}, {1.5, -2.25, 0.0, 0x1.fffffep127, 0x1p-149, -7.0}},
      {"f64", DType::f64, {3}, {0.1, -1.0e300, 0x1p-1074}},
      {"f16", DType::f16, {2, 2}, {1.0, -2.5, 65504.0, 0x1p-24}},
      {"bf16", DType::bf16, {4}, {1.0, -2.5, 0x1.fep127, 0x1p-133}},
      {"i32", DType::i32, {2, 2}, {-2147483648.0, -1.0, 0.0, 2147483647.0}},
      {"i64", DType::i64, {3}, {-9007199254740992.0, 0.0, 9007199254740992.0}},
      {"u8", DType::u8, {4}, {0.0, 1.0, 128.0, 255.0}},
      {"bool", DType::boolean, {2, 2}, {1.0, 0.0, 0.0, 1.0}},
  };
  NamedTensors in;
  for (const Case& c : cases) in.emplace_back(c.name, from_doubles(c.values, c.shape, c.dtype));
  save_safetensors(path("all.safetensors"), in);

  SafetensorsFile out = load_safetensors(path("all.safetensors"));
  ASSERT_EQ(out.tensors.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    const auto& [name, t] = out.tensors[i];
    EXPECT_EQ(name, cases[i].name);
    EXPECT_EQ(t.dtype(), cases[i].dtype);
    EXPECT_EQ(t.shape(), cases[i].shape);
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_EQ(t.to_vector<double>(), cases[i].values);
    EXPECT_TRUE(same_bytes(t, in[i].second));
  }
  EXPECT_TRUE(out.metadata.empty());
}

TEST_F(SafetensorsTest, RoundTripsIntegerExtremes) {
  const int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  save_safetensors(path("ints.safetensors"),
                   {{"i64", from_vector<int64_t>({lo, -1, hi}, {3})},
                    {"i32", from_vector<int32_t>({INT32_MIN, INT32_MAX}, {2})}});
  SafetensorsFile out = load_safetensors(path("ints.safetensors"));
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].second.to_vector<int64_t>(), (std::vector<int64_t>{lo, -1, hi}));
  EXPECT_EQ(out.tensors[1].second.to_vector<int32_t>(), (std::vector<int32_t>{INT32_MIN, INT32_MAX}));
}

TEST_F(SafetensorsTest, RoundTripsScalarsAndEmptyTensors) {
  save_safetensors(path("edge.safetensors"), {{"scalar", scalar_tensor(7.0)},
                                              {"empty", zeros({0, 3})},
                                              {"after", from_vector<float>({4.f}, {1})}});
  SafetensorsFile out = load_safetensors(path("edge.safetensors"));
  ASSERT_EQ(out.tensors.size(), 3u);
  EXPECT_EQ(out.tensors[0].first, "scalar");
  EXPECT_EQ(out.tensors[0].second.shape(), Shape{});
  EXPECT_EQ(out.tensors[0].second.item<float>(), 7.f);
  EXPECT_EQ(out.tensors[1].first, "empty");
  EXPECT_EQ(out.tensors[1].second.shape(), (Shape{0, 3}));
  EXPECT_EQ(out.tensors[2].second.to_vector<float>(), std::vector<float>{4.f});
}

TEST_F(SafetensorsTest, SavesNonContiguousViewsByValue) {
  Tensor base = from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});   // (2, 3)
  Tensor transposed = raw::transpose(base, 0, 1);                 // (3, 2), strides (1, 3)
  Tensor column = raw::narrow(base, 1, 1, 2);                     // (2, 2), offset 1
  ASSERT_FALSE(transposed.is_contiguous());
  save_safetensors(path("views.safetensors"), {{"t", transposed}, {"n", column}});

  SafetensorsFile out = load_safetensors(path("views.safetensors"));
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].second.shape(), (Shape{3, 2}));
  EXPECT_EQ(out.tensors[0].second.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(out.tensors[1].second.shape(), (Shape{2, 2}));
  EXPECT_EQ(out.tensors[1].second.to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
}

TEST_F(SafetensorsTest, RoundTripsMetadataAndKeepsOrder) {
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "1200"}, {"note", "naïve ✓"}};
  save_safetensors(path("meta.safetensors"),
                   {{"z", zeros({2})}, {"a", ones({1})}, {"m.weight", zeros({3})}}, meta);
  SafetensorsFile out = load_safetensors(path("meta.safetensors"));
  EXPECT_EQ(out.metadata, meta);
  ASSERT_EQ(out.tensors.size(), 3u);
  EXPECT_EQ(out.tensors[0].first, "z");
  EXPECT_EQ(out.tensors[1].first, "a");
  EXPECT_EQ(out.tensors[2].first, "m.weight");
}

// Our writer's bytes, read back without our reader: header length, alignment, JSON fields.
TEST_F(SafetensorsTest, WriterEmitsTheDocumentedLayout) {
  save_safetensors(path("layout.safetensors"),
                   {{"w", from_vector<float>({1.f, -2.5f, 3.f}, {3})},
                    {"b", from_doubles({1.0}, {1}, DType::bf16)}},
                   {{"k", "v"}});
  const std::string bytes = read_bytes(path("layout.safetensors"));
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u) << "data should start 8-byte aligned";
  ASSERT_EQ(bytes.size(), 8 + n + 12 + 2);
  auto header = nlohmann::json::parse(bytes.substr(8, n));   // trailing spaces are fine JSON
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  EXPECT_EQ(header["w"]["dtype"], "F32");
  EXPECT_EQ(header["w"]["shape"], nlohmann::json::array({3}));
  EXPECT_EQ(header["w"]["data_offsets"], nlohmann::json::array({0, 12}));
  EXPECT_EQ(header["b"]["dtype"], "BF16");
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json::array({12, 14}));
  EXPECT_EQ(bytes.substr(8 + n, 12), f32_bytes({1.f, -2.5f, 3.f}));
}

// ============================================================================ hand-made files

TEST_F(SafetensorsTest, LoadsAHandWrittenFile) {
  write_bytes(path("hand.safetensors"),
              assemble(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32_bytes({1.0f, -2.5f})));
  SafetensorsFile out = load_safetensors(path("hand.safetensors"));
  ASSERT_EQ(out.tensors.size(), 1u);
  EXPECT_EQ(out.tensors[0].first, "a");
  EXPECT_EQ(out.tensors[0].second.dtype(), DType::f32);
  EXPECT_EQ(out.tensors[0].second.shape(), Shape{2});
  EXPECT_EQ(out.tensors[0].second.to_vector<float>(), (std::vector<float>{1.0f, -2.5f}));
}

// Space-padded header, metadata, keys out of offset order, a 2-D I64 and a zero-size tensor.
TEST_F(SafetensorsTest, LoadsAHandWrittenFileInOffsetOrder) {
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("second":{"dtype":"I64","shape":[1,2],"data_offsets":[8,24]},)"
                       R"("nothing":{"dtype":"U8","shape":[0],"data_offsets":[24,24]},)"
                       R"("first":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append(5, ' ');
  std::string data = f32_bytes({0.5f, 2.0f});
  for (int64_t v : {int64_t(-3), int64_t(1) << 40}) data.append(reinterpret_cast<const char*>(&v), 8);
  write_bytes(path("padded.safetensors"), assemble(header, data));

  SafetensorsFile out = load_safetensors(path("padded.safetensors"));
  EXPECT_EQ(out.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(out.tensors.size(), 3u);
  EXPECT_EQ(out.tensors[0].first, "first");
  EXPECT_EQ(out.tensors[0].second.to_vector<float>(), (std::vector<float>{0.5f, 2.0f}));
  EXPECT_EQ(out.tensors[1].first, "second");
  EXPECT_EQ(out.tensors[1].second.shape(), (Shape{1, 2}));
  EXPECT_EQ(out.tensors[1].second.to_vector<int64_t>(), (std::vector<int64_t>{-3, int64_t(1) << 40}));
  EXPECT_EQ(out.tensors[2].first, "nothing");
  EXPECT_EQ(out.tensors[2].second.numel(), 0);
}

TEST_F(SafetensorsTest, LoadsAFileWithNoTensors) {
  write_bytes(path("empty.safetensors"), assemble("{}", ""));
  SafetensorsFile out = load_safetensors(path("empty.safetensors"));
  EXPECT_TRUE(out.tensors.empty());
  EXPECT_TRUE(out.metadata.empty());
}

// ============================================================================ corrupt files

TEST_F(SafetensorsTest, RejectsAFileShorterThanTheLengthPrefix) {
  write_bytes(path("short.safetensors"), "\x05\x00\x00");
  std::string msg = load_error(path("short.safetensors"));
  EXPECT_CONTAINS(msg, "short.safetensors");
  EXPECT_CONTAINS(msg, "8-byte header length");
}

TEST_F(SafetensorsTest, RejectsTruncatedData) {
  std::string full = assemble(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32_bytes({1.f, 2.f}));
  write_bytes(path("cut.safetensors"), full.substr(0, full.size() - 3));
  std::string msg = load_error(path("cut.safetensors"));
  EXPECT_CONTAINS(msg, "cut.safetensors");
  EXPECT_CONTAINS(msg, "'a'");
  EXPECT_CONTAINS(msg, "past the end of the data buffer");
}

TEST_F(SafetensorsTest, RejectsAHeaderLengthOverTheCap) {
  write_bytes(path("huge.safetensors"), u64_le(200'000'000) + "{}");
  std::string msg = load_error(path("huge.safetensors"));
  EXPECT_CONTAINS(msg, "huge.safetensors");
  EXPECT_CONTAINS(msg, "200000000");
  EXPECT_CONTAINS(msg, "limit");
}

TEST_F(SafetensorsTest, RejectsAHeaderLengthPastTheEndOfFile) {
  write_bytes(path("past.safetensors"), u64_le(1000) + "{}");
  std::string msg = load_error(path("past.safetensors"));
  EXPECT_CONTAINS(msg, "past.safetensors");
  EXPECT_CONTAINS(msg, "past the end of the file");
}

TEST_F(SafetensorsTest, RejectsAHeaderThatIsNotJson) {
  write_bytes(path("bad.safetensors"), assemble(R"({"a":{"dtype":"F32",)", ""));
  std::string msg = load_error(path("bad.safetensors"));
  EXPECT_CONTAINS(msg, "bad.safetensors");
  EXPECT_CONTAINS(msg, "not valid JSON");
}

TEST_F(SafetensorsTest, RejectsAHeaderThatIsNotAnObject) {
  write_bytes(path("array.safetensors"), assemble("[1, 2]", ""));
  std::string msg = load_error(path("array.safetensors"));
  EXPECT_CONTAINS(msg, "array.safetensors");
  EXPECT_CONTAINS(msg, "must be a JSON object");
}

TEST_F(SafetensorsTest, RejectsDuplicateKeys) {
  write_bytes(path("dup.safetensors"),
              assemble(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                       R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"));
  std::string msg = load_error(path("dup.safetensors"));
  EXPECT_CONTAINS(msg, "dup.safetensors");
  EXPECT_CONTAINS(msg, "duplicate key \"a\"");
}

TEST_F(SafetensorsTest, RejectsHeadersNestedTooDeeply) {
  write_bytes(path("deep.safetensors"), assemble(R"({"a":{"shape":[[[1]]]}})", ""));
  std::string msg = load_error(path("deep.safetensors"));
  EXPECT_CONTAINS(msg, "deep.safetensors");
  EXPECT_CONTAINS(msg, "nests deeper");
}

TEST_F(SafetensorsTest, RejectsEntriesWithMissingOrMistypedFields) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"a":{"dtype":"F32","shape":[2]}})", "missing \"data_offsets\""},
      {R"({"a":{"shape":[2],"data_offsets":[0,8]}})", "missing \"dtype\""},
      {R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", "missing \"shape\""},
      {R"({"a":[1, 2]})", "expected an object"},
      {R"({"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", "\"dtype\" must be a string"},
      {R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", "\"shape\" must be an array"},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "must not be negative"},
      {R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", "must be an integer, got 2.5"},
      {R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", "must be an integer, got string"},
      {R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]}})", "at most 8"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", "must be [begin, end]"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":"0-8"}})", "must be [begin, end]"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "begin > end"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", "must not be negative"},
  };
  for (const auto& [header, expected] : cases) {
    SCOPED_TRACE(header);
    write_bytes(path("field.safetensors"), assemble(header, f32_bytes({1.f, 2.f})));
    std::string msg = load_error(path("field.safetensors"));
    EXPECT_CONTAINS(msg, "field.safetensors");
    EXPECT_CONTAINS(msg, "tensor 'a'");
    EXPECT_CONTAINS(msg, expected);
  }
}

TEST_F(SafetensorsTest, RejectsAnUnknownDType) {
  write_bytes(path("f8.safetensors"),
              assemble(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab"));
  std::string msg = load_error(path("f8.safetensors"));
  EXPECT_CONTAINS(msg, "f8.safetensors");
  EXPECT_CONTAINS(msg, "tensor 'w'");
  EXPECT_CONTAINS(msg, "unknown dtype 'F8_E4M3'");
}

TEST_F(SafetensorsTest, RejectsAShapeWhoseByteSizeOverflows) {
  write_bytes(path("overflow.safetensors"),
              assemble(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", ""));
  std::string msg = load_error(path("overflow.safetensors"));
  EXPECT_CONTAINS(msg, "overflow.safetensors");
  EXPECT_CONTAINS(msg, "tensor 'w'");
  EXPECT_CONTAINS(msg, "overflows int64");
}

TEST_F(SafetensorsTest, RejectsASizeMismatchBetweenOffsetsAndShape) {
  // F32 [3] needs 12 bytes; the offsets give 8.
  write_bytes(path("size.safetensors"),
              assemble(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f32_bytes({1.f, 2.f})));
  std::string msg = load_error(path("size.safetensors"));
  EXPECT_CONTAINS(msg, "size.safetensors");
  EXPECT_CONTAINS(msg, "tensor 'w'");
  EXPECT_CONTAINS(msg, "hold 8 bytes");
  EXPECT_CONTAINS(msg, "needs 12 bytes");
}

TEST_F(SafetensorsTest, RejectsADTypeMismatchBetweenOffsetsAndShape) {
  // The same 8 bytes declared as F64 [2] would need 16.
  write_bytes(path("dtype.safetensors"),
              assemble(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", f32_bytes({1.f, 2.f})));
  std::string msg = load_error(path("dtype.safetensors"));
  EXPECT_CONTAINS(msg, "tensor 'w'");
  EXPECT_CONTAINS(msg, "of F64 needs 16 bytes");
}

TEST_F(SafetensorsTest, RejectsOffsetsPastTheDataBuffer) {
  write_bytes(path("beyond.safetensors"),
              assemble(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", f32_bytes({1.f, 2.f})));
  std::string msg = load_error(path("beyond.safetensors"));
  EXPECT_CONTAINS(msg, "beyond.safetensors");
  EXPECT_CONTAINS(msg, "tensor 'w'");
  EXPECT_CONTAINS(msg, "reach past the end of the data buffer, which has 8 bytes");
}

TEST_F(SafetensorsTest, RejectsOverlappingTensors) {
  write_bytes(path("overlap.safetensors"),
              assemble(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       f32_bytes({1.f, 2.f, 3.f})));
  std::string msg = load_error(path("overlap.safetensors"));
  EXPECT_CONTAINS(msg, "overlap.safetensors");
  EXPECT_CONTAINS(msg, "tensor 'b'");
  EXPECT_CONTAINS(msg, "overlaps tensor 'a'");
}

TEST_F(SafetensorsTest, RejectsAHoleBetweenTensors) {
  write_bytes(path("hole.safetensors"),
              assemble(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                       f32_bytes({1.f, 2.f, 3.f})));
  std::string msg = load_error(path("hole.safetensors"));
  EXPECT_CONTAINS(msg, "hole.safetensors");
  EXPECT_CONTAINS(msg, "bytes [4, 8)");
  EXPECT_CONTAINS(msg, "hole before tensor 'b'");
}

TEST_F(SafetensorsTest, RejectsTrailingBytes) {
  write_bytes(path("trail.safetensors"),
              assemble(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32_bytes({1.f, 2.f}) + "xyz"));
  std::string msg = load_error(path("trail.safetensors"));
  EXPECT_CONTAINS(msg, "trail.safetensors");
  EXPECT_CONTAINS(msg, "3 trailing bytes after tensor 'a'");
}

TEST_F(SafetensorsTest, RejectsMetadataThatIsNotAnObjectOfStrings) {
  write_bytes(path("meta1.safetensors"), assemble(R"({"__metadata__":["pt"]})", ""));
  std::string msg = load_error(path("meta1.safetensors"));
  EXPECT_CONTAINS(msg, "meta1.safetensors");
  EXPECT_CONTAINS(msg, "\"__metadata__\" must be an object of strings");

  write_bytes(path("meta2.safetensors"), assemble(R"({"__metadata__":{"step":1200}})", ""));
  msg = load_error(path("meta2.safetensors"));
  EXPECT_CONTAINS(msg, "meta2.safetensors");
  EXPECT_CONTAINS(msg, "key 'step' must map to a string");
}

TEST_F(SafetensorsTest, RejectsBoolBytesOtherThanZeroOrOne) {
  write_bytes(path("bool.safetensors"),
              assemble(R"({"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x02", 3)));
  std::string msg = load_error(path("bool.safetensors"));
  EXPECT_CONTAINS(msg, "tensor 'mask'");
  EXPECT_CONTAINS(msg, "byte 2 at element 2");
}

TEST_F(SafetensorsTest, RejectsAMissingFileOrADirectory) {
  std::string msg = load_error(path("absent.safetensors"));
  EXPECT_CONTAINS(msg, path("absent.safetensors"));
  EXPECT_CONTAINS(msg, std::strerror(ENOENT));
  msg = load_error(dir_.path());
  EXPECT_CONTAINS(msg, "not a regular file");
}

// Every prefix of a valid file and many single-byte corruptions of it must either parse or
// throw mox::Error — never crash, never read past the buffer (each run gets an exactly
// sized heap copy, so AddressSanitizer builds catch over-reads), never throw anything else.
TEST_F(SafetensorsTest, ParserSurvivesTruncationsAndByteFlips) {
  save_safetensors(path("seed.safetensors"),
                   {{"w", from_vector<float>({1.f, 2.f, 3.f, 4.f}, {2, 2})},
                    {"n", from_vector<int64_t>({7}, {1})},
                    {"m", from_doubles({1.0, 0.0}, {2}, DType::boolean)}},
                   {{"k", "v"}});
  const std::string seed = read_bytes(path("seed.safetensors"));
  auto try_parse = [](const std::string& bytes) {
    std::vector<uint8_t> copy(bytes.begin(), bytes.end());
    try {
      parse_safetensors(copy.data(), copy.size(), "fuzz");
      return true;
    } catch (const mox::Error& e) {
      EXPECT_CONTAINS(std::string(e.what()), "fuzz");
      return false;
    }
  };
  ASSERT_TRUE(try_parse(seed));
  for (size_t n = 0; n < seed.size(); ++n) EXPECT_FALSE(try_parse(seed.substr(0, n))) << "prefix " << n;
  for (size_t i = 0; i < seed.size(); ++i) {
    for (char c : {'\x00', '\x01', '\x80', '\xff', '"', '{', ']', '9', '-', ' '}) {
      std::string bytes = seed;
      bytes[i] = c;
      try_parse(bytes);
    }
  }
}

// ============================================================================ atomic writes

TEST_F(SafetensorsTest, SavingOverAFileReplacesItAndLeavesNoTempFile) {
  const std::string p = path("model.safetensors");
  save_safetensors(p, {{"w", from_vector<float>({1.f}, {1})}});
  save_safetensors(p, {{"w", from_vector<float>({2.f, 3.f}, {2})}, {"b", zeros({1})}});
  SafetensorsFile out = load_safetensors(p);
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].second.to_vector<float>(), (std::vector<float>{2.f, 3.f}));
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsTest, ARejectedSaveKeepsTheOldFile) {
  const std::string p = path("model.safetensors");
  save_safetensors(p, {{"w", from_vector<float>({1.f}, {1})}});
  const std::string before = read_bytes(p);

  EXPECT_THROW(save_safetensors(p, {{"w", zeros({1})}, {"w", zeros({2})}}), mox::Error);
  EXPECT_THROW(save_safetensors(p, {{"w", zeros({1})}, {"u", Tensor()}}), mox::Error);
  EXPECT_THROW(save_safetensors(p, {{"__metadata__", zeros({1})}}), mox::Error);
  EXPECT_EQ(read_bytes(p), before);
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsTest, ADuplicateNameErrorNamesTheTensor) {
  try {
    save_safetensors(path("dup.safetensors"), {{"fc.weight", zeros({1})}, {"fc.weight", zeros({1})}});
    ADD_FAILURE() << "duplicate names were accepted";
  } catch (const mox::Error& e) {
    EXPECT_CONTAINS(std::string(e.what()), "duplicate tensor name 'fc.weight'");
    EXPECT_CONTAINS(std::string(e.what()), "dup.safetensors");
  }
}

TEST_F(SafetensorsTest, SavingIntoAMissingDirectoryThrowsNamingThePath) {
  const std::string p = path("no/such/dir/model.safetensors");
  try {
    save_safetensors(p, {{"w", zeros({1})}});
    ADD_FAILURE() << "saving into a missing directory did not throw";
  } catch (const mox::Error& e) {
    EXPECT_CONTAINS(std::string(e.what()), p);
    EXPECT_CONTAINS(std::string(e.what()), std::strerror(ENOENT));
  }
}

// The rename fails only after all the bytes are written: the temp file must still go.
TEST_F(SafetensorsTest, AFailedRenameRemovesTheTempFile) {
  fs::create_directory(path("taken"));
  write_bytes(path("taken/inside"), "x");   // a non-empty directory cannot be renamed over
  try {
    save_safetensors(path("taken"), {{"w", zeros({4})}});
    ADD_FAILURE() << "saving over a directory did not throw";
  } catch (const mox::Error& e) {
    EXPECT_CONTAINS(std::string(e.what()), path("taken"));
    EXPECT_CONTAINS(std::string(e.what()), "cannot rename");
  }
  EXPECT_EQ(dir_entries(), std::vector<std::string>{"taken"});
}
