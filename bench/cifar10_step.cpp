// cifar10_step.cpp — training-step throughput of the tutorial Net (images/s).
//
// One step = zero_grad, forward, cross-entropy, backward, SGD(momentum) update, on a
// fixed synthetic batch (data loading is measured separately by the full-epoch run in
// bench/RESULTS.md). Run: build/bin/mox-cifar10_step [--benchmark_filter=...]; thread
// count from OMP_NUM_THREADS (the Makefile's bench target sets 2).
#include <benchmark/benchmark.h>
#include <omp.h>

#include "examples/cifar10/net.h"
#include "nn/loss.h"
#include "nn/optim/sgd.h"
#include "tensor/cpu/threads.h"

namespace {

void BM_Cifar10TrainStep(benchmark::State& state) {
  const int64_t batch = state.range(0);
  mox::set_num_threads(omp_get_max_threads());
  mox::manual_seed(0);
  mox::cifar10::Net model;
  mox::optim::SgdOptions so;
  so.lr = 0.001;
  so.momentum = 0.9;
  mox::optim::Sgd opt(model.named_parameters(), so);
  mox::Tensor images = mox::raw::normal({batch, 3, 32, 32}, 0, 1);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[size_t(i)] = i % 10;
  mox::Tensor target = mox::from_vector<int64_t>(labels, {batch});
  for (auto _ : state) {
    opt.zero_grad();
    mox::Tensor loss = mox::nn::cross_entropy(model.forward(images), target);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  state.counters["images_per_s"] = benchmark::Counter(double(batch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}
BENCHMARK(BM_Cifar10TrainStep)->Arg(4)->Arg(32)->Arg(64)->Unit(benchmark::kMicrosecond)->MinTime(2.0);

}  // namespace

// The OpenMP wait policy and OpenBLAS kernels of every mox program (tensor/cpu/threads.h); set
// OMP_WAIT_POLICY=active to measure GNU OpenMP's spinning default instead.
int main(int argc, char** argv) {
  mox::configure_cpu_runtime(argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
