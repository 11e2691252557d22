// test_text.cpp — CharTokenizer, ByteTokenizer, their JSON form, and TextDataset.
//
// Every test writes its own small corpus into a fresh temp dir; the one test that reads the
// real tiny-Shakespeare skips unless MOX_DATA/tinyshakespeare/input.txt exists.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "datasets/text.h"
#include "datasets/tokenizer.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"

namespace fs = std::filesystem;
using namespace mox;
using namespace mox::data;
using mox::testing::expect_error;
using mox::testing::TempDir;

namespace {

// Writes `text` to a file called `name` in `dir` and returns its path.
std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string p = dir.path(name);
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

const std::string kUnicode = "h\xC3\xA9llo \xE2\x80\x94 \xE2\x98\x83";   // "héllo — ☃"

}  // namespace

// ---------------------------------------------------------------- tokenizers

TEST(Tokenizer, CharVocabularyIsSortedDistinctCodePoints) {
  CharTokenizer tok = CharTokenizer::from_text("hello world");
  EXPECT_EQ(tok.vocab_size(), 8);   // ' ' d e h l o r w
  EXPECT_EQ(tok.chars(), (std::vector<char32_t>{' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w'}));
  EXPECT_EQ(tok.encode("hello"), (std::vector<int64_t>{3, 2, 4, 4, 5}));
  EXPECT_EQ(tok.decode({7, 5, 6, 4, 1}), "world");
  EXPECT_EQ(tok.describe(), "char-level, 8 symbols");
}

TEST(Tokenizer, CharRoundTripsMultiByteUtf8) {
  CharTokenizer tok = CharTokenizer::from_text(kUnicode);
  // h é l o ' ' — ☃: 7 distinct code points; é (2 bytes), — and ☃ (3 bytes) are one id each.
  EXPECT_EQ(tok.chars(), (std::vector<char32_t>{' ', 'h', 'l', 'o', 0xE9, 0x2014, 0x2603}));
  std::vector<int64_t> ids = tok.encode(kUnicode);
  EXPECT_EQ(ids.size(), 9u);
  EXPECT_EQ(tok.decode(ids), kUnicode);
  // A 4-byte sequence (U+1F600) too.
  const std::string emoji = "a\xF0\x9F\x98\x80" "b";
  CharTokenizer tok4 = CharTokenizer::from_text(emoji);
  EXPECT_EQ(tok4.chars().back(), char32_t(0x1F600));
  EXPECT_EQ(tok4.decode(tok4.encode(emoji)), emoji);
}

TEST(Tokenizer, ByteRoundTripsAnyBytes) {
  ByteTokenizer tok;
  const std::string bytes = std::string("a\xFF\x00\xC3", 4) + kUnicode;
  std::vector<int64_t> ids = tok.encode(bytes);
  ASSERT_EQ(ids.size(), bytes.size());
  EXPECT_EQ(ids[1], 255);
  EXPECT_EQ(ids[2], 0);
  EXPECT_EQ(tok.decode(ids), bytes);
  EXPECT_EQ(tok.vocab_size(), 256);
}

TEST(Tokenizer, BadIdNamesIdAndVocabularySize) {
  CharTokenizer tok = CharTokenizer::from_text("abc");
  expect_error([&] { tok.decode({0, 1, 3}); }, {"id 3", "position 2", "vocabulary of 3"});
  expect_error([&] { tok.decode({-1}); }, {"id -1", "vocabulary of 3"});
  expect_error([&] { ByteTokenizer().decode({256}); }, {"id 256", "vocabulary of 256"});
}

TEST(Tokenizer, UnknownCharacterNamesItsPrintableFormOffsetAndTheByteTokenizer) {
  CharTokenizer tok = CharTokenizer::from_text("hello ");
  expect_error([&] { tok.encode("hello h\xC3\xA9llo"); },
               {"'\xC3\xA9' (U+00E9)", "byte offset 7", "vocabulary of 5", "byte-level tokenizer"});
  expect_error([&] { tok.encode("hello\n"); }, {"'\\n' (U+000A)", "byte offset 5"});
  expect_error([&] { tok.encode("he\x07"); }, {"U+0007", "byte offset 2"});
}

TEST(Tokenizer, InvalidUtf8IsFoundAtItsOffset) {
  EXPECT_EQ(first_invalid_utf8(kUnicode), -1);
  EXPECT_EQ(first_invalid_utf8("ab\xFF"), 2);
  EXPECT_EQ(first_invalid_utf8("ab\x80" "c"), 2);             // stray continuation byte
  EXPECT_EQ(first_invalid_utf8("abc\xE2\x98"), 3);            // truncated 3-byte sequence
  EXPECT_EQ(first_invalid_utf8("\xC0\xAF"), 0);               // overlong '/'
  EXPECT_EQ(first_invalid_utf8("x\xED\xA0\x80"), 1);          // surrogate U+D800
  EXPECT_EQ(first_invalid_utf8("\xF4\x90\x80\x80"), 0);       // U+110000
  expect_error([] { CharTokenizer::from_text("ok\xFFno"); }, {"byte offset 2", "0xFF", "byte-level tokenizer"});
  expect_error([] { CharTokenizer::from_text(""); }, {"empty"});
  CharTokenizer tok = CharTokenizer::from_text("ab");
  expect_error([&] { tok.encode("a\xC3"); }, {"not valid UTF-8", "byte offset 1"});
}

TEST(Tokenizer, KindRuleFallsBackToBytesOnlyWhenAutomatic) {
  EXPECT_EQ(make_tokenizer("hello")->describe(), "char-level, 4 symbols");
  EXPECT_EQ(make_tokenizer("hel\xFFlo")->describe(), "byte-level, 256 symbols");
  EXPECT_EQ(make_tokenizer("hello", TokenizerKind::byte)->describe(), "byte-level, 256 symbols");
  expect_error([] { make_tokenizer("hel\xFFlo", TokenizerKind::character); }, {"byte offset 3"});
  EXPECT_EQ(parse_tokenizer_kind("auto"), TokenizerKind::automatic);
  EXPECT_EQ(parse_tokenizer_kind("char"), TokenizerKind::character);
  EXPECT_EQ(parse_tokenizer_kind("byte"), TokenizerKind::byte);
  expect_error([] { parse_tokenizer_kind("bpe"); }, {"'bpe'", "\"auto\", \"char\" or \"byte\""});
}

TEST(Tokenizer, JsonRoundTrip) {
  CharTokenizer tok = CharTokenizer::from_text(kUnicode);
  const std::string j = tok.to_json();
  EXPECT_EQ(j, R"({"chars":[32,104,108,111,233,8212,9731],"type":"char"})");
  std::unique_ptr<Tokenizer> back = tokenizer_from_json(j);
  EXPECT_EQ(back->to_json(), j);
  EXPECT_EQ(back->encode(kUnicode), tok.encode(kUnicode));
  std::unique_ptr<Tokenizer> bytes = tokenizer_from_json(ByteTokenizer().to_json());
  EXPECT_EQ(bytes->describe(), "byte-level, 256 symbols");
  EXPECT_EQ(bytes->to_json(), R"({"type":"byte"})");
}

TEST(Tokenizer, MalformedJsonIsRefusedNamingTheProblem) {
  expect_error([] { tokenizer_from_json("{\"type\":"); }, {"not valid JSON"});
  expect_error([] { tokenizer_from_json("[1]"); }, {"must be an object", "array"});
  expect_error([] { tokenizer_from_json("{}"); }, {"\"type\""});
  expect_error([] { tokenizer_from_json(R"({"type":"bpe"})"); }, {"unknown \"type\"", "bpe"});
  expect_error([] { tokenizer_from_json(R"({"type":"char"})"); }, {"\"chars\"", "array"});
  expect_error([] { tokenizer_from_json(R"({"type":"char","chars":[97,"b"]})"); }, {"\"chars\"[1]", "\"b\""});
  expect_error([] { tokenizer_from_json(R"({"type":"char","chars":[97,55296]})"); }, {"\"chars\"[1]", "55296"});
  expect_error([] { tokenizer_from_json(R"({"type":"char","chars":[98,97]})"); },
               {"chars[1] = 97", "strictly increasing"});
  expect_error([] { tokenizer_from_json(R"({"type":"char","chars":[]})"); }, {"empty"});
  expect_error([] { tokenizer_from_json(R"({"type":"byte","chars":[1]})"); }, {"unexpected key \"chars\""});
}

// ---------------------------------------------------------------- TextDataset

TEST(TextDataset, SplitsNinetyTenAndSamplesShiftedBlocks) {
  TempDir dir("mox-text");
  std::string text;
  for (int i = 0; i < 100; ++i) text += char('a' + i % 26);   // 100 tokens, ids = position % 26
  TextDataset ds(write_file(dir, "c.txt", text), /*block_size=*/4);
  EXPECT_EQ(ds.tokenizer().vocab_size(), 26);
  EXPECT_EQ(ds.size(Split::train), 90);
  EXPECT_EQ(ds.size(Split::val), 10);
  Tensor val = ds.tokens(Split::val);
  EXPECT_EQ(val.shape(), Shape({10}));
  EXPECT_EQ(val.to_vector<int64_t>()[0], 90 % 26);

  Generator gen(7);
  for (Split s : {Split::train, Split::val}) {
    TextBatch b = ds.sample(s, 3, gen);
    ASSERT_EQ(b.x.shape(), Shape({3, 4}));
    ASSERT_EQ(b.y.shape(), Shape({3, 4}));
    EXPECT_EQ(b.x.dtype(), DType::i64);
    std::vector<int64_t> x = b.x.to_vector<int64_t>(), y = b.y.to_vector<int64_t>();
    const int64_t lo = s == Split::train ? 0 : 90, hi = s == Split::train ? 90 : 100;
    for (int r = 0; r < 3; ++r) {
      for (int t = 0; t < 4; ++t) {
        EXPECT_EQ((x[r * 4 + t] + 1) % 26, y[r * 4 + t]);                   // y is x shifted by one
        if (t > 0) {
          EXPECT_EQ(x[r * 4 + t], y[r * 4 + t - 1]);
        }
      }
      // The block lies inside its split: its first id pins the start up to a multiple of 26.
      bool inside = false;
      for (int64_t start = lo; start + 5 <= hi; ++start) inside |= start % 26 == x[r * 4];
      EXPECT_TRUE(inside) << split_name(s) << " row " << r;
    }
  }
  EXPECT_EQ(gen.offset(), 6u);   // one counter per row
}

TEST(TextDataset, FractionIsConfigurableAndEveryStartIsReachable) {
  TempDir dir("mox-text");
  std::string text;
  for (int i = 0; i < 40; ++i) text += char('A' + i % 40 / 2);   // 20 distinct letters, each twice
  TextDataset ds(write_file(dir, "c.txt", text), 3, /*train_fraction=*/0.5);
  EXPECT_EQ(ds.size(Split::train), 20);
  EXPECT_EQ(ds.size(Split::val), 20);
  // val starts 0..16 (17 choices) hit every token pair; starts never run past the end.
  Generator gen(1);
  std::vector<int> seen(20, 0);
  for (int i = 0; i < 50; ++i) {
    TextBatch b = ds.sample(Split::val, 8, gen);
    for (int64_t id : b.y.to_vector<int64_t>()) seen[size_t(id)]++;
    for (int64_t id : b.x.to_vector<int64_t>()) EXPECT_GE(id, 10);   // val holds letters 10..19
  }
  for (int id = 10; id < 20; ++id) EXPECT_GT(seen[size_t(id)], 0) << id;
}

TEST(TextDataset, SameGeneratorStateGivesTheSameBatches) {
  TempDir dir("mox-text");
  std::string text;
  for (int i = 0; i < 400; ++i) text += char('a' + (i * i + 3 * i) % 26);
  TextDataset ds(write_file(dir, "c.txt", text), 8);
  Generator a(42), b(42);
  a.advance(5);
  b.set_state(42, 5);   // a restored checkpoint: (seed, offset)
  for (int i = 0; i < 3; ++i) {
    TextBatch ba = ds.sample(Split::train, 4, a), bb = ds.sample(Split::train, 4, b);
    EXPECT_EQ(ba.x.to_vector<int64_t>(), bb.x.to_vector<int64_t>());
    EXPECT_EQ(ba.y.to_vector<int64_t>(), bb.y.to_vector<int64_t>());
  }
  Generator c(43);
  EXPECT_NE(ds.sample(Split::train, 16, c).x.to_vector<int64_t>(),
            ds.sample(Split::train, 16, a).x.to_vector<int64_t>());
}

TEST(TextDataset, InvalidUtf8FallsBackToBytesUnlessCharIsAsked) {
  TempDir dir("mox-text");
  const std::string path = write_file(dir, "latin1.txt", std::string(50, 'a') + "caf\xE9" + std::string(50, 'b'));
  TextDataset ds(path, 4);
  EXPECT_EQ(ds.tokenizer().describe(), "byte-level, 256 symbols");
  EXPECT_EQ(ds.size(Split::train) + ds.size(Split::val), 104);
  EXPECT_EQ(ds.tokens(Split::train).to_vector<int64_t>()[53], 0xE9);
  expect_error([&] { TextDataset(path, 4, 0.9, TokenizerKind::character); }, {path, "byte offset 53"});
}

TEST(TextDataset, GivenTokenizerIsUsedAndMustCoverTheCorpus) {
  TempDir dir("mox-text");
  const std::string path = write_file(dir, "c.txt", std::string(60, 'a') + std::string(60, 'b'));
  auto tok = std::shared_ptr<const Tokenizer>(tokenizer_from_json(R"({"type":"char","chars":[97,98,99]})"));
  TextDataset ds(path, tok, 4);
  EXPECT_EQ(ds.tokenizer().vocab_size(), 3);
  EXPECT_EQ(ds.tokens(Split::val).to_vector<int64_t>()[0], 1);
  auto narrow = std::shared_ptr<const Tokenizer>(tokenizer_from_json(R"({"type":"char","chars":[97]})"));
  expect_error([&] { TextDataset(path, narrow, 4); }, {path, "'b' (U+0062)", "byte offset 60"});
}

TEST(TextDataset, FileAndSizeErrorsNameTheFileSplitAndBlockSize) {
  TempDir dir("mox-text");
  const std::string missing = dir.path("nope.txt");
  expect_error([&] { TextDataset(missing, 8); }, {"text corpus", missing});
  const std::string empty = write_file(dir, "empty.txt", "");
  expect_error([&] { TextDataset(empty, 8); }, {empty, "is empty"});
  const std::string shortp = write_file(dir, "short.txt", std::string(50, 'z'));   // 45 train / 5 val
  expect_error([&] { TextDataset(shortp, 8); },
               {shortp, "val split has 5 tokens", "block_size + 1 = 9"});
  expect_error([&] { TextDataset(shortp, 8, 0.1); }, {"train split has 5 tokens", "block_size + 1 = 9"});
  expect_error([&] { TextDataset(shortp, 0); }, {"block_size=0"});
  expect_error([&] { TextDataset(shortp, 2, 1.0); }, {"train_fraction=1"});
  TextDataset ok(shortp, 4);
  Generator gen(0);
  expect_error([&] { ok.sample(Split::train, 0, gen); }, {"batch_size=0"});
}

TEST(TextDataset, TinyShakespeareHas65Characters) {
  const char* root = std::getenv("MOX_DATA");
  const std::string path = std::string(root ? root : "../shared/data") + "/tinyshakespeare/input.txt";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not found; set MOX_DATA or run `make data`";
  TextDataset ds(path, 256);
  EXPECT_EQ(ds.tokenizer().vocab_size(), 65);   // nanoGPT's shakespeare_char
  const int64_t n = ds.size(Split::train) + ds.size(Split::val);
  EXPECT_EQ(n, 1115394);
  EXPECT_EQ(ds.size(Split::train), 1003854);
  std::vector<int64_t> first(ds.tokens(Split::train).to_vector<int64_t>());
  first.resize(14);
  EXPECT_EQ(ds.tokenizer().decode(first), "First Citizen:");
}
