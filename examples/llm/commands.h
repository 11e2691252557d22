// commands.h — the subcommands of mox-llm: their options and entry points.
//
// main.cpp builds one CLI11 app with a subcommand per entry here; each add_*_command()
// registers its flags (with --help) and each run_*() returns the process exit code (0 ok,
// 1 runtime error is thrown as mox::Error and reported by main). Usage errors exit 2 in main.
// Distributed (train and distill, under scripts/moxrun): main starts dist::init() and
// passes the world size; the other commands run on one process.
// Devices: train, distill, generate and eval take --device cpu|cuda|cuda:0|auto
// (examples/common/device.h; choose_device below); quantize runs on the CPU.
// What it is not: the flag definitions (options.cpp and each command's file).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/llm/config.h"
#include "nn/optim/loss_scaler.h"
#include "tensor/device.h"

namespace CLI {
class App;
}

namespace mox::llm {

struct TrainOptions {
  std::string data;                 // corpus file (default $MOX_DATA/tinyshakespeare/input.txt)
  std::string tokenizer = "auto";   // auto | char | byte
  std::string preset;               // shakespeare-cpu | shakespeare-gpu
  ModelConfig model;                // architecture + MoE (vocab_size from the tokenizer)
  double moe_loss_coeff = 0.01;
  // batch_size: sequences per micro-batch over all ranks (the global batch, split evenly).
  int64_t batch_size = 12, max_iters = 2000, grad_accum = 1;
  double lr = 1e-3, min_lr = 1e-4;
  int64_t warmup_iters = 100, lr_decay_iters = 2000;
  double weight_decay = 0.1, beta1 = 0.9, beta2 = 0.99, grad_clip = 1.0;
  int64_t eval_interval = 250, eval_iters = 20, log_interval = 10;
  uint64_t seed = 1337;
  int64_t threads = 2;              // per rank; main uses $OMP_NUM_THREADS when --threads is not given
  std::string device = "auto";      // cpu | cuda | cuda:0 | auto (choose_device)
  int64_t ep_size = 1;              // expert-parallel size p: each MoE layer's experts over p ranks
  std::string out = "out-llm";      // checkpoint directory (last.safetensors, best.safetensors)
  bool out_given = false;           // --out was on the command line (set by main)
  bool resume = false;              // continue from <out>/last.safetensors
  std::string metrics;              // JSON-lines file
  bool detect_anomaly = false;      // autograd anomaly mode: the first NaN/inf names its op
  std::string dtype = "fp32";       // fp32 | fp16 | bf16 (examples/common/precision.h)
  optim::LossScalerConfig loss_scaler;   // fp16: DeepSpeed's dynamic loss scaler defaults
  std::string attention = "auto";   // auto | fused | materialized (set_attention_kernel)
  // distill only (Mixture-of-Students): teacher checkpoint, KD weight β, temperature, and the
  // iteration after which the KD term is dropped (staged KD; -1 = never).
  std::string teacher;
  double kd_beta = 1.0, kd_temp = 1.0;
  int64_t kd_stop_iter = -1;
  bool student_experts_given = false;   // distill: --num-experts was on the command line
};

struct GenerateOptions {
  std::string checkpoint;           // file or training directory
  std::string prompt = "\n";
  int64_t max_new_tokens = 500, num_samples = 1;
  double temperature = 0.8, top_p = 1.0;
  int64_t top_k = 200;              // 0 = no top-k filter
  uint64_t seed = 1337;
  bool no_kv_cache = false;         // recompute the whole context every token (for comparison)
  int64_t threads = 2;
  std::string device = "auto";      // cpu | cuda | cuda:0 | auto (choose_device)
};

struct EvalOptions {
  std::string checkpoint, data;
  int64_t batch_size = 12, eval_iters = 0;   // 0: the whole validation split in blocks
  int64_t threads = 2;
  std::string device = "auto";      // cpu | cuda | cuda:0 | auto (choose_device)
};

// No --device: quantisation is one pass over the weights on the CPU, and its QuantizedLinear
// layers run on the CPU only (nn/quantized.h).
struct QuantizeOptions {
  std::string checkpoint, out;
  int64_t threads = 2;
};

void add_train_command(CLI::App& app, TrainOptions& o);
void add_distill_command(CLI::App& app, TrainOptions& o);
void add_generate_command(CLI::App& app, GenerateOptions& o);
void add_eval_command(CLI::App& app, EvalOptions& o);
void add_quantize_command(CLI::App& app, QuantizeOptions& o);

// A usage error found after parsing (e.g. by run_train, once a teacher's experts are known):
// main reports it and exits 2. Every rank finds it alike, so no rank is left waiting.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Checks the flags that only make sense together (architecture, MoE, schedule) and, for a job
// of world_size ranks, the split of the global batch and of the experts (--ep-size); throws a
// mox::Error naming them, which main reports as a usage error (exit 2).
void validate_train_options(const TrainOptions& o, bool distill, int64_t world_size = 1);
// The --ep-size checks alone, for the experts of each layer (1 = dense); throws UsageError
// naming both numbers. Also used by distill once the student's experts are known.
void check_expert_parallel(const TrainOptions& o, const std::vector<int64_t>& experts_per_layer, int64_t world_size);

// The device a command runs on, and the words that announce it in its banner line.
struct RunDevice {
  Device device;
  std::string summary;   // "device cuda:0", "device cpu (no CUDA device visible)", ...
};
// From the --device text, already accepted by examples::device_validator() (an unusable device
// exits 2 at parsing). "auto" is the GPU when one is visible, except:
//   - world_size > 1: the CPU (a rank cannot tell alone that every rank has a GPU of its own);
//     an explicit cuda is kept, and the gradient collectives then run over NCCL or the first
//     one fails saying why (no NCCL in this build, two ranks on one GPU) — no silent fallback;
//   - an int8 model (`int8_checkpoint` non-empty: the quantized checkpoint's path): the CPU,
//     since QuantizedLinear runs on the CPU only; an explicit cuda is a UsageError naming it.
// The summary says why when auto chose the CPU although a GPU is visible.
RunDevice choose_device(const std::string& flag, int64_t world_size, const std::string& int8_checkpoint = "");
// Registers --device on a subcommand, with examples::device_validator().
void add_device_flag(CLI::App& c, std::string& device);

// Fills the options a preset names (before the explicit flags are applied); throws naming it.
void apply_preset(const std::string& name, TrainOptions& o);

// Also runs distill when o.teacher is set. Distributed when dist::world() has several ranks:
// data parallel over all of them, expert parallel over groups of o.ep_size (see train.cpp).
int run_train(const TrainOptions& o);
int run_generate(const GenerateOptions& o);
int run_eval(const EvalOptions& o);
int run_quantize(const QuantizeOptions& o);

// $MOX_DATA/tinyshakespeare/input.txt, else data/tinyshakespeare/input.txt.
std::string default_corpus();

}  // namespace mox::llm
