// cli.h — CLI11 validators shared by the examples' command lines (usage errors exit 2).
//
// finite_in: CLI11's PositiveNumber and Range let "nan" through (every comparison with NaN
// is false), accept "-1" for unsigned options, and report "not in range 0.000000 to
// 1797693134862315708145274237317043567980..."; this one rejects all of that and says
// what was expected. existing_parent_dir: an output file whose directory is missing is a
// usage error at start-up rather than a failure after the work is done. last_value_wins:
// repeated scalar flags take their last value.
// What it is not: a parser of its own — the examples use CLI11.
#pragma once
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

namespace mox::examples {

// A finite number in [lo, hi] (lo excluded when lo_open); hi = HUGE_VAL: no upper bound.
inline CLI::Validator finite_in(double lo, double hi, bool lo_open, const std::string& name) {
  std::ostringstream expected;
  if (hi == HUGE_VAL) expected << "a finite number " << (lo_open ? "> " : ">= ") << lo;
  else expected << "a number in " << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
  const std::string what = expected.str();
  return CLI::Validator(
      [lo, hi, lo_open, what](std::string& input) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(input.c_str(), &end);
        const bool parsed = !input.empty() && end && *end == '\0';
        if (!parsed || !std::isfinite(v) || v > hi || (lo_open ? v <= lo : v < lo))
          return "value '" + input + "' is not " + what;
        return "";
      },
      name);
}

// A file path whose directory exists (a bare file name: the current directory).
inline CLI::Validator existing_parent_dir() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        const std::filesystem::path dir = std::filesystem::path(input).parent_path();
        std::error_code ec;
        if (input.empty()) return "an empty path is not a file name";
        if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
          return "directory '" + dir.string() + "' of '" + input + "' does not exist";
        return "";
      },
      "FILE");
}

// A scalar option given twice takes its last value — as argparse does, so a script can append
// an override to a common set of flags; list options (--num-experts 2 4) keep every value.
// Applies to `app` and all its subcommands; call after the options are added.
inline void last_value_wins(CLI::App& app) {
  for (CLI::Option* opt : app.get_options())
    if (opt->get_items_expected_max() <= 1) opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  for (CLI::App* sub : app.get_subcommands({})) last_value_wins(*sub);
}

}  // namespace mox::examples
