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
    std::filesystem::path build = self.parent_path().parent_path();
    if (!ec && std::filesystem::exists(build / "CMakeCache.txt")) {
      std::fprintf(stderr,
                   "cos bench: this build tree (%s) has no benchmarks (looked for %s): configure it with "
                   "-DCOS_BUILD_BENCH=ON and build again:\n"
                   "  cmake -B %s -DCOS_BUILD_BENCH=ON && cmake --build %s && %s bench\n",
                   build.c_str(), run_all.c_str(), build.c_str(), build.c_str(), self.c_str());
    } else {
      // An installed cos has no benchmarks: they are programs of a build tree.
      std::fprintf(stderr,
                   "cos bench: the benchmarks run from a build tree of cos, and this cos (%s) is not in one "
                   "(looked for %s). In the cos source tree, run\n"
                   "  make bench\n"
                   "or build them and run the cos of that build:\n"
                   "  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCOS_BUILD_BENCH=ON && cmake --build build "
                   "&& build/cos/cos bench\n",
                   ec ? "unknown" : self.c_str(), run_all.c_str());
    }
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
