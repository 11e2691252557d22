// eval.cpp — `mox-llm eval`: validation loss and perplexity of a checkpoint (float or int8).
//
// The corpus is split as in training (TextDataset: the first 90 % train, the rest
// validation) and tokenized with the checkpoint's own tokenizer. --eval-iters 0 (the
// default) scores every token of the validation split exactly once: the split is cut into
// consecutive non-overlapping blocks of block_size inputs (each predicting the next
// block_size tokens; the last, shorter block included), so the n tokens of the split give
// n − 1 predictions, and the loss is their mean cross-entropy. The first tokens of each
// block see a short context, as in any non-overlapping evaluation, so this is a little
// pessimistic against a sliding window. --eval-iters N > 0 instead averages N random
// batches drawn from a Generator seeded 1337 (training's estimate: quicker, noisier).
// Perplexity is exp(loss).
//
// Device (--device): the model is loaded on the CPU and then moved (an int8 checkpoint stays
// on the CPU: choose_device); each batch is built on the CPU and moved; only the loss comes
// back.
//
// What it is not: the training loop's periodic estimate (train.cpp), a benchmark.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "datasets/text.h"
#include "examples/common/cli.h"
#include "examples/llm/checkpoint.h"
#include "examples/llm/commands.h"
#include "nn/loss.h"
#include "tensor/cpu/threads.h"

namespace mox::llm {
namespace {

using examples::finite_in;
constexpr uint64_t kRandomBatchSeed = 1337;

struct ValLoss {
  double loss = 0;       // mean cross-entropy per predicted token (nats)
  int64_t tokens = 0;    // predicted tokens
};

// Sum of the cross-entropies of `x` (B, T) → `y` (B, T), CPU tensors, computed on `device`.
double summed_loss(Transformer& model, const Tensor& x, const Tensor& y, Device device) {
  const Tensor logits = model.forward(x.to(device));   // (B, T, V)
  return nn::cross_entropy(logits.reshape({-1, logits.size(2)}), y.to(device).reshape({-1})).item<double>() *
         double(y.numel());
}

// Every token of the validation split, in consecutive blocks (see the file comment).
ValLoss whole_split(Transformer& model, const data::TextDataset& ds, int64_t batch_size, Device device) {
  const std::vector<int64_t> tokens = ds.tokens(data::Split::val).to_vector<int64_t>();
  const int64_t T = ds.block_size(), n = int64_t(tokens.size()), predictions = n - 1;
  double total = 0;
  // Full blocks, batch_size at a time: block b holds inputs tokens[b·T, b·T + T).
  const int64_t full = predictions / T;
  for (int64_t b0 = 0; b0 < full; b0 += batch_size) {
    const int64_t B = std::min(batch_size, full - b0);
    std::vector<int64_t> x(size_t(B * T)), y(size_t(B * T));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        x[size_t(b * T + t)] = tokens[size_t((b0 + b) * T + t)];
        y[size_t(b * T + t)] = tokens[size_t((b0 + b) * T + t + 1)];
      }
    total += summed_loss(model, from_vector<int64_t>(x, {B, T}), from_vector<int64_t>(y, {B, T}), device);
  }
  // The last, shorter block: inputs tokens[full·T, n − 1).
  if (const int64_t rest = predictions - full * T; rest > 0) {
    const auto first = tokens.begin() + full * T;
    total += summed_loss(model, from_vector<int64_t>(std::vector<int64_t>(first, first + rest), {1, rest}),
                         from_vector<int64_t>(std::vector<int64_t>(first + 1, first + 1 + rest), {1, rest}), device);
  }
  return {total / double(predictions), predictions};
}

// The mean over `iters` random batches (training's estimate, on its own fixed seed).
ValLoss random_batches(Transformer& model, const data::TextDataset& ds, int64_t batch_size, int64_t iters,
                       Device device) {
  Generator gen(kRandomBatchSeed);
  double total = 0;
  int64_t tokens = 0;
  for (int64_t i = 0; i < iters; ++i) {
    const data::TextBatch b = ds.sample(data::Split::val, batch_size, gen);   // x, y (B, T)
    total += summed_loss(model, b.x, b.y, device);
    tokens += b.y.numel();
  }
  return {total / double(tokens), tokens};
}

}  // namespace

std::string default_corpus() {
  if (const char* root = std::getenv("MOX_DATA"); root && *root) return std::string(root) + "/tinyshakespeare/input.txt";
  return "data/tinyshakespeare/input.txt";
}

void add_eval_command(CLI::App& app, EvalOptions& o) {
  CLI::App* c = app.add_subcommand("eval", "validation loss and perplexity of a checkpoint");
  c->option_defaults()->always_capture_default();
  c->add_option("--checkpoint", o.checkpoint, "checkpoint file, or a training directory (its best, else last)")
      ->required();
  c->add_option("--data", o.data, "corpus file, split 90/10 as in training (default $MOX_DATA/tinyshakespeare/input.txt)");
  c->add_option("--batch-size", o.batch_size, "sequences per forward")->check(finite_in(1, 1e9, false, "[1, 1e9]"));
  c->add_option("--eval-iters", o.eval_iters,
                "0: every token of the validation split, in consecutive blocks; N: N random batches (seed 1337)")
      ->check(finite_in(0, 1e9, false, "[0, 1e9]"));
  c->add_option("--threads", o.threads, "CPU threads")->check(finite_in(1, 1024, false, "[1, 1024]"));
  add_device_flag(*c, o.device);
}

int run_eval(const EvalOptions& o) {
  set_num_threads(int(o.threads));
  Loaded l = load_llm(o.checkpoint);   // on the CPU
  const RunDevice run_device = choose_device(o.device, 1, l.quantized ? l.path : "");
  std::error_code ec;
  MOX_CHECK(std::filesystem::is_regular_file(o.data, ec), "corpus '", o.data,
            "' not found: run `make data`, set MOX_DATA to the folder holding tinyshakespeare/, or pass --data FILE");
  const data::TextDataset ds(o.data, l.tokenizer, l.config.block_size);
  Transformer& model = *l.model;
  model.to(run_device.device);
  model.eval();
  autograd::NoGradGuard no_grad;
  const ValLoss v = o.eval_iters == 0 ? whole_split(model, ds, o.batch_size, run_device.device)
                                      : random_batches(model, ds, o.batch_size, o.eval_iters, run_device.device);
  const std::string how = o.eval_iters == 0
                              ? str("the whole validation split (", ds.size(data::Split::val), " tokens) in blocks of ",
                                    ds.block_size())
                              : str(o.eval_iters, " random batches of ", o.batch_size, "x", ds.block_size(), ", seed ",
                                    kRandomBatchSeed);
  std::printf("mox-llm eval: %s: val loss %.4f, perplexity %.2f, %lld predicted tokens (%s), %s, %s\n", l.path.c_str(),
              v.loss, std::exp(v.loss), (long long)v.tokens, how.c_str(), l.quantized ? "quantized int8" : "float32",
              run_device.summary.c_str());
  return 0;
}

}  // namespace mox::llm
