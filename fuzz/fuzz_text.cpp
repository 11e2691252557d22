// fuzz_text.cpp — libFuzzer target for data::TextDataset on an arbitrary file: the bytes are
// written to a scratch file (fuzz/scratch_file.h; the class reads a path), loaded with block_size 4
// (automatic tokenizer: char-level for UTF-8, byte-level otherwise), and when that succeeds
// a batch of each split is sampled from a Generator. Accepted: both splits hold at least
// block_size + 1 tokens and together the whole corpus; x, y are (2, 4) i64 inside the
// vocabulary with y = x shifted by one token; the split tokens decode back to the file's
// bytes; and a second dataset over the same file with the first one's tokenizer (the
// checkpoint-resume path) holds the same tokens.
#include <cstdlib>
#include <cstring>
#include <string>

#include "datasets/text.h"
#include "fuzz/fuzz_common.h"
#include "fuzz/scratch_file.h"

namespace {

constexpr int64_t kBlock = 4, kBatch = 2;

std::vector<int64_t> to_ids(const mox::Tensor& t) {
  const mox::Tensor c = t.contiguous();
  const int64_t* p = c.data<int64_t>();
  return std::vector<int64_t>(p, p + c.numel());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mox;
  using namespace mox::data;
  const mox::fuzz::ScratchFile scratch("text", ".txt", data, size);
  return mox::fuzz::run_one([&] {
    TextDataset ds(scratch.path(), kBlock);
    const int64_t V = ds.tokenizer().vocab_size();
    const int64_t n_train = ds.size(Split::train), n_val = ds.size(Split::val);
    MOX_FUZZ_ASSERT(n_train >= kBlock + 1 && n_val >= kBlock + 1);
    std::vector<int64_t> all = to_ids(ds.tokens(Split::train));
    const std::vector<int64_t> val = to_ids(ds.tokens(Split::val));
    MOX_FUZZ_ASSERT(int64_t(all.size()) == n_train && int64_t(val.size()) == n_val);
    all.insert(all.end(), val.begin(), val.end());
    MOX_FUZZ_ASSERT(ds.tokenizer().decode(all) == std::string(reinterpret_cast<const char*>(data), size));

    Generator gen(size);
    for (Split s : {Split::train, Split::val}) {
      const uint64_t offset = gen.offset();
      TextBatch b = ds.sample(s, kBatch, gen);
      MOX_FUZZ_ASSERT(gen.offset() == offset + uint64_t(kBatch));
      MOX_FUZZ_ASSERT(b.x.shape() == Shape({kBatch, kBlock}) && b.y.shape() == Shape({kBatch, kBlock}));
      MOX_FUZZ_ASSERT(b.x.dtype() == DType::i64 && b.y.dtype() == DType::i64);
      const int64_t* x = b.x.data<int64_t>();
      const int64_t* y = b.y.data<int64_t>();
      for (int64_t i = 0; i < kBatch * kBlock; ++i) MOX_FUZZ_ASSERT(x[i] >= 0 && x[i] < V && y[i] >= 0 && y[i] < V);
      for (int64_t r = 0; r < kBatch; ++r)
        for (int64_t t = 0; t + 1 < kBlock; ++t) MOX_FUZZ_ASSERT(y[r * kBlock + t] == x[r * kBlock + t + 1]);
    }

    TextDataset again(scratch.path(), ds.shared_tokenizer(), kBlock);
    MOX_FUZZ_ASSERT(to_ids(again.tokens(Split::train)) == to_ids(ds.tokens(Split::train)));
    MOX_FUZZ_ASSERT(to_ids(again.tokens(Split::val)) == val);
  });
}
