// main.cpp — mox-llm: train, generate, eval, quantize and distill a small GPT/Llama-style
// (MoE) language model. See README.md for the recipes and measured results.
//
// Distributed: train and distill run on every rank of a job started by scripts/moxrun (data
// parallel, and expert parallel with --ep-size; see train.cpp). dist::init() comes first (a
// one-rank world, without MPI, when started plainly); the options are checked knowing the
// world size. Usage errors are found alike by every rank: rank 0 prints them, every rank
// finalises and exits 2. A runtime error on any rank ends the whole job (dist::finish(1) aborts
// it) instead of leaving its peers waiting in a collective. generate, eval and quantize run on
// one process only.
//
// Exit codes: 0 success, 1 runtime error (missing data or checkpoint, bad token, diverged
// loss), 2 usage error. What it is not: any command's logic — see commands.h.
#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "dist/world.h"
#include "examples/common/cli.h"
#include "examples/common/precision.h"
#include "examples/common/ranks.h"
#include "examples/llm/commands.h"
#include "tensor/cpu/threads.h"
#include "tensor/error.h"

namespace {

// The value of --preset in argv (either "--preset X" or "--preset=X"), or "".
std::string preset_in(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--preset") == 0 && i + 1 < argc) return argv[i + 1];
    if (std::strncmp(argv[i], "--preset=", 9) == 0) return argv[i] + 9;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mox::llm;
  mox::configure_cpu_runtime(argv);
  int world_size = 1, rank = 0;
  if (!mox::examples::start_ranks("mox-llm", world_size, rank)) return 2;
  // Help and usage errors: every rank stops alike, so MPI is finalised normally and each rank
  // exits with the code; rank 0 alone prints.
  auto leave = [](int code) {
    mox::dist::finish(0);
    return code;
  };
  std::ostream quiet(nullptr);   // discards what ranks > 0 would repeat
  std::ostream& out = rank == 0 ? std::cout : quiet;
  std::ostream& err = rank == 0 ? std::cerr : quiet;
  TrainOptions train, distill;
  train.data = distill.data = default_corpus();
  // The preset fills the defaults; the explicit flags parsed below override it.
  if (const std::string preset = preset_in(argc, argv); !preset.empty()) {
    try {
      apply_preset(preset, train);
      apply_preset(preset, distill);
    } catch (const std::exception& e) {
      err << "mox-llm: " << e.what() << "\nRun with --help for usage.\n";
      return leave(2);
    }
  }
  GenerateOptions generate;
  EvalOptions eval;
  eval.data = default_corpus();
  QuantizeOptions quantize;

  CLI::App app{"mox-llm: a small GPT/Llama-style Mixture-of-Experts language model (CPU, or one GPU with --device)"};
  app.require_subcommand(1, 1);
  add_train_command(app, train);
  add_distill_command(app, distill);
  add_generate_command(app, generate);
  add_eval_command(app, eval);
  add_quantize_command(app, quantize);
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) known |= sub->get_name() == argv[1];
    if (!known) {
      err << "mox-llm: unknown command '" << argv[1]
          << "' (expected train, distill, generate, eval or quantize)\nRun with --help for usage.\n";
      return leave(2);
    }
  }
  mox::examples::last_value_wins(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return leave(0);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return leave(rank == 0 ? app.exit(e) : 0);   // a subcommand's --help
    err << "mox-llm: " << e.what() << "\nRun with --help (or <command> --help) for usage.\n";
    return leave(2);
  }
  const std::string cmd = app.get_subcommands()[0]->get_name();
  const bool training = cmd == "train" || cmd == "distill";
  if (!training && world_size > 1) {
    err << "mox-llm " << cmd << " runs on one process, but this job has " << world_size
        << " ranks: start it without scripts/moxrun (only train and distill are distributed)\n";
    return leave(2);
  }
  if (training) {
    TrainOptions& o = cmd == "train" ? train : distill;
    const CLI::App* sub = app.get_subcommand(cmd);
    o.threads = mox::examples::thread_count(o.threads, sub->count("--threads") > 0);
    o.out_given = sub->count("--out") > 0;
    if (cmd == "distill") o.student_experts_given = sub->count("--num-experts") > 0;
    try {
      validate_train_options(o, cmd == "distill", world_size);
      if (const std::string e = mox::examples::check_precision_flags(*sub, o.dtype, o.loss_scaler); !e.empty())
        throw UsageError(e);
    } catch (const std::exception& e) {
      err << "mox-llm " << cmd << ": " << e.what() << "\nRun with " << cmd << " --help for usage.\n";
      return leave(2);
    }
  }
  try {
    int code = 0;
    if (cmd == "train") code = run_train(train);
    else if (cmd == "distill") code = run_train(distill);
    else if (cmd == "generate") code = run_generate(generate);
    else if (cmd == "eval") code = run_eval(eval);
    else code = run_quantize(quantize);
    return mox::dist::finish(code);
  } catch (const UsageError& e) {   // found by run_train once the architecture is known, on every rank
    err << "mox-llm " << cmd << ": " << e.what() << "\nRun with " << cmd << " --help for usage.\n";
    return leave(2);
  } catch (const std::exception& e) {
    std::cerr << "mox-llm: error" << (world_size > 1 ? mox::str(" on rank ", rank) : std::string()) << ": " << e.what()
              << "\n";
    return mox::dist::finish(1);   // in a multi-rank job: aborts every rank
  }
}
