// main.cpp — mox-llm: train, generate, eval, quantize and distill a small GPT/Llama-style
// (MoE) language model. See README.md for the recipes and measured results.
//
// Exit codes: 0 success, 1 runtime error (missing data or checkpoint, bad token, diverged
// loss), 2 usage error. What it is not: any command's logic — see commands.h.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "examples/common/cli.h"
#include "examples/llm/commands.h"
#include "tensor/cpu/threads.h"

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
  TrainOptions train, distill;
  train.data = distill.data = default_corpus();
  // The preset fills the defaults; the explicit flags parsed below override it.
  if (const std::string preset = preset_in(argc, argv); !preset.empty()) {
    try {
      apply_preset(preset, train);
      apply_preset(preset, distill);
    } catch (const std::exception& e) {
      std::cerr << "mox-llm: " << e.what() << "\nRun with --help for usage.\n";
      return 2;
    }
  }
  GenerateOptions generate;
  EvalOptions eval;
  eval.data = default_corpus();
  QuantizeOptions quantize;

  CLI::App app{"mox-llm: a small GPT/Llama-style Mixture-of-Experts language model on the CPU"};
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
      std::cerr << "mox-llm: unknown command '" << argv[1]
                << "' (expected train, distill, generate, eval or quantize)\nRun with --help for usage.\n";
      return 2;
    }
  }
  mox::examples::last_value_wins(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);   // a subcommand's --help
    std::cerr << "mox-llm: " << e.what() << "\nRun with --help (or <command> --help) for usage.\n";
    return 2;
  }
  const std::string cmd = app.get_subcommands()[0]->get_name();
  if (cmd == "train" || cmd == "distill") {
    try {
      validate_train_options(cmd == "train" ? train : distill, cmd == "distill");
    } catch (const std::exception& e) {
      std::cerr << "mox-llm " << cmd << ": " << e.what() << "\nRun with " << cmd << " --help for usage.\n";
      return 2;
    }
  }
  try {
    if (cmd == "train") return run_train(train);
    if (cmd == "distill") {
      distill.student_experts_given = app.get_subcommand("distill")->count("--num-experts") > 0;
      return run_train(distill);
    }
    if (cmd == "generate") return run_generate(generate);
    if (cmd == "eval") return run_eval(eval);
    return run_quantize(quantize);
  } catch (const std::exception& e) {
    std::cerr << "mox-llm: error: " << e.what() << "\n";
    return 1;
  }
}
