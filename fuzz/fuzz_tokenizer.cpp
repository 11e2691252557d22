// fuzz_tokenizer.cpp — libFuzzer target for the tokenizers (datasets/tokenizer.h), two ways
// per input:
//   1. data::tokenizer_from_json(bytes). Accepted: to_json() reads back to the same JSON
//      (a checkpoint's tokenizer survives save/load), and it encodes the bytes either with
//      a mox::Error or so that decode(encode(bytes)) == bytes.
//   2. The bytes as a corpus. Valid UTF-8 (first_invalid_utf8 == -1): make_tokenizer
//      (auto and char) is char-level with one id per distinct code point, and the corpus
//      round-trips exactly. Invalid UTF-8: kind "char" is a mox::Error, kind "auto" falls
//      back to the byte-level tokenizer, whose round trip is exact. Either way the
//      tokenizer's JSON reads back to the same JSON.
#include <set>
#include <string>

#include "datasets/tokenizer.h"
#include "fuzz/fuzz_common.h"

namespace {

using namespace mox::data;

// decode(encode(text)) == text, ids inside the vocabulary, JSON round trip.
void check_round_trip(const Tokenizer& tok, const std::string& text) {
  const std::vector<int64_t> ids = tok.encode(text);
  for (int64_t id : ids) MOX_FUZZ_ASSERT(id >= 0 && id < tok.vocab_size());
  MOX_FUZZ_ASSERT(tok.decode(ids) == text);
}

void check_json_round_trip(const Tokenizer& tok) {
  const std::string j = tok.to_json();
  MOX_FUZZ_ASSERT(tokenizer_from_json(j)->to_json() == j);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);

  // 1. the bytes as a tokenizer's JSON
  mox::fuzz::run_one([&] {
    std::unique_ptr<Tokenizer> tok = tokenizer_from_json(bytes);
    MOX_FUZZ_ASSERT(tok && tok->vocab_size() >= 1);
    check_json_round_trip(*tok);
    mox::fuzz::run_one([&] { check_round_trip(*tok, bytes); });   // encode may refuse: mox::Error
  });

  // 2. the bytes as a corpus
  const bool utf8 = first_invalid_utf8(bytes) < 0;
  mox::fuzz::run_one([&] {
    std::unique_ptr<Tokenizer> tok = make_tokenizer(bytes, TokenizerKind::automatic);
    MOX_FUZZ_ASSERT(!bytes.empty() || !utf8);   // an empty corpus is a mox::Error
    if (utf8) {
      const auto* ct = dynamic_cast<const CharTokenizer*>(tok.get());
      MOX_FUZZ_ASSERT(ct != nullptr);
      std::set<char32_t> distinct(ct->chars().begin(), ct->chars().end());
      MOX_FUZZ_ASSERT(distinct.size() == ct->chars().size() && int64_t(distinct.size()) <= int64_t(size));
    } else {
      MOX_FUZZ_ASSERT(dynamic_cast<const ByteTokenizer*>(tok.get()) != nullptr);
    }
    check_round_trip(*tok, bytes);   // must not throw for the corpus it was built from
    check_json_round_trip(*tok);
  });
  bool char_ok = false;
  mox::fuzz::run_one([&] {
    std::unique_ptr<Tokenizer> tok = make_tokenizer(bytes, TokenizerKind::character);
    char_ok = true;
    check_round_trip(*tok, bytes);
  });
  MOX_FUZZ_ASSERT(char_ok == (utf8 && !bytes.empty()));
  mox::fuzz::run_one([&] { check_round_trip(*make_tokenizer(bytes, TokenizerKind::byte), bytes); });
  return 0;
}
