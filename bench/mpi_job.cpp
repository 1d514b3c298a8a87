// mpi_job.cpp: the cos side of bench/mpi.cpp, one measurement per MPI job.
// `mpirun -n N mpi_job empty ISOLATE TASKS WARMUP [QUEUE]`: rank 0
// dispatches TASKS empty jobs on an MpiVM of the N-1 worker ranks (isolate 1
// or 0; MpiOptions::queue QUEUE, its default without it), after WARMUP, and
// prints the wall time per task in ns and rank 0's CPU time per task. `mpirun -n N mpi_job dispatch JOB_US JOBS [ISOLATE]`: dispatch of
// JOBS CPU-bound jobs of JOB_US µs (isolate on unless ISOLATE is 0), printing the wall and serial
// time in ns and rank 0's CPU time over the wall time in percent.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <cos/cos.hpp>

#include "jobs.hpp"

namespace {

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // ranks 1..N-1 serve here and exit
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "empty" && (argc == 5 || argc == 6)) {
    bool isolate = std::atoi(argv[2]) != 0;
    coop::MpiOptions options{.isolate = isolate};
    if (argc == 6) options.queue = std::atoi(argv[5]);
    int tasks = std::atoi(argv[3]), warmup = std::atoi(argv[4]);
    double wall = 0, cpu = 0;
    coop::run(
        [&] {
          std::vector<coop::Job<void>> list(static_cast<std::size_t>(warmup), coop::job(cos_bench::empty));
          coop::dispatch(list);
          list.assign(static_cast<std::size_t>(tasks), coop::job(cos_bench::empty));
          double cpu0 = cpu_seconds();
          auto t0 = std::chrono::steady_clock::now();
          coop::dispatch(list);
          wall = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
          cpu = (cpu_seconds() - cpu0) * 1e9;
        },
        coop::Options{.vm = std::make_shared<coop::MpiVM>(options)});
    std::printf("%.1f %.1f\n", wall / tasks, cpu / tasks);
    return 0;
  }
  if (mode == "dispatch" && (argc == 4 || argc == 5)) {
    int job_us = std::atoi(argv[2]), jobs = std::atoi(argv[3]);
    bool isolate = argc < 5 || std::atoi(argv[4]) != 0;
    coop::DispatchStats stats;
    double cpu = 0;
    auto vm = std::make_shared<coop::MpiVM>(coop::MpiOptions{.isolate = isolate});
    int slots = vm->slots();
    coop::run(
        [&] {
          std::vector<coop::Job<double>> list;
          for (int i = 0; i < 2 * slots; ++i) list.push_back(coop::job(cos_bench::spin, 100));
          coop::dispatch(list);  // warm-up
          list.assign(static_cast<std::size_t>(jobs), coop::job(cos_bench::spin, job_us));
          double cpu0 = cpu_seconds();
          stats = coop::dispatch(list).stats;
          cpu = cpu_seconds() - cpu0;
        },
        coop::Options{.vm = vm});
    using std::chrono::nanoseconds;
    double wall = static_cast<double>(std::chrono::duration_cast<nanoseconds>(stats.wall_time()).count());
    double serial = static_cast<double>(std::chrono::duration_cast<nanoseconds>(stats.serial_time).count());
    std::printf("%.0f %.0f %.2f\n", wall, serial, 100 * cpu * 1e9 / wall);
    return 0;
  }
  std::fprintf(stderr, "usage: mpirun -n N mpi_job empty ISOLATE TASKS WARMUP [QUEUE] | dispatch JOB_US JOBS [ISOLATE]\n");
  return 2;
}
