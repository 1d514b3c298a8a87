// jobs.hpp: what the remote benchmarks share: the functions they run
// (registered by name) and how they report a dispatch's efficiency.
// Include it in one source file of a benchmark program.
#pragma once

#include <chrono>

#include <benchmark/benchmark.h>

#include <cos/remote.hpp>
#include <cos/stream.hpp>

namespace cos_bench {

// An empty job: what a remote call costs by itself.
inline void empty() {}

// Busy for `us` microseconds of wall time: a CPU-bound job.
inline double spin(int us) {
  auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  double x = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 100; ++i) x += 1e-9 * i;
  }
  return x;
}

// publish_efficiency() reports a dispatch on `slots` slots for run_all: cos's
// wall time against the ideal (serial time / slots), so that the ratio is the
// parallel efficiency, with its target. Returns the wall time in ns.
inline double publish_efficiency(benchmark::State& state, const coop::DispatchStats& stats, int slots,
                                 double min_ratio) {
  using std::chrono::duration_cast;
  using std::chrono::nanoseconds;
  double wall = static_cast<double>(duration_cast<nanoseconds>(stats.wall_time()).count());
  double serial = static_cast<double>(duration_cast<nanoseconds>(stats.serial_time).count());
  state.counters["cos_ns"] = wall;
  state.counters["baseline_ns"] = serial / slots;
  state.counters["ratio_ns"] = serial / (slots * wall);
  state.counters["min_ratio_ns"] = min_ratio;
  return wall;
}

}  // namespace cos_bench

COS_REMOTE(cos_bench::empty);
COS_REMOTE(cos_bench::spin);
