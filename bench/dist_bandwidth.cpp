// dist_bandwidth.cpp — all_reduce and all_to_all bandwidth of ProcessGroup, nccl-tests style:
// CPU tensors over MPI and, where a GPU is visible, CUDA tensors over NCCL.
//
//   scripts/moxrun --num_gpus 2 build/bin/mox-dist_bandwidth [--min-bytes 1K] [--max-bytes 256M]
//       [--device all|cpu|cuda] [--iters 20] [--warmup 3]
//
// For each size S (bytes of f32 per rank, doubling from --min-bytes to --max-bytes) it times
// `iters` back-to-back collectives after `warmup` untimed ones; time is the slowest rank's
// mean per call (every collective returns when complete: MPI's test loop, NCCL's event
// poll). algbw = S / time; busbw = algbw · 2(n−1)/n for all_reduce (sum, in place) and
// algbw · (n−1)/n for all_to_all (even splits, S/n to each rank), the factors of nccl-tests
// (doc/PERFORMANCE.md there) that make busbw comparable with the links' bandwidth.
// Large sizes use fewer iterations (at most 1 GiB moved per size and rank, at least 3).
//
// One rank: ProcessGroup's one-rank collectives are local copies, so the CPU part is
// skipped; the CUDA part then times the NCCL transport itself over a one-rank communicator
// (dist::make_cuda_transport) — which has no inter-GPU traffic at all: busbw is 0 by
// definition and algbw is a device-local copy (all_to_all) or a no-op kernel (all_reduce).
// Several ranks on CUDA need one GPU per rank (NCCL refuses two ranks on one GPU).
// Run plainly (`make bench`) it is such a one-rank run and prints that note.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "dist/transport.h"
#include "dist/world.h"
#include "tensor/backend.h"
#include "tensor/cpu/threads.h"
#include "tensor/ops.h"

namespace {

using namespace mox;
using Clock = std::chrono::steady_clock;

// "1K", "256M", "1G", "4096" → bytes.
int64_t parse_bytes(const std::string& text) {
  size_t end = 0;
  double v = 0;
  try {
    v = std::stod(text, &end);
  } catch (const std::exception&) {
    MOX_FAIL("'", text, "' is not a size (e.g. 1K, 256M)");
  }
  const std::string unit = text.substr(end);
  double mult = 1;
  if (unit == "K" || unit == "k") mult = 1024;
  else if (unit == "M" || unit == "m") mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") mult = 1024.0 * 1024 * 1024;
  else MOX_CHECK(unit.empty() || unit == "B", "'", text, "': unknown unit '", unit, "' (K, M or G)");
  MOX_CHECK(v > 0, "'", text, "' must be positive");
  return int64_t(v * mult);
}

struct Options {
  int64_t min_bytes = 1024, max_bytes = int64_t(256) << 20;
  std::string device = "all";
  int iters = 20, warmup = 3;
};

// Mean seconds per call of `call` on this rank, then the maximum over ranks.
double time_per_call(dist::ProcessGroup& world, int iters, int warmup, const std::function<void()>& call) {
  for (int i = 0; i < warmup; ++i) call();
  world.barrier();
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) call();
  const double mine = std::chrono::duration<double>(Clock::now() - t0).count() / iters;
  Tensor t = from_vector<double>({mine}, {1});
  world.all_reduce(t, dist::ReduceOp::max);
  return t.item<double>();
}

int iterations(const Options& o, int64_t bytes) {
  const int64_t cap = (int64_t(1) << 30) / std::max<int64_t>(bytes, 1);
  return int(std::max<int64_t>(3, std::min<int64_t>(o.iters, cap)));
}

void header(dist::ProcessGroup& world, const char* what) {
  if (world.rank() != 0) return;
  std::printf("# %s, %d rank%s\n", what, world.size(), world.size() == 1 ? "" : "s");
  std::printf("#%12s %12s %12s %12s %12s %12s\n", "collective", "size(B)", "count(f32)", "time(us)", "algbw(GB/s)",
              "busbw(GB/s)");
}

void row(dist::ProcessGroup& world, const char* op, int64_t bytes, double seconds, double bus_factor) {
  if (world.rank() != 0) return;
  const double algbw = double(bytes) / seconds / 1e9;
  std::printf(" %12s %12lld %12lld %12.1f %12.3f %12.3f\n", op, (long long)bytes, (long long)(bytes / 4), seconds * 1e6,
              algbw, algbw * bus_factor);
  std::fflush(stdout);
}

// all_reduce and all_to_all through ProcessGroup's public collectives on `device`.
void measure_group(dist::ProcessGroup& world, const Options& o, Device device) {
  const int n = world.size();
  const double ar_factor = 2.0 * (n - 1) / n, a2a_factor = double(n - 1) / n;
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2) {
    const int64_t count = bytes / 4;
    Tensor t = zeros({count}, DType::f32, device);
    row(world, "all_reduce", count * 4,
        time_per_call(world, iterations(o, bytes), o.warmup, [&] { world.all_reduce(t); }), ar_factor);
  }
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2) {
    const int64_t count = bytes / 4 / n * n;   // even splits
    if (count == 0) continue;
    Tensor t = zeros({count}, DType::f32, device);
    const std::vector<int64_t> split(static_cast<size_t>(n), count / n);
    row(world, "all_to_all", count * 4,
        time_per_call(world, iterations(o, bytes), o.warmup, [&] { world.all_to_all(t, split, split); }), a2a_factor);
  }
}

// The NCCL transport over one rank (what ProcessGroup never builds: its one-rank collectives
// are copies): the only NCCL path a one-GPU machine has.
void measure_one_rank_nccl(dist::ProcessGroup& world, const Options& o) {
  std::unique_ptr<dist::CudaTransport> nccl = dist::make_cuda_transport(world, "dist_bandwidth");
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2) {
    const int64_t count = bytes / 4;
    Tensor t = zeros({count}, DType::f32, Device::cuda());
    row(world, "all_reduce", count * 4, time_per_call(world, iterations(o, bytes), o.warmup, [&] {
          nccl->allreduce_raw(t.raw_data(), count, DType::f32, dist::ReduceOp::sum);
        }), 0.0);
  }
  for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2) {
    const int64_t count = bytes / 4;
    Tensor t = zeros({count}, DType::f32, Device::cuda()), out = empty({count}, DType::f32, Device::cuda());
    row(world, "all_to_all", count * 4, time_per_call(world, iterations(o, bytes), o.warmup, [&] {
          nccl->alltoallv_raw(t.raw_data(), {count * 4}, out.raw_data(), {count * 4});
        }), 0.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  configure_cpu_runtime(argv);
  CLI::App app{"mox-dist_bandwidth: all_reduce / all_to_all bandwidth of ProcessGroup (MPI on CPU, NCCL on CUDA), "
               "nccl-tests style; run under scripts/moxrun"};
  Options o;
  std::string min_text = "1K", max_text = "256M";
  app.add_option("--min-bytes", min_text, "smallest size per rank (default 1K)");
  app.add_option("--max-bytes", max_text, "largest size per rank (default 256M)");
  app.add_option("--device", o.device, "all (cpu, then cuda when a GPU is visible), cpu or cuda")
      ->check(CLI::IsMember({"all", "cpu", "cuda"}));
  app.add_option("--iters", o.iters, "timed calls per size (fewer for large sizes, at least 3)")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed calls per size")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  dist::ProcessGroup& world = dist::init();
  try {
    o.min_bytes = parse_bytes(min_text);
    o.max_bytes = parse_bytes(max_text);
    MOX_CHECK(o.min_bytes >= 4 && o.min_bytes <= o.max_bytes, "--min-bytes ", min_text,
              " must be at least 4 and at most --max-bytes ", max_text);
    const int n = world.size();
    if (world.rank() == 0)
      std::printf("# mox-dist_bandwidth: f32, sizes %lld..%lld B per rank; algbw = size/time, busbw = algbw x %s "
                  "(all_reduce) / %s (all_to_all), as nccl-tests\n",
                  (long long)o.min_bytes, (long long)o.max_bytes, "2(n-1)/n", "(n-1)/n");
    if (o.device != "cuda") {
      if (n == 1) {
        if (world.rank() == 0)
          std::printf("# cpu (MPI): skipped — one rank, whose collectives are local copies; run under "
                      "scripts/moxrun --num_gpus N (N >= 2)\n");
      } else {
        header(world, "cpu tensors, MPI (OpenMPI)");
        measure_group(world, o, Device::cpu());
      }
    }
    if (o.device != "cpu") {
      const std::string why = dist::cuda_transport_unavailable();
      if (!why.empty()) {
        MOX_CHECK(o.device != "cuda", "--device cuda: ", why);
        if (world.rank() == 0) std::printf("# cuda (NCCL): skipped — %s\n", why.c_str());
      } else if (n == 1) {
        header(world, "cuda tensors, NCCL over a one-rank communicator (one GPU: no inter-GPU traffic, busbw 0 by "
                      "definition; algbw is a device-local copy or a no-op)");
        measure_one_rank_nccl(world, o);
      } else {
        header(world, "cuda tensors, NCCL");
        measure_group(world, o, Device::cuda());
      }
    }
    return dist::finish(0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mox-dist_bandwidth (rank %d): %s\n", world.rank(), e.what());
    return dist::finish(1);
  }
}
