// bench.hpp: `cos bench`, the benchmarks of bench/ and their table.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace coop::tool {

struct BenchOptions {
  int repetitions = 5;
  std::string filter;
  std::string json;
};

// add_bench_command() adds `bench` to `app`, filling `options` when it parses.
CLI::App* add_bench_command(CLI::App& app, BenchOptions& options);

// run_bench() runs bench/run_all of the build tree this cos binary belongs
// to and returns its exit status (2 when the benchmarks were not built).
int run_bench(const BenchOptions& options);

}  // namespace coop::tool
