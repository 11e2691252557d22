// workloads.cpp — the mox side of `make bench-compare` (bench/compare.py): one workload per
// process, its throughput printed as the last line "result <value> <unit>".
//
//   build/bin/mox-workloads NAME [--seconds S] [--warmup N] [--threads N] [--attention K]
//                                [--capacity-factor F | --dropless] [--per-expert]   (moe_layer only)
//
// Every workload has a twin of the same name in bench/torch_workloads.py that does the same
// work in PyTorch (same shapes, initialisation scheme, optimizer and hyper-parameters); the
// list, with what one "step" is, is kWorkloads below. A run does N warm-up steps, then steps
// until S seconds have passed (at least 3), and reports units / elapsed wall time. Inputs
// are random tensors made up front, except the LLM's token batches, drawn each step on both
// sides (data loading is not what is compared).
//
// What it is not: a statistics harness — repetitions, interleaving with PyTorch, medians and
// peak RSS are compare.py's job; this program runs one workload once. --per-expert runs the
// MoE layer's experts module by module instead of as grouped GEMMs (MoEConfig::grouped_gemm),
// the A/B of moe/README.md. --attention auto|fused|materialized picks the attention kernel
// (set_attention_kernel) of the LLM workloads, the A/B of bench/RESULTS.md "Attention kernels".
#include <immintrin.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "examples/cifar10/net.h"
#include "examples/llm/model.h"
#include "moe/moe_layer.h"
#include "moe/param_groups.h"
#include "nn/basic.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/optim/adam.h"
#include "nn/optim/clip_grad.h"
#include "nn/optim/sgd.h"
#include "tensor/cpu/threads.h"
#include "tensor/ops.h"

namespace {

using namespace mox;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string name;
  double seconds = 3.0;
  int warmup = 3;
  int threads = 2;
  double capacity_factor = 1.0;   // moe_layer
  bool dropless = false;          // moe_layer
  bool per_expert = false;        // moe_layer: MoEConfig::grouped_gemm = false
  AttentionKernel attention = AttentionKernel::automatic;
};

// One step of a workload and the units (images, tokens, FLOPs, ...) it processes.
struct Workload {
  Workload(std::function<void()> step_fn, double units, std::string unit_name, double value_scale = 1.0)
      : step(std::move(step_fn)), units_per_step(units), unit(std::move(unit_name)), scale(value_scale) {}
  std::function<void()> step;
  double units_per_step;
  std::string unit;
  double scale = 1.0;   // the printed value is units/s · scale (1e-9 for GFLOP/s)
  std::function<std::string()> note;   // optional: a line printed after the run (e.g. drops)
};

double measure(const Workload& w, const Args& a) {
  for (int i = 0; i < a.warmup; ++i) w.step();
  const auto start = Clock::now();
  int64_t steps = 0;
  double elapsed = 0;
  while (steps < 3 || elapsed < a.seconds) {
    w.step();
    ++steps;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return double(steps) * w.units_per_step / elapsed * w.scale;
}

// ---- 1. machine peak and GEMM ----------------------------------------------------------

// Peak single-precision FMA throughput of the cores: 16 independent 512-bit (or 256-bit) FMA
// chains per thread, enough to fill both FMA ports whatever their latency.
__attribute__((target("avx512f"))) double fma_flops_avx512(int64_t iters) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  float lanes[16], sink = 0;
  for (int i = 0; i < 16; ++i) {
    _mm512_storeu_ps(lanes, acc[i]);
    for (float l : lanes) sink += l;
  }
  if (sink == 12345.f) std::puts("");   // keeps the chains alive
  return double(iters) * 16 * 16 * 2;
}
__attribute__((target("avx2,fma"))) double fma_flops_avx2(int64_t iters) {
  __m256 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float lanes[8], sink = 0;
  for (int i = 0; i < 16; ++i) {
    _mm256_storeu_ps(lanes, acc[i]);
    for (float l : lanes) sink += l;
  }
  if (sink == 12345.f) std::puts("");
  return double(iters) * 16 * 8 * 2;
}

Workload fma_peak(int threads) {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  std::printf("FMA peak with %s, %d threads\n", avx512 ? "AVX-512" : "AVX2", threads);
  constexpr int64_t kIters = 2'000'000;
  return {[=] {
            #pragma omp parallel num_threads(threads)
            { avx512 ? fma_flops_avx512(kIters) : fma_flops_avx2(kIters); }
          },
          double(threads) * kIters * 16 * (avx512 ? 16 : 8) * 2, "GFLOP/s", 1e-9};
}

// C (m, n) = A (m, k) · B (k, n), f32.
Workload gemm(int64_t m, int64_t k, int64_t n) {
  Tensor a = raw::normal({m, k}, 0, 1), b = raw::normal({k, n}, 0, 1);
  return {[=] { raw::matmul(a, b); }, 2.0 * double(m) * double(k) * double(n), "GFLOP/s", 1e-9};
}

// ---- 2, 3. the CIFAR-10 tutorial Net ---------------------------------------------------

// One step = zero_grad, forward, cross-entropy (+ 0.01·l_aux with MoE), backward, SGD
// (lr 0.001, momentum 0.9) on a fixed batch (B, 3, 32, 32). MoE: fc3 → one MoE layer of 4
// Linear(84, 84) experts, top-1, RSample, random token selection (run_moe.sh's recipe).
Workload cifar(int64_t batch, bool moe) {
  manual_seed(0);
  std::shared_ptr<cifar10::Net> model;
  if (moe) {
    cifar10::MoeOptions mo;
    mo.num_experts = {4};
    mo.gate.k = 1;
    mo.gate.noisy_gate_policy = moe::NoisyGatePolicy::rsample;
    model = std::make_shared<cifar10::Net>(&mo);
  } else {
    model = std::make_shared<cifar10::Net>();
  }
  optim::SgdOptions so;
  so.lr = 0.001;
  so.momentum = 0.9;
  auto opt = std::make_shared<optim::Sgd>(model->named_parameters(), so);
  Tensor images = raw::normal({batch, 3, 32, 32}, 0, 1);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[size_t(i)] = i % 10;
  Tensor target = from_vector<int64_t>(labels, {batch});
  return {[=] {
            opt->zero_grad();
            Tensor loss = nn::cross_entropy(model->forward(images), target);
            for (const moe::MoE* l : model->moe_layer_list()) loss = loss + l->last().l_aux * 0.01;
            loss.backward();
            opt->step();
            (void)loss.item<float>();
          },
          double(batch), "images/s"};
}

// ---- 4, 6. the shakespeare-cpu transformer -----------------------------------------------

// nanoGPT's shakespeare-cpu model: 4 layers, 4 heads, 128 embd, block 64, vocabulary 65, no
// biases, no dropout. MoE: every other layer's MLP is a top-2 MoE of 4 MLPs (capacity
// factor 1, min capacity 4), l_aux added with 0.01.
llm::ModelConfig gpt_config(bool moe) {
  llm::ModelConfig c;
  c.vocab_size = 65;
  if (moe) {
    c.num_experts = {4};
    c.expert_interval = 2;
    c.gate.k = 2;
  }
  return c;
}

// One training iteration on a random (12, 64) batch: forward, cross-entropy (+ aux), backward,
// clip to norm 1, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1 on ≥ 2-D parameters).
Workload gpt_train(bool moe) {
  const llm::ModelConfig cfg = gpt_config(moe);
  auto gen = std::make_shared<Generator>(0);
  auto model = std::make_shared<llm::Transformer>(cfg, gen);
  nn::NamedTensors decay, no_decay;
  for (auto& [name, p] : model->named_parameters()) (p.dim() >= 2 ? decay : no_decay).emplace_back(name, p);
  std::vector<optim::ParamGroup> groups{optim::make_group("decay", decay), optim::make_group("no_decay", no_decay)};
  for (auto& g : groups) {
    g.lr = 1e-3;
    g.beta1 = 0.9;
    g.beta2 = 0.99;
    g.weight_decay = g.name == "decay" ? 0.1 : 0.0;
  }
  auto opt = std::make_shared<optim::AdamW>(moe::split_moe_param_groups(std::move(groups), *model));
  const int64_t B = 12, T = cfg.block_size, V = cfg.vocab_size;
  auto data = std::make_shared<Generator>(1);
  return {[=] {
            Tensor x = raw::uniform({B, T}, 0, double(V), DType::f32, Device::cpu(), data.get()).to(DType::i64);
            Tensor y = raw::uniform({B, T}, 0, double(V), DType::f32, Device::cpu(), data.get()).to(DType::i64);
            Tensor logits = model->forward(x);   // (B, T, V)
            Tensor loss = nn::cross_entropy(logits.reshape({-1, V}), y.reshape({-1})) + model->aux_loss(0.01);
            opt->zero_grad();
            loss.backward();
            optim::clip_grad_norm(model->parameters(), 1.0);
            opt->step();
            (void)loss.item<float>();
          },
          double(B * T), "tokens/s"};
}

// Greedy generation of 500 tokens after a one-token prompt with the KV cache, mox-llm's
// context shift (when the cache is full, refill it with the last block/2 tokens). One step =
// one 500-token sample from a fresh cache; the model is untrained (speed does not depend on
// the weights).
Workload gpt_generate() {
  const llm::ModelConfig cfg = gpt_config(false);
  auto model = std::make_shared<llm::Transformer>(cfg, std::make_shared<Generator>(0));
  model->eval();
  constexpr int64_t kNewTokens = 500;
  return {[=] {
            autograd::NoGradGuard no_grad;
            std::vector<nn::KVCache> caches(size_t(cfg.n_layer));
            std::vector<int64_t> context{0};
            int64_t feed = 1;
            for (int64_t i = 0; i < kNewTokens; ++i) {
              if (caches[0].length + feed > cfg.block_size) {
                feed = cfg.block_size - cfg.block_size / 2;
                for (nn::KVCache& c : caches) c.length = 0;
              }
              Tensor idx = from_vector<int64_t>(std::vector<int64_t>(context.end() - feed, context.end()), {1, feed});
              const std::vector<float> logits = model->forward(idx, &caches).narrow(1, feed - 1, 1).to_vector<float>();
              int64_t best = 0;
              for (size_t v = 1; v < logits.size(); ++v)
                if (logits[v] > logits[size_t(best)]) best = int64_t(v);
              context.push_back(best);
              feed = 1;
            }
          },
          double(kNewTokens), "tokens/s"};
}

// ---- 5. the MoE layer alone ------------------------------------------------------------

constexpr int64_t kTokens = 8192, kHidden = 512, kFfn = 2048, kExperts = 8, kTopK = 2;

std::shared_ptr<nn::Module> ffn(int64_t hidden) {   // Linear → GELU → Linear, with biases
  auto s = std::make_shared<nn::Sequential>();
  s->push_back(std::make_shared<nn::Linear>(kHidden, hidden));
  s->push_back(std::make_shared<nn::GELU>());
  s->push_back(std::make_shared<nn::Linear>(hidden, kHidden));
  return s;
}

// Forward, sum, backward to the input and every weight (no optimizer step) on x (8192, 512).
Workload layer_fwd_bwd(std::shared_ptr<nn::Module> layer) {
  Tensor x = raw::normal({kTokens, kHidden}, 0, 1);
  x.set_requires_grad(true);
  return {[=]() mutable {
            layer->zero_grad();
            x.set_grad(Tensor());
            Tensor loss = sum(layer->forward(x));
            loss.backward();
            (void)loss.item<float>();
          },
          double(kTokens), "tokens/s"};
}

// S = 8192 tokens, hidden 512, E = 8 experts FFN 512→2048→512 (GELU), k = 2, no noise.
Workload moe_layer(const Args& a) {
  manual_seed(0);
  moe::MoEConfig cfg;
  cfg.gate.num_experts = kExperts;
  cfg.gate.k = kTopK;
  cfg.gate.top2_2nd_expert_sampling = false;
  cfg.gate.drop_tokens = !a.dropless;
  cfg.gate.capacity_factor = a.capacity_factor;
  cfg.grouped_gemm = !a.per_expert;
  auto layer = std::make_shared<moe::MoE>(kHidden, [] { return ffn(kFfn); }, cfg);
  Workload w = layer_fwd_bwd(layer);
  w.note = [layer] {
    return "dropped fraction " + std::to_string(double(layer->last().routing.dropped) / double(kTokens * kTopK));
  };
  return w;
}

// The dense FFN of the same active FLOPs: each token runs k experts, so hidden k·2048.
Workload dense_ffn() {
  manual_seed(0);
  return layer_fwd_bwd(ffn(kTopK * kFfn));
}

struct Entry {
  const char* name;
  const char* what;
};
const std::vector<Entry> kWorkloads = {
    {"peak", "the cores' single-precision FMA peak (GFLOP/s)"},
    {"sgemm_1024", "C = A·B, 1024×1024×1024, f32 (GFLOP/s)"},
    {"gemm_768x768x3072", "C (768, 3072) = A (768, 768) · B (768, 3072), f32 (GFLOP/s)"},
    {"cifar_b4", "CIFAR-10 Net training step, batch 4 (images/s)"},
    {"cifar_b64", "CIFAR-10 Net training step, batch 64 (images/s)"},
    {"cifar_moe_b64", "CIFAR-10 MoE Net (4 experts, top-1) training step, batch 64 (images/s)"},
    {"gpt_dense", "shakespeare-cpu training iteration, dense (tokens/s)"},
    {"gpt_moe", "shakespeare-cpu training iteration, MoE every other layer (tokens/s)"},
    {"moe_layer", "MoE layer fwd+bwd, S 8192, hidden 512, FFN 2048, E 8, k 2 (tokens/s)"},
    {"dense_ffn", "dense FFN 512→4096→512 fwd+bwd, 8192 tokens (tokens/s)"},
    {"generate", "greedy generation with the KV cache, 500 tokens (tokens/s)"},
};

Workload make_workload(const Args& a) {
  const std::string& n = a.name;
  if (n == "peak") return fma_peak(a.threads);
  if (n == "sgemm_1024") return gemm(1024, 1024, 1024);
  if (n == "gemm_768x768x3072") return gemm(768, 768, 3072);
  if (n == "cifar_b4") return cifar(4, false);
  if (n == "cifar_b64") return cifar(64, false);
  if (n == "cifar_moe_b64") return cifar(64, true);
  if (n == "gpt_dense") return gpt_train(false);
  if (n == "gpt_moe") return gpt_train(true);
  if (n == "moe_layer") return moe_layer(a);
  if (n == "dense_ffn") return dense_ffn();
  return gpt_generate();   // "generate" (names were checked by parse)
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "mox-workloads: %s\nusage: mox-workloads NAME [--seconds S] [--warmup N] [--threads N] "
                       "[--attention auto|fused|materialized] [--capacity-factor F | --dropless] [--per-expert]\n"
                       "workloads:\n", why.c_str());
  for (const Entry& e : kWorkloads) std::fprintf(stderr, "  %-18s %s\n", e.name, e.what);
  std::exit(2);
}

double number(const std::string& flag, const char* text) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(v > 0)) usage(flag + " needs a positive number, got '" + text + "'");
  return v;
}

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) usage("no workload given");
  a.name = argv[1];
  bool known = false;
  for (const Entry& e : kWorkloads) known = known || a.name == e.name;
  if (!known) usage("unknown workload '" + a.name + "'");
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--dropless" || f == "--per-expert") {
      (f == "--dropless" ? a.dropless : a.per_expert) = true;
      continue;
    }
    if (i + 1 >= argc) usage(f + " needs a value");
    const char* v = argv[++i];
    if (f == "--seconds") a.seconds = number(f, v);
    else if (f == "--warmup") a.warmup = int(number(f, v));
    else if (f == "--threads") a.threads = int(number(f, v));
    else if (f == "--capacity-factor") a.capacity_factor = number(f, v);
    else if (f == "--attention") {
      try {
        a.attention = parse_attention_kernel(v);
      } catch (const Error& e) {
        usage(e.what());
      }
    } else usage("unknown flag '" + f + "'");
  }
  if ((a.dropless || a.per_expert || a.capacity_factor != 1.0) && a.name != "moe_layer")
    usage("--capacity-factor, --dropless and --per-expert apply to moe_layer only");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  configure_cpu_runtime(argv);   // OpenMP wait policy and OpenBLAS kernels, as every mox program
  const Args a = parse(argc, argv);
  set_num_threads(a.threads);
  set_attention_kernel(a.attention);
  const Workload w = make_workload(a);
  const double value = measure(w, a);
  if (w.note) std::printf("%s\n", w.note().c_str());
  std::printf("result %.6g %s\n", value, w.unit.c_str());
  return 0;
}
