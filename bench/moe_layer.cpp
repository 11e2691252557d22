// moe_layer.cpp — MoE layer forward+backward tokens/s against a dense FFN of equal active FLOPs.
//
// The shape: S = 8192 tokens, hidden 512, expert FFN 512→2048→512 (GELU), E = 8,
// k = 2. Each token runs through k experts, so the dense FFN with the same active FLOPs has
// hidden k·2048 = 4096. One iteration = forward, sum, backward to the input and every
// weight (no optimizer step). Variants: capacity factor 1 (DeepSpeed's default: some tokens
// are dropped, reported as dropped_fraction), capacity factor 2, and dropless. Run:
// build/bin/mox-moe_layer; threads from OMP_NUM_THREADS (`make bench` sets 2).
#include <benchmark/benchmark.h>
#include <omp.h>

#include "moe/moe_layer.h"
#include "nn/basic.h"
#include "nn/container.h"
#include "tensor/cpu/threads.h"

namespace {

constexpr int64_t kTokens = 8192, kHidden = 512, kFfn = 2048, kExperts = 8, kTopK = 2;

std::shared_ptr<mox::nn::Module> ffn(int64_t hidden) {
  auto s = std::make_shared<mox::nn::Sequential>();
  s->push_back(std::make_shared<mox::nn::Linear>(kHidden, hidden));
  s->push_back(std::make_shared<mox::nn::GELU>());
  s->push_back(std::make_shared<mox::nn::Linear>(hidden, kHidden));
  return s;
}

void run(benchmark::State& state, mox::nn::Module& layer) {
  mox::Tensor x = mox::raw::normal({kTokens, kHidden}, 0, 1);
  x.set_requires_grad(true);
  for (auto _ : state) {
    layer.zero_grad();
    x.set_grad(mox::Tensor());
    mox::Tensor loss = mox::sum(layer.forward(x));
    loss.backward();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(double(kTokens), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

// range(0): capacity factor × 10 (10 → 1.0, 20 → 2.0); 0 = dropless.
void BM_MoeLayer(benchmark::State& state) {
  mox::set_num_threads(omp_get_max_threads());
  mox::manual_seed(0);
  mox::moe::MoEConfig cfg;
  cfg.gate.num_experts = kExperts;
  cfg.gate.k = kTopK;
  cfg.gate.drop_tokens = state.range(0) > 0;
  if (cfg.gate.drop_tokens) cfg.gate.capacity_factor = double(state.range(0)) / 10.0;
  mox::moe::MoE layer(kHidden, [] { return ffn(kFfn); }, cfg);
  run(state, layer);
  state.counters["dropped_fraction"] = double(layer.last().routing.dropped) / double(kTokens * kTopK);
}
// Wall-clock rates: routing runs on the main thread while the pool waits passively, so CPU
// time of the main thread alone would overstate both.
BENCHMARK(BM_MoeLayer)->Arg(10)->Arg(20)->Arg(0)->Unit(benchmark::kMillisecond)->MinTime(4.0)->UseRealTime();

void BM_DenseFfnEqualActiveFlops(benchmark::State& state) {
  mox::set_num_threads(omp_get_max_threads());
  mox::manual_seed(0);
  auto layer = ffn(kTopK * kFfn);
  run(state, *layer);
}
BENCHMARK(BM_DenseFfnEqualActiveFlops)->Unit(benchmark::kMillisecond)->MinTime(4.0)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  mox::configure_cpu_runtime(argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
