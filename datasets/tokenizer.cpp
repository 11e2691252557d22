// tokenizer.cpp — UTF-8 decoding, CharTokenizer, ByteTokenizer, JSON round trip (see tokenizer.h).
#include "datasets/tokenizer.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "tensor/error.h"

namespace mox::data {
namespace {

using json = nlohmann::json;

const char* const kByteHint = "use the byte-level tokenizer (kind \"byte\") to encode arbitrary text";
const char* const kNotUtf8Hint =
    "use the byte-level tokenizer (kind \"byte\", or \"auto\", which falls back to it for such a corpus)";

// Decodes the code point that starts at s[pos] into cp; returns its length in bytes, or 0
// when the bytes there are not a valid UTF-8 sequence.
int decode_utf8(const std::string& s, size_t pos, char32_t& cp) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + pos;
  const unsigned char b0 = p[0];
  if (b0 < 0x80) { cp = b0; return 1; }
  int len;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) { len = 2; cp = b0 & 0x1F; min = 0x80; }
  else if ((b0 & 0xF0) == 0xE0) { len = 3; cp = b0 & 0x0F; min = 0x800; }
  else if ((b0 & 0xF8) == 0xF0) { len = 4; cp = b0 & 0x07; min = 0x10000; }
  else return 0;   // a continuation byte or 0xF8..0xFF
  if (s.size() - pos < size_t(len)) return 0;
  for (int i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;   // overlong, too large, surrogate
  return len;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

bool is_scalar_value(int64_t cp) { return cp >= 0 && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF); }

// "'é' (U+00E9)", "'\n' (U+000A)", or "U+0007" for other control characters.
std::string printable(char32_t cp) {
  char code[16];
  std::snprintf(code, sizeof(code), "U+%04X", unsigned(cp));
  if (cp == '\n') return str("'\\n' (", code, ")");
  if (cp == '\t') return str("'\\t' (", code, ")");
  if (cp == '\r') return str("'\\r' (", code, ")");
  if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) return code;
  std::string s = "'";
  append_utf8(s, cp);
  return str(s, "' (", code, ")");
}

std::string byte_hex(const std::string& s, size_t pos) {
  char b[8];
  std::snprintf(b, sizeof(b), "0x%02X", unsigned(static_cast<unsigned char>(s[pos])));
  return b;
}

// The first id outside [0, n) is an error naming it, its position and the vocabulary size.
void check_ids(const std::vector<int64_t>& ids, int64_t n, const char* who) {
  for (size_t i = 0; i < ids.size(); ++i)
    MOX_CHECK(ids[i] >= 0 && ids[i] < n, who, "::decode: id ", ids[i], " at position ", i,
              " is outside the vocabulary of ", n, " ids [0, ", n, ")");
}

}  // namespace

int64_t first_invalid_utf8(const std::string& text) {
  char32_t cp;
  for (size_t pos = 0; pos < text.size();) {
    int len = decode_utf8(text, pos, cp);
    if (len == 0) return int64_t(pos);
    pos += size_t(len);
  }
  return -1;
}

// ---------------------------------------------------------------- CharTokenizer

CharTokenizer::CharTokenizer(std::vector<char32_t> chars) : chars_(std::move(chars)) {
  MOX_CHECK(!chars_.empty(), "CharTokenizer: the vocabulary is empty (need at least one character)");
  for (size_t i = 0; i < chars_.size(); ++i) {
    MOX_CHECK(is_scalar_value(int64_t(chars_[i])), "CharTokenizer: chars[", i, "] = ", uint32_t(chars_[i]),
              " is not a Unicode scalar value (0..0x10FFFF, no surrogates D800..DFFF)");
    MOX_CHECK(i == 0 || chars_[i] > chars_[i - 1], "CharTokenizer: chars[", i, "] = ", uint32_t(chars_[i]),
              " is not greater than chars[", i - 1, "] = ", uint32_t(chars_[i - 1]),
              "; the code points must be strictly increasing");
    ids_.emplace(chars_[i], int64_t(i));
  }
}

CharTokenizer CharTokenizer::from_text(const std::string& corpus) {
  MOX_CHECK(!corpus.empty(), "CharTokenizer: the corpus is empty; a vocabulary needs at least one character");
  std::set<char32_t> seen;
  char32_t cp;
  for (size_t pos = 0; pos < corpus.size();) {
    int len = decode_utf8(corpus, pos, cp);
    if (len == 0)
      MOX_FAIL("CharTokenizer: the corpus is not valid UTF-8 at byte offset ", pos, " (byte ",
               byte_hex(corpus, pos), "); ", kNotUtf8Hint);
    seen.insert(cp);
    pos += size_t(len);
  }
  return CharTokenizer(std::vector<char32_t>(seen.begin(), seen.end()));
}

std::vector<int64_t> CharTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  ids.reserve(text.size());
  char32_t cp;
  for (size_t pos = 0; pos < text.size();) {
    int len = decode_utf8(text, pos, cp);
    if (len == 0)
      MOX_FAIL("CharTokenizer::encode: the text is not valid UTF-8 at byte offset ", pos, " (byte ",
               byte_hex(text, pos), "); ", kByteHint);
    auto it = ids_.find(cp);
    if (it == ids_.end())
      MOX_FAIL("CharTokenizer::encode: character ", printable(cp), " at byte offset ", pos,
               " is not in the vocabulary of ", chars_.size(),
               " characters (those of the training corpus); ", kByteHint);
    ids.push_back(it->second);
    pos += size_t(len);
  }
  return ids;
}

std::string CharTokenizer::decode(const std::vector<int64_t>& ids) const {
  check_ids(ids, vocab_size(), "CharTokenizer");
  std::string out;
  out.reserve(ids.size());
  for (int64_t id : ids) append_utf8(out, chars_[size_t(id)]);
  return out;
}

std::string CharTokenizer::to_json() const {
  json j = {{"type", "char"}, {"chars", json::array()}};
  for (char32_t c : chars_) j["chars"].push_back(uint32_t(c));
  return j.dump();
}

std::string CharTokenizer::describe() const { return str("char-level, ", chars_.size(), " symbols"); }

// ---------------------------------------------------------------- ByteTokenizer

std::vector<int64_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  check_ids(ids, 256, "ByteTokenizer");
  std::string out(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) out[i] = char(static_cast<unsigned char>(ids[i]));
  return out;
}

// ---------------------------------------------------------------- factories

TokenizerKind parse_tokenizer_kind(const std::string& name) {
  if (name == "auto") return TokenizerKind::automatic;
  if (name == "char") return TokenizerKind::character;
  if (name == "byte") return TokenizerKind::byte;
  MOX_FAIL("unknown tokenizer kind '", name, "'; expected \"auto\", \"char\" or \"byte\"");
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& corpus, TokenizerKind kind) {
  if (kind == TokenizerKind::byte || (kind == TokenizerKind::automatic && first_invalid_utf8(corpus) >= 0))
    return std::make_unique<ByteTokenizer>();
  return std::make_unique<CharTokenizer>(CharTokenizer::from_text(corpus));
}

std::unique_ptr<Tokenizer> tokenizer_from_json(const std::string& json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {   // parse_error, and out_of_range for a number like 1e99999
    MOX_FAIL("tokenizer JSON is not valid JSON (", e.what(), "); expected {\"type\":\"char\",\"chars\":[...]}",
             " or {\"type\":\"byte\"}");
  }
  MOX_CHECK(j.is_object(), "tokenizer JSON must be an object, got ", j.type_name());
  MOX_CHECK(j.contains("type") && j["type"].is_string(),
            "tokenizer JSON: missing string key \"type\" (expected \"char\" or \"byte\")");
  const std::string type = j["type"];
  MOX_CHECK(type == "char" || type == "byte", "tokenizer JSON: unknown \"type\": \"", type,
            "\" (expected \"char\" or \"byte\")");
  const std::set<std::string> allowed = type == "char" ? std::set<std::string>{"type", "chars"}
                                                       : std::set<std::string>{"type"};
  for (const auto& item : j.items())
    MOX_CHECK(allowed.count(item.key()), "tokenizer JSON: unexpected key \"", item.key(), "\" for type \"",
              type, "\"");
  if (type == "byte") return std::make_unique<ByteTokenizer>();
  MOX_CHECK(j.contains("chars") && j["chars"].is_array(),
            "tokenizer JSON: type \"char\" needs key \"chars\", an array of code points");
  std::vector<char32_t> chars;
  const json& arr = j["chars"];
  for (size_t i = 0; i < arr.size(); ++i) {
    MOX_CHECK(arr[i].is_number_integer() && is_scalar_value(arr[i].get<int64_t>()), "tokenizer JSON: \"chars\"[",
              i, "] = ", arr[i].dump(), " is not a code point (an integer 0..1114111, not a surrogate)");
    chars.push_back(char32_t(arr[i].get<int64_t>()));
  }
  return std::make_unique<CharTokenizer>(std::move(chars));
}

}  // namespace mox::data
