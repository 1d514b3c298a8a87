#include <cos/init.hpp>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <cos/remote.hpp>

#include "backends/mpi/hook.hpp"
#include "backends/process/worker.hpp"

namespace coop {
namespace {

struct CommandLine {
  bool recorded = false;
  std::vector<std::string> args;
};

CommandLine& recorded() {
  static CommandLine c;
  return c;
}

}  // namespace

void init(int& argc, char**& argv) {
  detail::check_registry();  // a name registered twice is an error at start-up
  if (const char* spec = std::getenv(detail::worker_env)) detail::serve_as_worker(spec);
  CommandLine& c = recorded();
  c.args.clear();
  for (int i = 0; i < argc && argv && argv[i]; ++i) c.args.emplace_back(argv[i]);
  c.recorded = true;
  // Under mpirun: MPI starts here; ranks 1..n-1 serve and exit, rank 0 returns.
  detail::mpi_init_hook();
}

namespace detail {

bool init_called() { return recorded().recorded; }

std::vector<std::string> command_line() {
  const CommandLine& c = recorded();
  if (c.recorded && !c.args.empty()) return c.args;
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::size_t start = 0;
  while (start < all.size()) {
    std::size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    args.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  if (args.empty()) args.emplace_back("cos-worker");
  return args;
}

}  // namespace detail
}  // namespace coop
