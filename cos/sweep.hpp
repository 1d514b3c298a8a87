// sweep.hpp: `cos sweep`, a command run over a grid of parameters on the
// slots of a VM (worker processes by default).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace coop::tool {

// SweepOptions are the options of `cos sweep`, as the command line gives them.
struct SweepOptions {
  std::vector<std::string> params;  // NAME=V1,V2,... or NAME=START:STOP:STEP
  std::string points_file;
  bool zip = false;
  std::string out;  // "" or "-": stdout as CSV
  std::optional<int> slots{};
  std::string hosts;    // a=2,b=4
  std::string timeout;  // 30s, 500ms
  int retries = 0;
  bool resume = false;
  std::string trace;
  std::optional<bool> progress{};  // default: when stderr is a terminal
  std::vector<std::string> mirrors;  // --mirror DIR: copied to each host, paths into it resolved there
  std::vector<std::string> command;
};

// add_sweep_command() adds `sweep` to `app`, filling `options` when it parses.
CLI::App* add_sweep_command(CLI::App& app, SweepOptions& options);

// run_sweep() runs the sweep and returns the tool's exit status: 0 when every
// point succeeded, 1 when some failed (or the sweep could not go on), 2 for
// bad input, 130 after Ctrl-C (143 after SIGTERM). Call it from the main
// thread of a program whose main called coop::init first.
int run_sweep(const SweepOptions& options);

}  // namespace coop::tool
