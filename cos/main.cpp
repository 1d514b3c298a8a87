// main.cpp: the `cos` command-line tool.
//
// The tool is also the program of its own worker processes: ProcessVM starts
// them by running this executable again, and coop::init, the first line of
// main, turns those into workers that serve tasks and never return.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <cos/init.hpp>

#include "bench.hpp"
#include "sweep.hpp"

namespace {

// unknown_option() is the first argument of `app` (argv[from] on, up to
// "--") that looks like an option and is none of its options, or "".
// Values of options that take one are skipped, so "--timeout -5" is not one.
std::string unknown_option(const CLI::App& app, int argc, char** argv, int from) {
  for (int i = from; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    if (arg[1] >= '0' && arg[1] <= '9') continue;  // a negative number
    std::string name = arg.substr(0, arg.find('='));
    if (arg[1] != '-' && arg.size() > 2) name = arg.substr(0, 2);  // -r3 is -r 3
    const CLI::Option* opt = app.get_option_no_throw(name);
    if (!opt) return name;
    bool inline_value = name.size() < arg.size();
    if (!inline_value && opt->get_items_expected_min() > 0) ++i;
  }
  return {};
}

// better_message() says what the user typed that cos does not know: a
// command that is not one, or an option, naming it; "" when the error is
// something else (CLI11's message is good then).
std::string better_message(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    commands.push_back(sub->get_name());
  std::string list;
  for (const auto& c : commands) list += (list.empty() ? "" : ", ") + c;
  int first = 1;
  while (first < argc && argv[first][0] == '-' && std::string(argv[first]) != "--") ++first;
  if (std::string unknown = unknown_option(app, first, argv, 1); !unknown.empty())
    return "cos: unknown option '" + unknown + "'";
  if (first >= argc) return {};
  std::string word = argv[first];
  const CLI::App* sub = nullptr;
  for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; }))
    if (s->get_name() == word) sub = s;
  if (!sub) return "cos: unknown command '" + word + "' (commands: " + list + ")";
  if (std::string unknown = unknown_option(*sub, argc, argv, first + 1); !unknown.empty())
    return "cos " + word + ": unknown option '" + unknown + "'";
  return {};
}

}  // namespace

#ifndef COS_VERSION
#define COS_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  coop::init(argc, argv);

  CLI::App app{"cos: run a command over a grid of parameters on the slots of a cos VM, "
               "or run the cos benchmarks"};
  app.name("cos");
  app.set_version_flag("--version", "cos " COS_VERSION);
  app.require_subcommand(1);
  app.footer(R"(Examples:
  cos sweep --param k=1:4:1 --param c=0.1,0.5 -- ./oscillator --k {k} --c {c}
  cos sweep --points points.csv --out results.csv --timeout 30s -- ./sim --a {a} --b {b}

  cos bench

Run `cos sweep --help` for every option of a sweep, `cos bench --help` for the benchmarks.)");
  coop::tool::SweepOptions sweep;
  CLI::App* sweep_command = coop::tool::add_sweep_command(app, sweep);
  coop::tool::BenchOptions bench;
  CLI::App* bench_command = coop::tool::add_bench_command(app, bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit with 0; every mistake on the command line with 2.
    if (e.get_exit_code() != 0) {
      std::string message = better_message(app, argc, argv);
      if (!message.empty()) {
        std::fprintf(stderr, "%s\nRun with --help for more information.\n", message.c_str());
        return 2;
      }
    }
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (sweep_command->parsed()) return coop::tool::run_sweep(sweep);
  if (bench_command->parsed()) return coop::tool::run_bench(bench);
  return 2;
}
