// tokenizer.h — character-level and byte-level tokenizers for the language-model examples.
//
// CharTokenizer: the vocabulary is the sorted set of distinct Unicode code points of a
// corpus (decoded from UTF-8), id i = the i-th smallest code point — nanoGPT's
// shakespeare_char `sorted(set(text))`, so tiny-Shakespeare gives the same 65 ids.
// ByteTokenizer: the 256 byte values, id = byte; any text encodes, decode is exact.
//
// Which one (TokenizerKind): `character` is strict (a corpus that is not valid UTF-8 is an
// error naming the byte offset), `byte` is always bytes, and `automatic` — the default —
// is character-level when the corpus is valid UTF-8 and byte-level otherwise.
//
// Both serialise to a small JSON string, stored in a checkpoint's metadata so a trained
// model is always decoded with the vocabulary it was trained on:
//   {"type":"char","chars":[10,32,33,...]}   (code points, strictly increasing)
//   {"type":"byte"}
// Not here: subword tokenizers (BPE), special tokens, normalisation of the text.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace mox::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int64_t vocab_size() const = 0;
  // Ids of `text`; throws mox::Error naming the byte offset of anything it cannot encode.
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Text of `ids`; throws naming the first id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // The JSON string described above; tokenizer_from_json() reads it back.
  virtual std::string to_json() const = 0;
  // "char-level, 65 symbols" / "byte-level, 256 symbols", for logs.
  virtual std::string describe() const = 0;
};

class CharTokenizer final : public Tokenizer {
 public:
  // `chars`: the vocabulary's code points, strictly increasing, each a Unicode scalar value
  // (0..0x10FFFF, no surrogates), at least one; errors name the offending index and value.
  explicit CharTokenizer(std::vector<char32_t> chars);
  // The sorted distinct code points of `corpus`; throws naming the byte offset of the first
  // invalid UTF-8 sequence (and suggesting the byte-level tokenizer), or when it is empty.
  static CharTokenizer from_text(const std::string& corpus);

  int64_t vocab_size() const override { return int64_t(chars_.size()); }
  // A character outside the vocabulary is an error naming it ('é' (U+00E9)), its byte
  // offset, and the byte-level tokenizer as the way to encode arbitrary text.
  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string to_json() const override;
  std::string describe() const override;
  const std::vector<char32_t>& chars() const { return chars_; }

 private:
  std::vector<char32_t> chars_;                   // id → code point
  std::unordered_map<char32_t, int64_t> ids_;     // code point → id
};

class ByteTokenizer final : public Tokenizer {
 public:
  int64_t vocab_size() const override { return 256; }
  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string to_json() const override { return R"({"type":"byte"})"; }
  std::string describe() const override { return "byte-level, 256 symbols"; }
};

enum class TokenizerKind { automatic, character, byte };
// "auto" | "char" | "byte" (a command-line flag's value); throws naming `name` otherwise.
TokenizerKind parse_tokenizer_kind(const std::string& name);

// The tokenizer of `kind` for `corpus` (rule above).
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& corpus,
                                          TokenizerKind kind = TokenizerKind::automatic);

// Rebuild a tokenizer from its to_json() string. Malformed input — not JSON, not an object,
// a missing or unknown "type", an unknown key, "chars" not an array of increasing code
// points — is a mox::Error naming the key and what was expected.
std::unique_ptr<Tokenizer> tokenizer_from_json(const std::string& json_text);

// Byte offset of the first invalid UTF-8 sequence in `text` (a stray continuation byte, a
// truncated or overlong sequence, a surrogate, a value above U+10FFFF), or -1 if it is valid.
int64_t first_invalid_utf8(const std::string& text);

}  // namespace mox::data
