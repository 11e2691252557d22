// text.h — TextDataset: a tokenized corpus split into train/validation, sampled as
// random contiguous blocks for next-token prediction (nanoGPT's get_batch).
//
// The whole corpus is read and tokenized once into one i64 token tensor (tiny-Shakespeare:
// ~1.1 M tokens, 9 MB). The first floor(train_fraction · N) tokens are the training split,
// the rest the validation split. sample(split, B, gen) draws B start offsets uniformly from
// the split (gen.next_below(len − T), one counter each) and returns
//   x (B, T) i64 = tokens[s .. s+T),   y (B, T) i64 = tokens[s+1 .. s+T+1)
// so a batch is a pure function of the generator's (seed, offset): save those, restore
// them, and training resumes on exactly the batches it would have seen.
// Not here: epochs or shuffling without replacement, document boundaries, GPU upload.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "datasets/tokenizer.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace mox::data {

enum class Split { train, val };
const char* split_name(Split split);   // "train" / "val"

struct TextBatch {
  Tensor x;   // (B, T) i64, inputs
  Tensor y;   // (B, T) i64, targets: x shifted left by one token
};

class TextDataset {
 public:
  // Reads `path` and builds its tokenizer with make_tokenizer(corpus, kind).
  TextDataset(const std::string& path, int64_t block_size, double train_fraction = 0.9,
              TokenizerKind kind = TokenizerKind::automatic);
  // Uses a given tokenizer, e.g. the one restored from a checkpoint (the corpus must encode
  // with it; the encode error names the character and byte offset otherwise).
  TextDataset(const std::string& path, std::shared_ptr<const Tokenizer> tokenizer, int64_t block_size,
              double train_fraction = 0.9);
  // Both throw mox::Error naming the file when it is missing or empty, when block_size < 1
  // or train_fraction is not inside (0, 1), and when a split has fewer than block_size + 1
  // tokens (naming the split, its length and block_size).

  // x, y (B, T) i64 on the CPU, T = block_size; advances gen by batch_size counters.
  TextBatch sample(Split split, int64_t batch_size, Generator& gen) const;

  // The split's tokens, (n) i64, a read-only view (for evaluation over the whole split).
  Tensor tokens(Split split) const;
  int64_t size(Split split) const;   // number of tokens in the split
  int64_t block_size() const { return block_size_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  std::shared_ptr<const Tokenizer> shared_tokenizer() const { return tokenizer_; }
  const std::string& path() const { return path_; }

 private:
  void load(const std::string& corpus, double train_fraction);

  std::string path_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  int64_t block_size_;
  Tensor tokens_;          // (N) i64, the whole corpus
  int64_t n_train_ = 0;    // tokens_[0, n_train_) is train, the rest val
};

}  // namespace mox::data
