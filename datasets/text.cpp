// text.cpp — TextDataset: read, tokenize, split, sample blocks (see text.h).
#include "datasets/text.h"

#include <cstring>

#include "datasets/file_bytes.h"
#include "tensor/ops.h"

namespace mox::data {
namespace {

void check_options(const std::string& path, int64_t block_size, double train_fraction) {
  MOX_CHECK(block_size >= 1, "TextDataset '", path, "': block_size=", block_size, " must be at least 1");
  MOX_CHECK(train_fraction > 0.0 && train_fraction < 1.0, "TextDataset '", path, "': train_fraction=",
            train_fraction, " must be inside (0, 1) so both splits have tokens");
}

std::string read_corpus(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path, "text corpus");
  MOX_CHECK(!bytes.empty(), "text corpus '", path, "' is empty; expected a text file (e.g. tiny-Shakespeare's input.txt)");
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace

const char* split_name(Split split) { return split == Split::train ? "train" : "val"; }

TextDataset::TextDataset(const std::string& path, int64_t block_size, double train_fraction, TokenizerKind kind)
    : path_(path), block_size_(block_size) {
  check_options(path, block_size, train_fraction);
  const std::string corpus = read_corpus(path);
  try {
    tokenizer_ = make_tokenizer(corpus, kind);
  } catch (const Error& e) {
    MOX_FAIL("text corpus '", path, "': ", e.what());
  }
  load(corpus, train_fraction);
}

TextDataset::TextDataset(const std::string& path, std::shared_ptr<const Tokenizer> tokenizer, int64_t block_size,
                         double train_fraction)
    : path_(path), tokenizer_(std::move(tokenizer)), block_size_(block_size) {
  MOX_CHECK(tokenizer_ != nullptr, "TextDataset '", path, "': no tokenizer given");
  check_options(path, block_size, train_fraction);
  load(read_corpus(path), train_fraction);
}

void TextDataset::load(const std::string& corpus, double train_fraction) {
  std::vector<int64_t> ids;
  try {
    ids = tokenizer_->encode(corpus);
  } catch (const Error& e) {
    MOX_FAIL("text corpus '", path_, "': ", e.what());
  }
  const int64_t n = int64_t(ids.size());
  tokens_ = from_vector(ids, {n});   // (N) i64
  n_train_ = int64_t(double(n) * train_fraction);
  for (Split s : {Split::train, Split::val})
    MOX_CHECK(size(s) >= block_size_ + 1, "text corpus '", path_, "': the ", split_name(s), " split has ", size(s),
              " tokens, fewer than block_size + 1 = ", block_size_ + 1, " (", n, " tokens in all, train_fraction ",
              train_fraction, "); use a smaller block_size or a longer corpus");
}

int64_t TextDataset::size(Split split) const {
  return split == Split::train ? n_train_ : tokens_.numel() - n_train_;
}

Tensor TextDataset::tokens(Split split) const {
  return raw::narrow(tokens_, 0, split == Split::train ? 0 : n_train_, size(split));
}

TextBatch TextDataset::sample(Split split, int64_t batch_size, Generator& gen) const {
  MOX_CHECK(batch_size >= 1, "TextDataset::sample: batch_size=", batch_size, " must be at least 1");
  const int64_t T = block_size_;
  const int64_t starts = size(split) - T;   // valid starts: [0, starts), each leaves T + 1 tokens
  const int64_t* src = tokens_.data<int64_t>() + (split == Split::train ? 0 : n_train_);
  TextBatch batch{empty({batch_size, T}, DType::i64), empty({batch_size, T}, DType::i64)};   // (B, T) each
  int64_t* x = batch.x.data<int64_t>();
  int64_t* y = batch.y.data<int64_t>();
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t s = int64_t(gen.next_below(uint64_t(starts)));
    std::memcpy(x + b * T, src + s, size_t(T) * sizeof(int64_t));
    std::memcpy(y + b * T, src + s + 1, size_t(T) * sizeof(int64_t));
  }
  return batch;
}

}  // namespace mox::data
