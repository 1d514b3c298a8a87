// jobs.hpp: the remote functions the benchmarks run, registered by name.
// Include it in one source file of a benchmark program.
#pragma once

#include <chrono>

#include <cos/remote.hpp>

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

}  // namespace cos_bench

COS_REMOTE(cos_bench::empty);
COS_REMOTE(cos_bench::spin);
