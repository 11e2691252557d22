// test_llm.cpp — the LLM example (examples/llm/): the Transformer's KV-cache path, its
// checkpoints, and the generate / eval / quantize commands of build/bin/mox-llm.
//
// Model level (the example's config, model and checkpoint code are linked into mox-tests):
// prefill + token-by-token steps through the KV caches give the logits of the full forward
// (1e-5; gpt and llama, dense and with an MoE layer in eval mode); a checkpoint written with
// base_metadata loads back through load_llm (a file or a training directory) with the same
// config, tokenizer, generator state and logits.
//
// Command level (mox-llm run as a child process, found beside mox-tests; skipped when it is
// not built), on tiny checkpoints written by the tests: generation is reproducible by seed,
// identical with and without the KV cache while the text fits in block_size, greedy with
// --top-k 1, complete with the byte tokenizer, and runs past block_size; eval's whole-split
// loss equals one computed here block by block; quantize writes a smaller checkpoint that
// loads as int8 with logits close to the float ones. Usage errors exit 2 naming the flag;
// a missing checkpoint or corpus and an out-of-vocabulary prompt character exit 1 naming
// them. Everything is tiny (2 layers, width 16, block 16): the file runs in about a second.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "datasets/text.h"
#include "examples/llm/checkpoint.h"
#include "nn/loss.h"
#include "nn/quantized.h"
#include "tests/child_process.h"
#include "tests/expect_error.h"
#include "tests/temp_dir.h"
#include "tests/tiny_llm.h"

namespace {

namespace fs = std::filesystem;
using namespace mox;
using namespace mox::llm;
using mox::testing::expect_error;
using mox::testing::ProgramResult;
using mox::testing::sh_quote;
using mox::testing::TempDir;

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

Tensor random_ids(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {   // (B, T) i64
  Generator g(seed);
  std::vector<int64_t> ids(size_t(B * T));
  for (int64_t& id : ids) id = int64_t(g.next_below(uint64_t(vocab)));
  return from_vector<int64_t>(ids, {B, T});
}

// ================================================================================ model

TEST(LlmModel, KvCachePrefillAndStepsGiveTheFullForwardLogits) {
  autograd::NoGradGuard no_grad;
  for (const std::string arch : {"gpt", "llama"})
    for (int64_t experts : {1, 4}) {
      auto gen = std::make_shared<Generator>(7);
      Transformer m(mox::testing::tiny_llm_config(arch, experts, 11), gen);
      m.eval();
      EXPECT_EQ(m.moe_layers().size(), experts > 1 ? 1u : 0u);
      const Tensor idx = random_ids(2, 12, 11, 8);   // (B, T)
      const Tensor full = m.forward(idx);              // (B, T, V)
      std::vector<nn::KVCache> caches(2);
      std::vector<Tensor> parts{m.forward(idx.narrow(1, 0, 5), &caches)};   // prefill (B, 5, V)
      for (int64_t t = 5; t < 12; ++t) parts.push_back(m.forward(idx.narrow(1, t, 1), &caches));
      EXPECT_EQ(caches[0].length, 12);
      EXPECT_EQ(caches[1].length, 12);
      EXPECT_LT(max_abs_diff(cat(parts, 1), full), 1e-5) << arch << ", " << experts << " experts";
      // A reset cache serves a new sequence.
      for (nn::KVCache& c : caches) c.length = 0;
      EXPECT_LT(max_abs_diff(m.forward(idx.narrow(1, 0, 3), &caches), full.narrow(1, 0, 3)), 1e-5);
    }
}

TEST(LlmModel, KvCacheBeyondBlockSizeIsAnErrorNamingIt) {
  auto gen = std::make_shared<Generator>(9);
  Transformer m(mox::testing::tiny_llm_config("gpt", 1, 5), gen);
  m.eval();
  autograd::NoGradGuard no_grad;
  std::vector<nn::KVCache> caches(2);
  m.forward(random_ids(1, 16, 5, 10), &caches);
  expect_error([&] { m.forward(random_ids(1, 1, 5, 11), &caches); }, {"block_size", "16"});
}

// ================================================================================ checkpoints

// A freshly initialised model saved as a mox-llm checkpoint (model only) with `extra` metadata.
void write_checkpoint(const std::string& path, const ModelConfig& cfg, const data::Tokenizer& tok, uint64_t seed,
                      const nn::Metadata& extra = {}) {
  auto gen = std::make_shared<Generator>(seed);
  Transformer m(cfg, gen);
  nn::Metadata meta = base_metadata(m, tok, /*quantized=*/false);
  meta["model_rng"] = nn::generator_state(*gen);
  for (const auto& [k, v] : extra) meta[k] = v;
  nn::save_checkpoint(path, m, nullptr, meta);
}

// The logits (1, T, V) of a loaded checkpoint for `text`.
Tensor logits_of(const Loaded& l, const std::string& text) {
  autograd::NoGradGuard no_grad;
  l.model->eval();
  const std::vector<int64_t> ids = l.tokenizer->encode(text);
  return l.model->forward(from_vector<int64_t>(ids, {1, int64_t(ids.size())}));
}

TEST(LlmCheckpoint, RoundTripKeepsConfigTokenizerGeneratorAndLogits) {
  TempDir dir("mox-llm-test");
  const data::CharTokenizer tok = data::CharTokenizer::from_text("to be, or not to be\n");
  const ModelConfig cfg = mox::testing::tiny_llm_config("llama", 4, tok.vocab_size());
  auto gen = std::make_shared<Generator>(21);
  Transformer m(cfg, gen);
  m.eval();
  gen->advance(5);   // the saved generator state is not the initial one
  nn::Metadata meta = base_metadata(m, tok, false);
  meta["model_rng"] = nn::generator_state(*gen);
  nn::save_checkpoint(dir.path("last.safetensors"), m, nullptr, meta);

  const Loaded l = load_llm(dir.path());   // a directory: its last.safetensors (no best)
  EXPECT_EQ(l.path, dir.path("last.safetensors"));
  EXPECT_EQ(l.config.to_json(), cfg.to_json());
  EXPECT_EQ(l.tokenizer->to_json(), tok.to_json());
  EXPECT_FALSE(l.quantized);
  EXPECT_EQ(l.gen->seed(), gen->seed());
  EXPECT_EQ(l.gen->offset(), gen->offset());
  autograd::NoGradGuard no_grad;
  const std::vector<int64_t> ids = tok.encode("not to be");
  const Tensor idx = from_vector<int64_t>(ids, {1, int64_t(ids.size())});
  EXPECT_EQ(max_abs_diff(l.model->forward(idx), m.forward(idx)), 0.0);

  expect_error([&] { load_llm(dir.path("missing.safetensors")); }, {dir.path("missing.safetensors"), "not found"});
}

// ================================================================================ mox-llm

const std::string kCorpus = "the king shall be the lord of all; thou art not the queen.\n";
const std::string kSeparator = "\n---------------\n";

// A tiny float checkpoint (gpt, with an MoE layer) on kCorpus's characters, in a temp dir.
class LlmCli : public ::testing::Test {
 protected:
  void SetUp() override {
    binary_ = mox::testing::program_beside_tests("mox-llm");
    if (binary_.empty()) GTEST_SKIP() << "mox-llm not found: build it with `make all` (it sits beside mox-tests)";
    write_checkpoint(ckpt_, mox::testing::tiny_llm_config("gpt", 4, tok_.vocab_size()), tok_, 31, {{"step", "7"}, {"best_val_loss", "2.5"}});
  }
  // Runs mox-llm with `args` (shell words); stderr joins stdout unless `stdout_only`.
  ProgramResult run_llm(const std::string& args, bool stdout_only = false) const {
    return mox::testing::run_program(binary_, args,
                                     stdout_only ? mox::testing::Stderr::discard : mox::testing::Stderr::merge);
  }
  // "generate --checkpoint <ckpt> --device cpu <args>", stdout only. These tests check the CPU
  // path (on a GPU machine auto would take the GPU, where MoE layers do not run yet).
  ProgramResult generate(const std::string& args) const {
    return run_llm("generate --checkpoint " + sh_quote(ckpt_) + " --device cpu " + args, true);
  }

  fs::path binary_;
  TempDir dir_{"mox-llm-test"};
  const data::CharTokenizer tok_ = data::CharTokenizer::from_text(kCorpus);
  const std::string ckpt_ = dir_.path("model.safetensors");
};

class LlmGenerate : public LlmCli {};
class LlmCheckpointCli : public LlmCli {};

TEST_F(LlmGenerate, SameSeedSameTextOtherSeedOtherText) {
  const ProgramResult a = generate("--prompt 'the ' --max-new-tokens 40 --seed 5");
  ASSERT_EQ(a.code, 0) << a.output;
  EXPECT_EQ(a.output.substr(0, 4), "the ");
  EXPECT_EQ(a.output.size(), 4 + 40 + kSeparator.size()) << a.output;   // one character per token
  EXPECT_EQ(a.output.substr(a.output.size() - kSeparator.size()), kSeparator);
  EXPECT_EQ(generate("--prompt 'the ' --max-new-tokens 40 --seed 5").output, a.output);
  const ProgramResult b = generate("--prompt 'the ' --max-new-tokens 40 --seed 6");
  EXPECT_EQ(b.code, 0);
  EXPECT_NE(b.output, a.output);
}

// Within block_size the cache changes nothing (prompt 3 + 14 new tokens: the last forward
// sees 16 tokens); past it both modes run (they then differ by design: generate.cpp).
TEST_F(LlmGenerate, KvCacheAndFullRecomputeAgreeWithinTheBlockAndBothRunPastIt) {
  for (const std::string flags : {"", "--temperature 1.5 --top-k 5", "--top-p 0.8 --temperature 0.7"}) {
    const std::string args = "--prompt 'the' --max-new-tokens 14 --seed 3 " + flags;
    const ProgramResult cached = generate(args), full = generate(args + " --no-kv-cache");
    ASSERT_EQ(cached.code, 0) << cached.output;
    EXPECT_EQ(cached.output, full.output) << flags;
  }
  for (const std::string mode : {"", "--no-kv-cache"}) {
    const ProgramResult r = generate("--prompt 'the king shall be the lord' --max-new-tokens 50 --num-samples 2 " + mode);
    ASSERT_EQ(r.code, 0) << r.output;
    const size_t one = 26 + 50 + kSeparator.size();   // a 26-character prompt (cropped to the block)
    EXPECT_EQ(r.output.size(), 2 * one) << r.output;
    EXPECT_EQ(r.output.substr(one - kSeparator.size(), kSeparator.size()), kSeparator);
  }
}

TEST_F(LlmGenerate, TopKOneAndATinyTopPAreGreedy) {
  const ProgramResult greedy = generate("--prompt 'th' --max-new-tokens 20 --top-k 1 --seed 1");
  ASSERT_EQ(greedy.code, 0) << greedy.output;
  EXPECT_EQ(generate("--prompt 'th' --max-new-tokens 20 --top-k 1 --seed 2").output, greedy.output);
  EXPECT_EQ(generate("--prompt 'th' --max-new-tokens 20 --top-k 0 --top-p 1e-6 --seed 3").output, greedy.output);
}

// The byte tokenizer may draw half a UTF-8 character; the stream holds it back but loses
// and duplicates nothing: prompt bytes + one byte per token + the separator.
TEST_F(LlmGenerate, ByteTokenizerWritesEveryByteOnce) {
  const data::ByteTokenizer bytes;
  write_checkpoint(dir_.path("bytes.safetensors"), mox::testing::tiny_llm_config("llama", 1, 256), bytes, 41);
  const ProgramResult r =
      run_llm("generate --device cpu --checkpoint " + sh_quote(dir_.path("bytes.safetensors")) +
                  " --prompt 'é' --max-new-tokens 30",
              true);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.size(), 2 + 30 + kSeparator.size());
  EXPECT_EQ(r.output.substr(0, 2), "é");
}

TEST_F(LlmGenerate, UsageErrorsExitTwoNamingTheFlag) {
  struct Case { std::string args, expect; };
  const std::string c = "--checkpoint " + sh_quote(ckpt_);
  const std::vector<Case> cases = {
      {"generate", "--checkpoint"},
      {"generate " + c + " --temperature 0", "--temperature"},
      {"generate " + c + " --temperature nan", "--temperature"},
      {"generate " + c + " --top-p 1.5", "--top-p"},
      {"generate " + c + " --top-p 0", "--top-p"},
      {"generate " + c + " --top-k -1", "--top-k"},
      {"generate " + c + " --num-samples 0", "--num-samples"},
      {"generate " + c + " --prompt ''", "--prompt"},
      {"eval", "--checkpoint"},
      {"eval " + c + " --batch-size 0", "--batch-size"},
      {"eval " + c + " --eval-iters -1", "--eval-iters"},
      {"quantize " + c, "--out"},
      {"quantize --out " + sh_quote(dir_.path("q.safetensors")), "--checkpoint"},
      {"quantize " + c + " --out " + sh_quote(dir_.path("no-such-dir/q.safetensors")), "no-such-dir"},
  };
  for (const Case& k : cases) {
    const ProgramResult r = run_llm(k.args);
    EXPECT_EQ(r.code, 2) << k.args << "\n" << r.output;
    EXPECT_CONTAINS(r.output, k.expect);
  }
}

TEST_F(LlmGenerate, MissingFilesAndUnknownCharactersExitOneNamingThem) {
  const std::string missing = dir_.path("missing.safetensors");
  for (const std::string& cmd : std::vector<std::string>{"generate", "eval", "quantize --out " + sh_quote(dir_.path("q.safetensors"))}) {
    const ProgramResult r = run_llm(cmd + " --checkpoint " + sh_quote(missing));
    EXPECT_EQ(r.code, 1) << cmd << "\n" << r.output;
    EXPECT_CONTAINS(r.output, missing);
  }
  ProgramResult r = run_llm("generate --checkpoint " + sh_quote(ckpt_) + " --prompt 'the é'");
  EXPECT_EQ(r.code, 1);
  EXPECT_CONTAINS(r.output, "--prompt");
  EXPECT_CONTAINS(r.output, "'é' (U+00E9)");
  r = run_llm("generate --checkpoint " + sh_quote(ckpt_) + " --prompt 'the KING'");
  EXPECT_EQ(r.code, 1);
  EXPECT_CONTAINS(r.output, "'K'");
  r = run_llm("eval --checkpoint " + sh_quote(ckpt_) + " --data " + sh_quote(dir_.path("no-corpus.txt")));
  EXPECT_EQ(r.code, 1);
  EXPECT_CONTAINS(r.output, dir_.path("no-corpus.txt"));
}

// The number after `key` in `text` (NaN when absent).
double number_after(const std::string& text, const std::string& key) {
  const size_t at = text.find(key);
  return at == std::string::npos ? NAN : std::strtod(text.c_str() + at + key.size(), nullptr);
}

// eval over the whole split equals the loss computed here one block at a time.
TEST_F(LlmCheckpointCli, EvalWholeSplitMatchesABlockByBlockLoss) {
  const std::string corpus_path = dir_.path("corpus.txt");
  std::string corpus;
  for (int i = 0; i < 12; ++i) corpus += kCorpus;   // 708 characters: 71 validation tokens
  std::ofstream(corpus_path) << corpus;
  const ProgramResult r =
      run_llm("eval --device cpu --checkpoint " + sh_quote(ckpt_) + " --data " + sh_quote(corpus_path) + " --batch-size 3");
  ASSERT_EQ(r.code, 0) << r.output;

  const Loaded l = load_llm(ckpt_);
  const data::TextDataset ds(corpus_path, l.tokenizer, l.config.block_size);
  const std::vector<int64_t> val = ds.tokens(data::Split::val).to_vector<int64_t>();
  const int64_t n = int64_t(val.size());
  autograd::NoGradGuard no_grad;
  l.model->eval();
  double total = 0;
  for (int64_t s = 0; s < n - 1; s += 16) {
    const int64_t len = std::min<int64_t>(16, n - 1 - s);
    const Tensor x = from_vector<int64_t>(std::vector<int64_t>(val.begin() + s, val.begin() + s + len), {1, len});
    const Tensor y = from_vector<int64_t>(std::vector<int64_t>(val.begin() + s + 1, val.begin() + s + 1 + len), {1, len});
    total += nn::cross_entropy(l.model->forward(x).reshape({len, -1}), y.reshape({len})).item<double>() * double(len);
  }
  const double loss = total / double(n - 1);
  EXPECT_NEAR(number_after(r.output, "val loss "), loss, 1e-4) << r.output;
  EXPECT_NEAR(number_after(r.output, "perplexity "), std::exp(loss), 0.01) << r.output;
  EXPECT_CONTAINS(r.output, std::to_string(n - 1) + " predicted tokens");
  EXPECT_CONTAINS(r.output, "float32");

  const ProgramResult batches = run_llm("eval --device cpu --checkpoint " + sh_quote(ckpt_) + " --data " + sh_quote(corpus_path) +
                                        " --batch-size 2 --eval-iters 3");
  ASSERT_EQ(batches.code, 0) << batches.output;
  EXPECT_CONTAINS(batches.output, "96 predicted tokens");   // 3 batches of 2 × 16
  EXPECT_TRUE(std::isfinite(number_after(batches.output, "val loss ")));
}

TEST_F(LlmCheckpointCli, QuantizedCheckpointIsSmallerLoadsAsInt8AndStaysClose) {
  const std::string out = dir_.path("q.safetensors");
  const ProgramResult r = run_llm("quantize --checkpoint " + sh_quote(ckpt_) + " --out " + sh_quote(out));
  ASSERT_EQ(r.code, 0) << r.output;
  // 2 × (c_attn, c_proj) + layer 1's MLP (2) + 4 experts × 2 + lm_head; the router stays float.
  EXPECT_CONTAINS(r.output, "15 Linears quantized to int8, 1 kept in float (h.1.moe.gate.wg)");
  EXPECT_CONTAINS(r.output, "float32 model only");
  EXPECT_LT(fs::file_size(out), fs::file_size(ckpt_));

  const Loaded f = load_llm(ckpt_), q = load_llm(out);
  EXPECT_TRUE(q.quantized);
  EXPECT_EQ(q.meta.at("step"), "7");
  EXPECT_EQ(q.meta.at("best_val_loss"), "2.5");
  EXPECT_EQ(q.tokenizer->to_json(), f.tokenizer->to_json());
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(q.model->lm_head.get()), nullptr);
  const double diff = max_abs_diff(logits_of(q, "the lord"), logits_of(f, "the lord"));
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, 0.02);

  EXPECT_EQ(run_llm("generate --checkpoint " + sh_quote(out) + " --max-new-tokens 5").code, 0);
  const ProgramResult again = run_llm("quantize --checkpoint " + sh_quote(out) + " --out " + sh_quote(dir_.path("qq.safetensors")));
  EXPECT_EQ(again.code, 1);
  EXPECT_CONTAINS(again.output, "already quantized");
}

}  // namespace
