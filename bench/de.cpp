// de.cpp: what optimisation users pay cos for.
//
// async_de_overhead: examples/async_de.hpp's asynchronous DE with a trivial
//   cost function (30-dimensional Rosenbrock, about 0.1 us), so that the time
//   per evaluation is the scheduler's and the VM's cost and the DE's own
//   bookkeeping, nothing else. cos runs it without a VM (evaluations as
//   local microthreads) and on ProcessVM(2); the baseline is the same DE
//   loop (the same Population code) hand-written on a std::thread pool of 2
//   threads with a mutex and condition variables, which shares memory where
//   ProcessVM serializes every call. On ProcessVM both keep the slots and
//   the calls ProcessVM can queue behind them (pipelining) in flight; a
//   second row compares with the pool keeping one job per thread in flight. Targets: faster than the pool without a
//   VM; within 1.2x of it on ProcessVM(2). (PyOPUS's own DE costs about
//   104 us per evaluation without a VM on these machines, 18 us of it its
//   spawn and join.)
// journal_overhead: dispatch of 1 ms jobs on ProcessVM(2) with
//   DispatchOptions::journal against the same dispatch without it, time per
//   job. Target: at most 10% more.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <cos/cos.hpp>

#include "../examples/async_de.hpp"
#include "jobs.hpp"

namespace {

using namespace std::chrono;

// The trivial cost function, registered so that it can go to a slot.
async_de::Evaluation trivial(std::vector<double> x) { return async_de::timed(async_de::rosenbrock, x); }
COS_REMOTE(trivial);

async_de::Config config(long evaluations, int in_flight) {
  async_de::Config c;
  c.evaluations = evaluations;
  c.in_flight = in_flight;
  return c;
}

// pool_de() is the same asynchronous DE on a plain thread pool: a job queue
// and a result queue, each a mutex and a condition variable; the main
// thread keeps `threads` evaluations in flight, takes whichever result comes
// first and updates the population. Returns the wall time.
nanoseconds pool_de(const async_de::Config& c, int threads) {
  struct Job {
    int target;
    std::vector<double> x;
  };
  struct Done {
    Job job;
    async_de::Evaluation e;
  };
  std::mutex mutex;
  std::condition_variable work_cv, done_cv;
  std::deque<Job> work;
  std::deque<Done> done;
  bool stop = false;
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      std::unique_lock lock(mutex);
      for (;;) {
        work_cv.wait(lock, [&] { return stop || !work.empty(); });
        if (stop) return;
        Job j = std::move(work.front());
        work.pop_front();
        lock.unlock();
        async_de::Evaluation e = trivial(j.x);
        lock.lock();
        done.push_back(Done{std::move(j), e});
        done_cv.notify_one();
      }
    });
  }
  async_de::Population population(c);
  async_de::Report report;
  auto t0 = steady_clock::now();
  long spawned = 0;
  int in_flight = 0;
  while (report.evaluations < c.evaluations) {
    while (in_flight < c.in_flight && spawned < c.evaluations) {
      Job j;
      j.x = population.next_point(j.target);
      {
        std::lock_guard lock(mutex);
        work.push_back(std::move(j));
      }
      work_cv.notify_one();
      ++in_flight;
      ++spawned;
    }
    Done d;
    {
      std::unique_lock lock(mutex);
      done_cv.wait(lock, [&] { return !done.empty(); });
      d = std::move(done.front());
      done.pop_front();
    }
    --in_flight;
    ++report.evaluations;
    population.update(d.job.target, std::move(d.job.x), d.e.f, report);
  }
  auto wall = steady_clock::now() - t0;
  {
    std::lock_guard lock(mutex);
    stop = true;
  }
  work_cv.notify_all();
  for (auto& t : pool) t.join();
  return duration_cast<nanoseconds>(wall);
}

void async_de_overhead(benchmark::State& state, bool process) {
  const long evaluations = process ? 20'000 : 200'000;
  const int slots = 2;
  double cos_ns = 0, base_ns = 0, base_one_ns = 0;
  for (auto _ : state) {
    std::shared_ptr<coop::VM> vm;
    if (process) vm = std::make_shared<coop::ProcessVM>(slots);
    // As examples/async_de.cpp: the slots and what ProcessVM can queue
    // behind them are kept busy; the pool gets as many in flight (its
    // threads then take the next job from its queue without a wait).
    const int in_flight = process ? vm->slots() + vm->queue_capacity() : 1;
    async_de::Config c = config(evaluations, in_flight);
    async_de::Report r = coop::run([&] { return async_de::run<&trivial>(c); }, coop::Options{.vm = vm});
    benchmark::DoNotOptimize(r.best);
    auto cos_wall = duration_cast<nanoseconds>(r.wall);
    auto base_wall = pool_de(config(evaluations, process ? in_flight : slots), slots);
    cos_ns = static_cast<double>(cos_wall.count()) / static_cast<double>(evaluations);
    base_ns = static_cast<double>(base_wall.count()) / static_cast<double>(evaluations);
    // The pool as one would write it by hand: one job per thread in flight.
    if (process) {
      base_one_ns = static_cast<double>(pool_de(config(evaluations, slots), slots).count()) /
                    static_cast<double>(evaluations);
    }
    state.SetIterationTime(duration<double>(cos_wall).count());
  }
  state.counters["cos_ns"] = cos_ns;
  state.counters["baseline_ns"] = base_ns;
  state.counters["ratio_ns"] = base_ns / cos_ns;
  state.counters["min_ratio_ns"] = process ? 1 / 1.2 : 1.0;
  if (process) {
    state.counters["cos_pool1_ns"] = cos_ns;
    state.counters["baseline_pool1_ns"] = base_one_ns;
    state.counters["ratio_pool1_ns"] = base_one_ns / cos_ns;
    state.counters["min_ratio_pool1_ns"] = 1 / 1.2;
  }
}
void async_de_no_vm(benchmark::State& state) { async_de_overhead(state, false); }
void async_de_process(benchmark::State& state) { async_de_overhead(state, true); }
BENCHMARK(async_de_no_vm)->Name("async DE, per evaluation, no VM, vs a 2-thread std::thread pool")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(async_de_process)->Name("async DE, per evaluation, ProcessVM(2), vs a 2-thread std::thread pool")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// One dispatch of `jobs` 1 ms jobs on a fresh ProcessVM(2) (a scheduler
// finalizes its VM), with or without a journal at `journal` (a fresh one
// each time); returns the wall time per job.
double dispatch_per_job(int jobs, const std::string& journal) {
  auto vm = std::make_shared<coop::ProcessVM>(2);
  coop::DispatchOptions o;
  if (!journal.empty()) {
    std::filesystem::remove(journal);
    o.journal = journal;
  }
  coop::DispatchStats stats;
  coop::Scheduler sched(coop::Options{.vm = vm});
  std::vector<coop::Job<double>> list;
  for (int i = 0; i < jobs; ++i) list.push_back(coop::job(cos_bench::spin, 1000));
  stats = coop::dispatch(list, o).stats;
  return static_cast<double>(duration_cast<nanoseconds>(stats.wall_time()).count()) / jobs;
}

void journal_overhead(benchmark::State& state) {
  const int jobs = 400;
  std::string journal = "/tmp/cos_bench_journal_" + std::to_string(::getpid());
  double with = 0, without = 0;
  for (auto _ : state) {
    // Alternate, so that both see the same machine.
    without = dispatch_per_job(jobs, "");
    with = dispatch_per_job(jobs, journal);
    state.SetIterationTime(with * jobs * 1e-9);
  }
  std::filesystem::remove(journal);
  state.counters["cos_ns"] = with;
  state.counters["baseline_ns"] = without;
  state.counters["ratio_ns"] = without / with;
  state.counters["min_ratio_ns"] = 1 / 1.1;
}
BENCHMARK(journal_overhead)->Name("dispatch with a journal, per 1 ms job, ProcessVM(2), vs without")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// whole_program() runs one side alone, for timing and profiling from
// outside (farm-bench --vs 'de --pool-de N' -- de --cos-de N): N evaluations
// of the DE on ProcessVM(2) with what it can queue in flight, or on the
// pool with as many in flight; prints us per evaluation.
int whole_program(const std::string& mode, long evaluations) {
  auto vm = std::make_shared<coop::ProcessVM>(2);
  const int in_flight = vm->slots() + vm->queue_capacity();
  nanoseconds wall{};
  if (mode == "--cos-de") {
    async_de::Report r = coop::run([&] { return async_de::run<&trivial>(config(evaluations, in_flight)); },
                                   coop::Options{.vm = vm});
    wall = duration_cast<nanoseconds>(r.wall);
  } else {
    vm.reset();
    wall = pool_de(config(evaluations, in_flight), 2);
  }
  std::printf("%s: %.2f us per evaluation\n", mode.c_str(), static_cast<double>(wall.count()) * 1e-3 / evaluations);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // a worker serves tasks here and never returns
  if (argc == 3 && (std::string(argv[1]) == "--cos-de" || std::string(argv[1]) == "--pool-de")) {
    return whole_program(argv[1], std::atol(argv[2]));
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
