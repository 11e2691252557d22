// generate.cpp — `mox-llm generate`: sample text from a checkpoint, one token at a time
// (nanoGPT's sample.py), streamed to stdout as it is produced.
//
// Each step takes the logits of the last position, divides them by --temperature, keeps
// the --top-k largest (ties with the k-th kept, as nanoGPT), then the smallest set of most
// probable tokens whose probability reaches --top-p (nucleus sampling, as Hugging Face's
// TopPLogitsWarper), renormalises and draws one token with a mox Generator seeded by
// --seed (one uniform per token): the same checkpoint, flags and seed give the same text.
// Samples run one after another on the one generator, like sample.py.
//
// Context longer than block_size. Without the cache (--no-kv-cache) every step runs the
// whole model over the last block_size tokens (nanoGPT's crop). With the cache (the
// default: one nn::KVCache per layer, the prompt prefilled in one forward, then one token
// per forward) the positions are baked into the cached keys (learned position embeddings,
// RoPE), so a full cache cannot slide by one token. When the next token would not fit,
// the caches are reset and refilled with the last ⌈block_size/2⌉ tokens — llama.cpp's
// "context shift", which discards the older half — and the following ⌊block_size/2⌋
// tokens are again one cheap step each. So the two modes produce the same text while the
// text fits in block_size (the logits agree to float rounding) and differ after that: the
// cache sees between ⌈block_size/2⌉ and block_size tokens of context, the crop always
// block_size, for about block_size/4 times less compute per token. A prompt longer than
// block_size is cropped to its last block_size tokens in both modes.
//
// Output: stdout holds only text — the prompt, each sample, then a line "---------------";
// a token is written (and stdout flushed) as soon as it is drawn, except that bytes of an
// unfinished UTF-8 character (a byte-level tokenizer) wait for the rest of it. The model
// summary and the speed (tokens/s) go to stderr.
//
// Device (--device): the model is loaded on the CPU and moved (an int8 checkpoint stays on the
// CPU: choose_device). The ids fed to each forward (the prompt, then one token) are moved to
// the model's device, so the KV caches are allocated there too (nn::CausalSelfAttention sizes
// them from the keys). Sampling runs on the CPU: each step copies the last position's logits
// (V floats) back — tiny next to the forward — and draws from them with the exact CPU code
// above, so a seed gives the same text on either device up to the logits' rounding.
//
// What it is not: batched sampling, beam search, repetition penalties, stop strings.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "examples/common/cli.h"
#include "examples/llm/checkpoint.h"
#include "examples/llm/commands.h"
#include "tensor/cpu/threads.h"

namespace mox::llm {
namespace {

using Clock = std::chrono::steady_clock;
using examples::finite_in;

// The length of the longest prefix of `bytes` that does not end inside a UTF-8 character:
// the bytes after it are the start of a multi-byte sequence still missing continuation
// bytes. Anything else (ASCII, complete characters, stray continuation bytes) is complete.
size_t complete_utf8_prefix(const std::string& bytes) {
  const size_t n = bytes.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    const unsigned char c = static_cast<unsigned char>(bytes[n - back]);
    if ((c & 0xC0) == 0x80) continue;   // a continuation byte: look further back for the lead
    const size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return back < need ? n - back : n;
  }
  return n;
}

// Writes decoded tokens to stdout as they come, holding back an unfinished UTF-8 character.
class Streamer {
 public:
  explicit Streamer(const data::Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  void write_text(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  void token(int64_t id) {
    pending_ += tokenizer_.decode({id});
    const size_t n = complete_utf8_prefix(pending_);
    write_text(pending_.substr(0, n));
    pending_.erase(0, n);
  }
  void end_sample() {
    write_text(pending_ + "\n---------------\n");
    pending_.clear();
  }

 private:
  const data::Tokenizer& tokenizer_;
  std::string pending_;   // bytes of a character not yet complete
};

// The id drawn from `logits` (V) after temperature, top-k and top-p (see the file comment).
int64_t sample_token(const std::vector<float>& logits, const GenerateOptions& o, Generator& gen) {
  const int64_t V = int64_t(logits.size());
  for (int64_t i = 0; i < V; ++i)
    MOX_CHECK(std::isfinite(logits[size_t(i)]), "the model's logit of token ", i, " is ", logits[size_t(i)],
              "; the checkpoint's weights are not finite (a diverged training run?)");
  std::vector<int64_t> order(static_cast<size_t>(V));   // ids by logit, largest first (ties: lower id first)
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  // top-k: keep the ids whose logit is at least the k-th largest.
  int64_t kept = V;
  if (o.top_k > 0 && o.top_k < V) {
    const float kth = logits[size_t(order[size_t(o.top_k - 1)])];
    kept = o.top_k;
    while (kept < V && logits[size_t(order[size_t(kept)])] >= kth) ++kept;
  }
  // softmax of logits / temperature over the kept ids (in double: the sums decide the draw).
  const double top = double(logits[size_t(order[0])]) / o.temperature;
  std::vector<double> p(static_cast<size_t>(kept));
  double total = 0;
  for (int64_t i = 0; i < kept; ++i) {
    p[size_t(i)] = std::exp(double(logits[size_t(order[size_t(i)])]) / o.temperature - top);
    total += p[size_t(i)];
  }
  // top-p: the most probable ids until their probability reaches top_p (at least one).
  if (o.top_p < 1.0) {
    double cum = 0;
    int64_t n = 0;
    while (n < kept && cum < o.top_p * total) cum += p[size_t(n++)];
    kept = std::max<int64_t>(n, 1);
    total = std::accumulate(p.begin(), p.begin() + kept, 0.0);
  }
  const double u = gen.next_uniform() * total;
  double acc = 0;
  for (int64_t i = 0; i < kept; ++i) {
    acc += p[size_t(i)];
    if (u < acc) return order[size_t(i)];
  }
  return order[size_t(kept - 1)];   // u within rounding of the total
}

// The logits (V) of the last position after `context`, with or without the KV caches.
class NextToken {
 public:
  NextToken(Transformer& model, bool use_cache, Device device) : model_(model), use_cache_(use_cache), device_(device) {
    if (use_cache_) caches_.resize(size_t(model.config().n_layer));
  }
  // A new sample: nothing cached.
  void reset() {
    for (nn::KVCache& c : caches_) c.length = 0;
    pending_ = 0;
  }
  // `context` grew by `added` tokens since the last call (the whole prompt at first).
  std::vector<float> logits(const std::vector<int64_t>& context, int64_t added) {
    const int64_t block = model_.config().block_size, n = int64_t(context.size());
    pending_ += added;
    int64_t feed = use_cache_ ? pending_ : std::min(n, block);
    if (use_cache_ && caches_[0].length + pending_ > block) {   // context shift (see the file comment)
      feed = std::min(n, caches_[0].length == 0 ? block : block - block / 2);
      for (nn::KVCache& c : caches_) c.length = 0;
    }
    pending_ = 0;
    const Tensor idx =
        from_vector<int64_t>(std::vector<int64_t>(context.end() - feed, context.end()), {1, feed}, device_);
    const Tensor out = model_.forward(idx, use_cache_ ? &caches_ : nullptr);   // (1, feed, V) on device_
    return out.narrow(1, feed - 1, 1).to_vector<float>();   // the last row, copied to the CPU for sampling
  }

 private:
  Transformer& model_;
  bool use_cache_;
  Device device_;                     // the model's
  std::vector<nn::KVCache> caches_;   // one per layer (empty without the cache), on device_
  int64_t pending_ = 0;               // tokens at the end of the context not in the caches yet
};

}  // namespace

void add_generate_command(CLI::App& app, GenerateOptions& o) {
  CLI::App* c = app.add_subcommand("generate", "sample text from a checkpoint, streamed token by token");
  c->option_defaults()->always_capture_default();
  c->add_option("--checkpoint", o.checkpoint, "checkpoint file, or a training directory (its best, else last)")
      ->required();
  c->add_option("--prompt", o.prompt,
                "text to continue, a newline by default as nanoGPT (every character must be in the checkpoint's vocabulary)")
      ->check(CLI::Validator(
          [](std::string& s) { return s.empty() ? std::string("the prompt is empty; give at least one character") : std::string(); },
          "NONEMPTY"))
      ->default_str("\\n");
  c->add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate per sample")
      ->check(finite_in(0, 1e9, false, "[0, 1e9]"));
  c->add_option("--num-samples", o.num_samples, "samples to draw, one after another")
      ->check(finite_in(1, 1e6, false, "[1, 1e6]"));
  c->add_option("--temperature", o.temperature, "divide the logits by this (< 1: more conservative, > 1: more random)")
      ->check(finite_in(0, HUGE_VAL, true, "POSITIVE"));
  c->add_option("--top-k", o.top_k, "sample only among the k most likely tokens (0, or k >= the vocabulary: no top-k filter)")
      ->check(finite_in(0, 1e9, false, "[0, 1e9]"));
  c->add_option("--top-p", o.top_p, "nucleus sampling: the most likely tokens up to this probability (1: off)")
      ->check(finite_in(0, 1, true, "(0, 1]"));
  c->add_option("--seed", o.seed, "seed of the sampling generator (same seed, same text)")
      ->check(finite_in(0, HUGE_VAL, false, "NONNEGATIVE"));
  c->add_flag("--no-kv-cache", o.no_kv_cache, "recompute the whole context for every token (nanoGPT's way; slower)");
  c->add_option("--threads", o.threads, "CPU threads")->check(finite_in(1, 1024, false, "[1, 1024]"));
  add_device_flag(*c, o.device);
}

int run_generate(const GenerateOptions& o) {
  set_num_threads(int(o.threads));
  Loaded l = load_llm(o.checkpoint);   // on the CPU
  const RunDevice run_device = choose_device(o.device, 1, l.quantized ? l.path : "");
  Transformer& model = *l.model;
  model.to(run_device.device);
  model.eval();
  autograd::NoGradGuard no_grad;
  std::vector<int64_t> prompt;
  try {
    prompt = l.tokenizer->encode(o.prompt);
  } catch (const Error& e) {
    MOX_FAIL("--prompt cannot be encoded with the tokenizer of checkpoint '", l.path, "' (", l.tokenizer->describe(),
             "): ", e.what());
  }
  const std::string weights = l.quantized ? std::string("int8 weights")
                                           : str(model.num_parameters(), " float parameters");
  std::fprintf(stderr, "mox-llm generate: %s — %s, %s, %s, KV cache %s, %s\n", l.path.c_str(), model.repr().c_str(),
               weights.c_str(), l.tokenizer->describe().c_str(), o.no_kv_cache ? "off" : "on",
               run_device.summary.c_str());

  Generator gen(o.seed);
  NextToken next(model, !o.no_kv_cache, run_device.device);
  Streamer out(*l.tokenizer);
  const Clock::time_point start = Clock::now();
  for (int64_t s = 0; s < o.num_samples; ++s) {
    std::vector<int64_t> context = prompt;
    next.reset();
    out.write_text(o.prompt);
    int64_t added = int64_t(prompt.size());
    for (int64_t t = 0; t < o.max_new_tokens; ++t) {
      const int64_t id = sample_token(next.logits(context, added), o, gen);
      context.push_back(id);
      added = 1;
      out.token(id);
    }
    out.end_sample();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t tokens = o.num_samples * o.max_new_tokens;
  std::fprintf(stderr, "mox-llm generate: %lld tokens in %.2f s, %.1f tokens/s (%lld thread%s)\n", (long long)tokens,
               seconds, seconds > 0 ? double(tokens) / seconds : 0.0, (long long)o.threads, o.threads == 1 ? "" : "s");
  return 0;
}

}  // namespace mox::llm
