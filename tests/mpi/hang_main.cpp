// hang_main.cpp: the program that tests/mpi/mpi_job_test.py starts under
// mpirun to kill its rank 0. `mpi_hang MARKER [inline] [quick]`: rank 0
// starts on every worker rank a task that runs `sleep MARKER` (a program of
// its own, below the worker), says "ready PID" and waits; with `quick` the
// tasks run `true` instead and the program ends normally. MARKER is on the
// command line of every process of the job (ranks, fork servers, keepers,
// workers) and of the sleeps, so the test finds any left in /proc.
#include <unistd.h>

#include <cos/cos.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

int hold(std::string command) { return std::system(command.c_str()); }

}  // namespace

COS_REMOTE(hold);

int main(int argc, char** argv) {
  coop::init(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: mpi_hang MARKER [inline] [quick]\n");
    return 2;
  }
  std::string marker = argv[1];
  bool isolate = true, quick = false;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "inline") isolate = false;
    if (std::string(argv[i]) == "quick") quick = true;
  }
  auto vm = std::make_shared<coop::MpiVM>(coop::MpiOptions{.isolate = isolate});
  int slots = vm->slots();
  int failed = 0;
  coop::run(
      [&] {
        std::vector<coop::Task<int>> ts;
        std::string command = quick ? "true" : "sleep " + marker;
        for (int k = 0; k < slots; ++k) ts.push_back(coop::spawn(coop::Spawn{.remote = true}, hold, command));
        coop::sleep_for(std::chrono::milliseconds(300));
        std::printf("ready %d\n", static_cast<int>(::getpid()));
        std::fflush(stdout);
        for (auto& t : ts) failed += t.join() != 0;
      },
      coop::Options{.vm = vm});
  std::printf("done %d\n", failed);
  return failed ? 1 : 0;
}
