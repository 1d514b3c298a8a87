// process.cpp: remote tasks on ProcessVM (worker processes of this program).
//
// empty_tasks: throughput of empty remote tasks on ProcessVM(n), n = 2 and 4:
//   dispatch() of empty jobs; cos_ns is the wall time per task. Two kinds of
//   row: "one call per slot" (ProcessOptions::queue = 0: dispatch keeps one
//   job in flight per slot, the C loop's ping-pong), target ratio 0.8; and
//   "pipelined" (the default options: a worker holds up to 16 calls behind
//   its running one, dispatch keeps that many more in flight, and a worker
//   starts its next call without a round trip), which no ping-pong can
//   match, target 1.5. Two baselines with n worker processes:
//   - baseline_ns: a plain C pipe request/reply loop (the practical limit):
//     n forked children, each with a request pipe and a reply pipe; the
//     parent writes a 32-byte request to each, then polls all reply pipes at
//     once, reads each reply and writes that child's next request. cos and
//     the pipes take turns in the same repetition (cos, pipe, pipe, cos, ...:
//     the machine's load drifts), each after a warm-up on its own workers.
//     Target: ratio_ns = pipe time / cos time >= 0.8.
//   - baseline_py_ns: Python's multiprocessing.Pool(n).apply_async of an
//     empty function (python3 -c, fork context, warmed up; the script times
//     the submission and the get() of every task and prints ns per task),
//     run right after (one-call rows only). cos_py_ns repeats cos_ns so that
//     the pair forms its own row. Target: ratio_py_ns = Python time / cos
//     time >= 2.
//   spawner_cpu_ns and pipe_parent_cpu_ns (not in the table) are the CPU
//   time per task of cos's spawner and of the pipe loop's parent.
// dispatch_efficiency: parallel efficiency of dispatch() with CPU-bound jobs
//   (100 of 5 ms, 2,000 of 1 ms) on ProcessVM(2), serial time / (slots x wall time), as in
//   remote.cpp: cos_ns is the wall time, baseline_ns the ideal (serial time /
//   slots), ratio_ns the efficiency; target >= 0.9. spawner_cpu_pct (not in
//   the table) is the CPU time of the spawner over the wall time: it waits in
//   poll, so it should stay near 0.
//
// Worker start-up (fork + exec of this program) is outside every timing.
// main calls coop::init first: ProcessVM's workers run this program again.
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <cos/cos.hpp>

#include "jobs.hpp"

extern char** environ;

namespace {

using namespace std::chrono;
using Clock = steady_clock;

double ns_since(Clock::time_point t0) { return duration<double, std::nano>(Clock::now() - t0).count(); }

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

using cos_bench::empty;
using cos_bench::spin;

// n forked children that answer each request on their pipe with a reply of
// the same size: the plainest worker processes.
class PipeWorkers {
 public:
  static constexpr std::size_t request_size = 32;

  explicit PipeWorkers(int n) {
    try {
      start(n);
    } catch (...) {
      stop();
      throw;
    }
  }
  ~PipeWorkers() { stop(); }
  PipeWorkers(const PipeWorkers&) = delete;
  PipeWorkers& operator=(const PipeWorkers&) = delete;

  // run() makes `tasks` round trips, one request in flight per child.
  void run(int tasks) {
    const int n = static_cast<int>(to_.size());
    std::vector<pollfd> fds;
    for (int fd : from_) fds.push_back(pollfd{fd, POLLIN, 0});
    char buf[request_size] = {};
    int sent = 0, done = 0;
    for (int i = 0; i < n && sent < tasks; ++i) send(i, sent++, buf);
    while (done < tasks) {
      int ready = ::poll(fds.data(), fds.size(), -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        fail("poll");
      }
      for (int i = 0; i < n && ready > 0; ++i) {
        if (!fds[i].revents) continue;
        --ready;
        if (::read(from_[i], buf, sizeof buf) != static_cast<ssize_t>(sizeof buf)) fail("read reply");
        ++done;
        if (sent < tasks) send(i, sent++, buf);
      }
    }
  }

  // stop() closes the requests, so that every child ends, and reaps them.
  void stop() {
    for (int fd : to_) ::close(fd);
    for (int fd : from_) ::close(fd);
    to_.clear();
    from_.clear();
    for (pid_t pid : pids_) {
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    pids_.clear();
  }

 private:
  void start(int n) {
    for (int i = 0; i < n; ++i) {
      int req[2], rep[2];
      if (::pipe2(req, O_CLOEXEC) != 0) fail("pipe");
      if (::pipe2(rep, O_CLOEXEC) != 0) {
        ::close(req[0]), ::close(req[1]);
        fail("pipe");
      }
      pid_t pid = ::fork();
      if (pid < 0) {
        ::close(req[0]), ::close(req[1]), ::close(rep[0]), ::close(rep[1]);
        fail("fork");
      }
      if (pid == 0) {
        // Only this child's own ends stay open, so that each child sees the
        // end of its request pipe when the parent closes it.
        for (int fd : to_) ::close(fd);
        for (int fd : from_) ::close(fd);
        ::close(req[1]);
        ::close(rep[0]);
        serve(req[0], rep[1]);
      }
      ::close(req[0]);
      ::close(rep[1]);
      pids_.push_back(pid);
      to_.push_back(req[1]);
      from_.push_back(rep[0]);
    }
  }
  [[noreturn]] static void serve(int in, int out) {
    char buf[request_size];
    for (;;) {
      ssize_t n = ::read(in, buf, sizeof buf);
      if (n <= 0) ::_exit(0);
      empty();
      if (::write(out, buf, static_cast<std::size_t>(n)) != n) ::_exit(1);
    }
  }
  void send(int i, int task, char* buf) {
    std::memcpy(buf, &task, sizeof task);
    if (::write(to_[i], buf, request_size) != static_cast<ssize_t>(request_size)) fail("write request");
  }

  std::vector<pid_t> pids_;
  std::vector<int> to_, from_;
};

// Python's multiprocessing.Pool: argv[1] tasks on argv[2] workers, after a
// warm-up of argv[3] tasks; prints ns per task.
constexpr const char* python_pool = R"(
import multiprocessing, sys, time

def empty():
    pass

if __name__ == "__main__":
    tasks, workers, warmup = (int(a) for a in sys.argv[1:4])
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for r in [pool.apply_async(empty) for _ in range(warmup)]:
            r.get()
        t0 = time.perf_counter()
        results = [pool.apply_async(empty) for _ in range(tasks)]
        for r in results:
            r.get()
        t1 = time.perf_counter()
    print((t1 - t0) / tasks * 1e9, flush=True)
)";

double python_empty_tasks(int workers, int tasks, int warmup) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) fail("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::string t = std::to_string(tasks), w = std::to_string(workers), u = std::to_string(warmup);
  const char* argv[] = {"python3", "-c", python_pool, t.c_str(), w.c_str(), u.c_str(), nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, "python3", &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    errno = rc;
    fail("cannot start python3");
  }
  std::string text;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  char* end = nullptr;
  double ns = std::strtod(text.c_str(), &end);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || end == text.c_str() || !(ns > 0)) {
    throw std::runtime_error("the Python multiprocessing.Pool baseline failed (output '" + text + "')");
  }
  return ns;
}

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);  // the spawner only: workers are children
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

// Seconds that `f` takes, and the spawner's CPU seconds in *cpu.
template <class F> double timed(F&& f, double* cpu) {
  double cpu0 = cpu_seconds();
  auto t0 = Clock::now();
  f();
  double wall = ns_since(t0) * 1e-9;
  *cpu += cpu_seconds() - cpu0;
  return wall;
}

void empty_tasks(benchmark::State& state, int workers, bool pipelined) {
  // Both sides take turns, in the order cos, pipe, pipe, cos, ..., so that
  // a load that changes during the repetition weighs on both alike.
  const int rounds = 4;
  const int per_round = 2'500;
  const int tasks = rounds * per_round;
  const int py_tasks = 3'000;
  const int warmup = 50 * workers;
  double cos_ns = 0, pipe_ns = 0, py_ns = 0, cos_cpu_ns = 0, pipe_cpu_ns = 0;
  for (auto _ : state) {
    double cos_s = 0, pipe_s = 0, cos_cpu = 0, pipe_cpu = 0;
    try {
      // The pipe workers come first: their pipes are close-on-exec, so cos's
      // workers (fork + exec) do not inherit them. Both sets are gone
      // before Python starts.
      PipeWorkers pipes(workers);
      coop::run(
          [&] {
            std::vector<coop::Job<void>> list(static_cast<std::size_t>(warmup), coop::job(empty));
            coop::dispatch(list);
            pipes.run(warmup);
            list.assign(static_cast<std::size_t>(per_round), coop::job(empty));
            auto run_cos = [&] { cos_s += timed([&] { coop::dispatch(list); }, &cos_cpu); };
            auto run_pipe = [&] { pipe_s += timed([&] { pipes.run(per_round); }, &pipe_cpu); };
            for (int r = 0; r < rounds; ++r) {
              if (r % 2 == 0) {
                run_cos();
                run_pipe();
              } else {
                run_pipe();
                run_cos();
              }
            }
          },
          coop::Options{.vm = std::make_shared<coop::ProcessVM>(
                            workers, pipelined ? coop::ProcessOptions{} : coop::ProcessOptions{.queue = 0})});
      pipes.stop();
      if (!pipelined) py_ns = python_empty_tasks(workers, py_tasks, warmup);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    cos_ns = cos_s * 1e9 / tasks;
    pipe_ns = pipe_s * 1e9 / tasks;
    cos_cpu_ns = cos_cpu * 1e9 / tasks;
    pipe_cpu_ns = pipe_cpu * 1e9 / tasks;
    state.SetIterationTime(cos_s);
  }
  state.counters["cos_ns"] = cos_ns;
  state.counters["baseline_ns"] = pipe_ns;
  state.counters["ratio_ns"] = pipe_ns / cos_ns;
  state.counters["min_ratio_ns"] = pipelined ? 1.5 : 0.8;
  if (!pipelined) {
    state.counters["cos_py_ns"] = cos_ns;
    state.counters["baseline_py_ns"] = py_ns;
    state.counters["ratio_py_ns"] = py_ns / cos_ns;
    state.counters["min_ratio_py_ns"] = 2;
  }
  // Not in the table: the spawner's CPU time per task on each side.
  state.counters["spawner_cpu_ns"] = cos_cpu_ns;
  state.counters["pipe_parent_cpu_ns"] = pipe_cpu_ns;
}
BENCHMARK_CAPTURE(empty_tasks, 2, 2, false)->Name("empty remote task, ProcessVM(2), one call per slot")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(empty_tasks, 4, 4, false)->Name("empty remote task, ProcessVM(4), one call per slot")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(empty_tasks, 2p, 2, true)->Name("empty remote task, ProcessVM(2), pipelined")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(empty_tasks, 4p, 4, true)->Name("empty remote task, ProcessVM(4), pipelined")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

void dispatch_efficiency(benchmark::State& state, int job_us, int jobs) {
  const int slots = 2;
  coop::DispatchStats stats;
  double cpu = 0;
  for (auto _ : state) {
    try {
      auto vm = std::make_shared<coop::ProcessVM>(slots);  // a scheduler finalizes its VM
      coop::run(
          [&] {
            std::vector<coop::Job<double>> list;
            for (int i = 0; i < 2 * slots; ++i) list.push_back(coop::job(spin, 100));
            coop::dispatch(list);  // warm-up
            list.assign(static_cast<std::size_t>(jobs), coop::job(spin, job_us));
            double cpu0 = cpu_seconds();
            stats = coop::dispatch(list).stats;
            cpu = cpu_seconds() - cpu0;
          },
          coop::Options{.vm = vm});
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    state.SetIterationTime(duration<double>(stats.wall_time()).count());
  }
  double wall = cos_bench::publish_efficiency(state, stats, slots, 0.9);
  state.counters["spawner_cpu_pct"] = 100 * cpu * 1e9 / wall;
}
BENCHMARK_CAPTURE(dispatch_efficiency, 5ms, 5000, 100)->Name("dispatch efficiency, ProcessVM(2), 5 ms jobs")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(dispatch_efficiency, 1ms, 1000, 2000)->Name("dispatch efficiency, ProcessVM(2), 1 ms jobs")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// whole_program() is the loop of one side as a program of its own, for
// timing from outside (farm-bench --vs '... --pipe-loop T N' -- ... --cos-loop
// T N [Q]): T empty tasks on N workers, the C pipe loop or cos's dispatch on
// ProcessVM(N) (pipelined, as by default, or with ProcessOptions::queue Q:
// 0 for one call per slot), after a warm-up; prints us/task.
int whole_program(const std::string& mode, int tasks, int workers, int queue) {
  const int warmup = 50 * workers;
  auto t0 = Clock::now();
  if (mode == "--pipe-loop") {
    PipeWorkers pipes(workers);
    pipes.run(warmup);
    t0 = Clock::now();
    pipes.run(tasks);
  } else {
    coop::run(
        [&] {
          std::vector<coop::Job<void>> list(static_cast<std::size_t>(warmup), coop::job(empty));
          coop::dispatch(list);
          list.assign(static_cast<std::size_t>(tasks), coop::job(empty));
          t0 = Clock::now();
          coop::dispatch(list);
        },
        coop::Options{.vm = std::make_shared<coop::ProcessVM>(
                          workers, queue < 0 ? coop::ProcessOptions{} : coop::ProcessOptions{.queue = queue})});
  }
  std::printf("%s: %.2f us per task\n", mode.c_str(), ns_since(t0) * 1e-3 / tasks);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // a worker serves tasks here and never returns
  if ((argc == 4 || argc == 5) && (std::string(argv[1]) == "--pipe-loop" || std::string(argv[1]) == "--cos-loop")) {
    return whole_program(argv[1], std::atoi(argv[2]), std::atoi(argv[3]), argc == 5 ? std::atoi(argv[4]) : -1);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
