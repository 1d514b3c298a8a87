#include "bench.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace coop::tool {

CLI::App* add_bench_command(CLI::App& app, BenchOptions& options) {
  CLI::App* sub = app.add_subcommand("bench", "Run the benchmarks of bench/ and print their table");
  sub->add_option("-r,--repetitions", options.repetitions, "repetitions of each benchmark (medians are shown)")
      ->check(CLI::PositiveNumber);
  sub->add_option("-f,--filter", options.filter, "only the benchmarks whose name matches this regex");
  sub->add_option("--json", options.json, "also write the table to this file as JSON");
  sub->footer(R"(Every benchmark runs its baseline (Boost.Fiber, a plain pipe loop, Python's
multiprocessing, ...) in the same run and the table shows medians and ratios.

Examples:
  cos bench
  cos bench -r 3 -f skynet)");
  return sub;
}

int run_bench(const BenchOptions& options) {
  // The tool is build/cos/cos; the benchmarks are build/bench/.
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path run_all = self.parent_path().parent_path() / "bench" / "run_all";
  if (ec || !std::filesystem::exists(run_all)) {
    std::fprintf(stderr,
                 "cos bench: no benchmarks next to this cos (looked for %s); build them with "
                 "`make bench` (CMake option COS_BUILD_BENCH=ON)\n",
                 run_all.c_str());
    return 2;
  }
  std::vector<std::string> args{run_all.string(), "-r", std::to_string(options.repetitions)};
  if (!options.filter.empty()) args.insert(args.end(), {"-f", options.filter});
  if (!options.json.empty()) args.insert(args.end(), {"--json", options.json});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  std::perror("cos bench: cannot run run_all");
  return 2;
}

}  // namespace coop::tool
