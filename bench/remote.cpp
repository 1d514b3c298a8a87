// remote.cpp: remote tasks on ThreadVM.
//
// dispatch_efficiency: parallel efficiency of dispatch() with CPU-bound jobs
//   on 2 slots, serial time / (slots x wall time). The baseline is the ideal
//   wall time of the same jobs, serial time / slots, so the ratio column is
//   the efficiency itself. Targets: >= 0.95 for 5 ms jobs, >= 0.9 for 1 ms.
//   A second row runs the same jobs through a plain std::thread pool (one job
//   per worker at a time, handed over with condition variables): its ratio
//   says how cos compares with the machine's own thread wake-up latency.
// dispatch_in_flight: dispatch's own cost per job does not grow with the jobs
//   in flight. Empty jobs on ThreadVM(2) with max_in_flight 1,000 against the
//   same dispatch with 2 (the baseline, in the same run); the ratio is
//   cost(2) / cost(1,000), target >= 1 / 1.2. The local row runs the jobs as
//   local tasks (remote = false) that yield once, so that 1,000 are really
//   in flight at once; there the core's own cost grows with the live tasks
//   (1,000 stacks and records do not stay in the caches), so that row takes
//   it out: its cost per job is a dispatch's minus that of the core spawning
//   and joining the same tasks, 2 or 1,000 alive, with no dispatch.
// dispatch_vs_pool: the empty-job throughput of dispatch on ThreadVM(2)
//   against thread_pool_wall's two workers handing off the same calls, one
//   in flight per worker as dispatch does; target >= 0.8x the pool's rate.
// remote_round_trip: spawn + join of an empty remote task on a 1-slot
//   ThreadVM (serialization, handoff to the slot's thread and back), against
//   a plain std::thread + condition-variable handoff of an empty job.
#include <benchmark/benchmark.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <cos/cos.hpp>

#include "jobs.hpp"

namespace {

using namespace std::chrono;

using cos_bench::empty;
using cos_bench::spin;

// The plainest pool that hands one job at a time to each of `slots` worker
// threads and waits for their results, as the scheduler does: the baseline
// that shows what the machine's thread wake-ups cost. Returns the wall time.
nanoseconds thread_pool_wall(int slots, int jobs, int job_us) {
  struct Worker {
    std::mutex mutex;
    std::condition_variable wake;
    bool has_job = false;
    bool stop = false;
    std::thread thread;
  };
  std::mutex inbox_mutex;
  std::condition_variable inbox_cv;
  std::vector<int> inbox;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < slots; ++i) workers.push_back(std::make_unique<Worker>());
  for (int i = 0; i < slots; ++i) {
    workers[i]->thread = std::thread([&, i] {
      Worker& w = *workers[i];
      for (;;) {
        {
          std::unique_lock lock(w.mutex);
          w.wake.wait(lock, [&] { return w.has_job || w.stop; });
          if (w.stop) return;
          w.has_job = false;
        }
        benchmark::DoNotOptimize(spin(job_us));
        {
          std::lock_guard lock(inbox_mutex);
          inbox.push_back(i);
        }
        inbox_cv.notify_one();
      }
    });
  }
  auto give = [&](int i) {
    {
      std::lock_guard lock(workers[i]->mutex);
      workers[i]->has_job = true;
    }
    workers[i]->wake.notify_one();
  };
  auto t0 = steady_clock::now();
  int started = 0;
  for (int i = 0; i < slots && started < jobs; ++i, ++started) give(i);
  for (int done = 0; done < jobs; ++done) {
    int i;
    {
      std::unique_lock lock(inbox_mutex);
      inbox_cv.wait(lock, [&] { return !inbox.empty(); });
      i = inbox.back();
      inbox.pop_back();
    }
    if (started < jobs) {
      give(i);
      ++started;
    }
  }
  auto wall = steady_clock::now() - t0;
  for (auto& w : workers) {
    {
      std::lock_guard lock(w->mutex);
      w->stop = true;
    }
    w->wake.notify_one();
    w->thread.join();
  }
  return duration_cast<nanoseconds>(wall);
}

void dispatch_efficiency(benchmark::State& state) {
  const int job_us = static_cast<int>(state.range(0));
  const int slots = 2;
  const int jobs = static_cast<int>(400'000 / job_us);  // about 0.2 s of wall time on 2 slots
  coop::DispatchStats stats;
  for (auto _ : state) {
    auto vm = std::make_shared<coop::ThreadVM>(slots);  // a scheduler finalizes its VM
    coop::run(
        [&] {
          std::vector<coop::Job<double>> list;
          for (int i = 0; i < jobs; ++i) list.push_back(coop::job(spin, job_us));
          stats = coop::dispatch(list).stats;
        },
        coop::Options{.vm = vm});
    state.SetIterationTime(duration<double>(stats.wall_time()).count());
  }
  double wall = cos_bench::publish_efficiency(state, stats, slots, job_us >= 5000 ? 0.95 : 0.9);
  // The same jobs through a plain thread pool: its wall time against cos's.
  state.counters["cos_pool_ns"] = wall;
  state.counters["baseline_pool_ns"] = static_cast<double>(thread_pool_wall(slots, jobs, job_us).count());
}
BENCHMARK(dispatch_efficiency)->Name("dispatch efficiency, 2 slots, 1 ms jobs")->Arg(1000)
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(dispatch_efficiency)->Name("dispatch efficiency, 2 slots, 5 ms jobs")->Arg(5000)
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// pass() is an empty job that, run as a local task, yields once: until every
// other ready task has run, so that the jobs a dispatch starts stay in flight.
double pass(int) {
  if (coop::Scheduler::current_or_null()) coop::yield();
  return 0;
}

// dispatch_wall() is the wall time of one dispatch of `jobs` calls of
// spin(0) (empty but for one clock read, the call the pool makes too) on a
// fresh ThreadVM(2), or of pass() when they run locally.
nanoseconds dispatch_wall(int jobs, bool remote, int max_in_flight) {
  auto vm = std::make_shared<coop::ThreadVM>(2);
  nanoseconds wall{};
  coop::run(
      [&] {
        std::vector<coop::Job<double>> list;
        list.reserve(static_cast<std::size_t>(jobs));
        for (int i = 0; i < jobs; ++i) list.push_back(remote ? coop::job(spin, 0) : coop::job(pass, 0));
        coop::DispatchOptions opt{.remote = remote, .keep_results = false, .max_in_flight = max_in_flight};
        auto t0 = steady_clock::now();
        coop::dispatch(list, opt);
        wall = duration_cast<nanoseconds>(steady_clock::now() - t0);
      },
      coop::Options{.vm = vm});
  return wall;
}

// core_wall() is the wall time of the core alone running `jobs` local tasks
// of pass() with `alive` of them alive at a time: what a local dispatch
// costs without dispatch.
nanoseconds core_wall(int jobs, int alive) {
  nanoseconds wall{};
  coop::run([&] {
    std::deque<coop::Task<double>> live;
    auto t0 = steady_clock::now();
    for (int i = 0; i < jobs; ++i) {
      if (static_cast<int>(live.size()) == alive) {
        benchmark::DoNotOptimize(live.front().join());
        live.pop_front();
      }
      live.push_back(coop::spawn([] { return pass(0); }));
    }
    for (auto& t : live) benchmark::DoNotOptimize(t.join());
    wall = duration_cast<nanoseconds>(steady_clock::now() - t0);
  });
  return wall;
}

void dispatch_in_flight(benchmark::State& state, bool remote) {
  const int jobs = remote ? 20'000 : 200'000;
  const int rounds = 3;  // alternating, so that both sides see the same load
  nanoseconds few{}, many{};
  for (auto _ : state) {
    few = many = nanoseconds{};
    for (int i = 0; i < rounds; ++i) {
      few += dispatch_wall(jobs, remote, 2);
      many += dispatch_wall(jobs, remote, 1000);
      if (!remote) {
        few -= core_wall(jobs, 2);
        many -= core_wall(jobs, 1000);
      }
    }
    state.SetIterationTime(duration<double>(many).count());
  }
  double cos_ns = static_cast<double>(many.count()) / (rounds * jobs);
  double base_ns = static_cast<double>(few.count()) / (rounds * jobs);
  state.counters["cos_ns"] = cos_ns;
  state.counters["baseline_ns"] = base_ns;
  state.counters["ratio_ns"] = base_ns / cos_ns;
  state.counters["min_ratio_ns"] = 1 / 1.2;
}
BENCHMARK_CAPTURE(dispatch_in_flight, remote, true)->Name("dispatch per job, max_in_flight 1000 vs 2, ThreadVM(2)")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(dispatch_in_flight, local, false)->Name("dispatch's own cost per job, max_in_flight 1000 vs 2, local jobs")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

void dispatch_vs_pool(benchmark::State& state) {
  const int jobs = 20'000;
  const int rounds = 3;
  nanoseconds cos{}, pool{};
  for (auto _ : state) {
    cos = pool = nanoseconds{};
    for (int i = 0; i < rounds; ++i) {
      cos += dispatch_wall(jobs, true, 0);
      pool += thread_pool_wall(2, jobs, 0);
    }
    state.SetIterationTime(duration<double>(cos).count());
  }
  double cos_ns = static_cast<double>(cos.count()) / (rounds * jobs);
  double base_ns = static_cast<double>(pool.count()) / (rounds * jobs);
  state.counters["cos_ns"] = cos_ns;
  state.counters["baseline_ns"] = base_ns;
  state.counters["ratio_ns"] = base_ns / cos_ns;
  state.counters["min_ratio_ns"] = 0.8;
}
BENCHMARK(dispatch_vs_pool)->Name("dispatch of empty jobs, ThreadVM(2) vs a std::thread pool")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

// One worker thread that runs handed-over jobs: the plainest remote slot.
class HandoffThread {
 public:
  HandoffThread() : thread_([this] { serve(); }) {}
  ~HandoffThread() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void call(void (*fn)()) {
    std::unique_lock lock(mutex_);
    job_ = fn;
    done_ = false;
    cv_.notify_all();
    cv_.wait(lock, [&] { return done_; });
  }

 private:
  void serve() {
    std::unique_lock lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || job_; });
      if (stop_) return;
      auto fn = std::exchange(job_, nullptr);
      fn();
      done_ = true;
      cv_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  void (*job_)() = nullptr;
  bool done_ = false;
  bool stop_ = false;
  std::thread thread_;
};

void remote_round_trip(benchmark::State& state) {
  const int n = 20'000;
  double cos_ns = 0, base_ns = 0;
  for (auto _ : state) {
    auto vm = std::make_shared<coop::ThreadVM>(1);
    auto t0 = steady_clock::now();
    coop::run(
        [&] {
          for (int i = 0; i < n; ++i) coop::spawn(coop::Spawn{.remote = true}, empty).join();
        },
        coop::Options{.vm = vm});
    auto t1 = steady_clock::now();
    {
      HandoffThread worker;
      for (int i = 0; i < n; ++i) worker.call(empty);
    }
    auto t2 = steady_clock::now();
    cos_ns = static_cast<double>(duration_cast<nanoseconds>(t1 - t0).count()) / n;
    base_ns = static_cast<double>(duration_cast<nanoseconds>(t2 - t1).count()) / n;
    state.SetIterationTime(duration<double>(t1 - t0).count());
  }
  state.counters["cos_ns"] = cos_ns;
  state.counters["baseline_ns"] = base_ns;
}
BENCHMARK(remote_round_trip)->Name("remote spawn+join round trip, ThreadVM(1)")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

COS_REMOTE(pass);

BENCHMARK_MAIN();
