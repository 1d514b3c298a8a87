// sweep.cpp: a parameter sweep over worker slots, results as they arrive.
//
//   sweep            worker processes, one per core (ProcessVM)
//   sweep --threads  worker threads of this process instead (ThreadVM)
//   sweep N          N slots
//
// Each point of a (stiffness x damping) grid integrates a damped oscillator
// for a few milliseconds of CPU. dispatch() keeps every slot busy; the
// collector prints each result the moment it arrives and, after its loop,
// the summary: serial time, wall time and speedup.
#include <cos/cos.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

// The parameters of one point; serialize() lets it travel to a slot.
struct Point {
  double stiffness = 0;
  double damping = 0;
  template <class Archive> void serialize(Archive& ar) { ar(stiffness, damping); }
};

// The model: x'' = -k x - c x', from x = 1, integrated with a small step.
// Returns the time (in model seconds) until the amplitude falls below 1%.
double settle_time(Point p) {
  double x = 1, v = 0, t = 0;
  const double dt = 1e-5;
  double last_peak_t = 0;
  for (int i = 0; i < 2'000'000; ++i) {
    double a = -p.stiffness * x - p.damping * v;
    v += a * dt;
    x += v * dt;
    t += dt;
    if (std::fabs(x) > 0.01) last_peak_t = t;
    if (t - last_peak_t > 2.0) break;  // quiet for 2 s of model time
  }
  return last_peak_t;
}
COS_REMOTE(settle_time);  // now any slot can run it, by name

}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // in a worker process this serves tasks and never returns

  bool threads = false;
  int slots = static_cast<int>(std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) {
      threads = true;
    } else {
      slots = std::atoi(argv[i]);
    }
  }
  if (slots <= 0) {
    std::fprintf(stderr, "sweep: the slot count must be positive\n");
    return 2;
  }

  std::shared_ptr<coop::VM> vm;
  if (threads) {
    vm = std::make_shared<coop::ThreadVM>(slots);
  } else {
    vm = std::make_shared<coop::ProcessVM>(slots);
  }
  std::printf("sweep: %d %s\n", slots, threads ? "worker threads" : "worker processes");

  coop::run(
      [] {
        // The grid: one job per point.
        std::vector<Point> grid;
        for (double k : {1.0, 2.0, 4.0, 8.0}) {
          for (double c : {0.5, 1.0, 2.0, 4.0}) grid.push_back({k, c});
        }
        std::vector<coop::Job<double>> jobs;
        for (const Point& p : grid) jobs.push_back(coop::job(settle_time, p));

        coop::dispatch(jobs, [&grid](coop::Stream<double>& results) {
          // Results in completion order, printed as they arrive.
          for (auto& r : results) {
            const Point& p = grid[r.index];
            double ms = std::chrono::duration<double, std::milli>(r.timing.run_time()).count();
            std::printf("point %2zu  k=%-3g c=%-3g  settles after %6.2f s   (%5.1f ms on %s)\n", r.index,
                        p.stiffness, p.damping, r.value.get(), ms,
                        r.host ? r.host->name().c_str() : "this task");
          }
          // After the loop: every result has arrived.
          const coop::DispatchStats& s = results.stats();
          std::printf("%zu points: serial %.3f s, wall %.3f s, speedup %.2f\n", s.done,
                      std::chrono::duration<double>(s.serial_time).count(),
                      std::chrono::duration<double>(s.wall_time()).count(), s.speedup());
        });
      },
      coop::Options{.vm = vm});
}
