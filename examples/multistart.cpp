// multistart.cpp: two levels of parallelism, as PyOPUS runs a whole
// optimiser per worker. The top level runs one remote task per start point
// (dispatch over the VM's slots); each task runs its own coop::Scheduler on
// its slot, where a pattern search spawns its probes as local microthreads.
//
//   multistart [--vm none|thread|process|mpi] [--slots N] [--starts N] [--seed S]
//
// It minimises the 6-dimensional Rastrigin function (many local minima, the
// global one 0 at the origin) from --starts random points and prints what
// each search found and the best of them.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <cos/cos.hpp>

#include "vm_by_name.hpp"

namespace {

// What one search found; serialize() lets it travel back from a slot.
struct Found {
  std::vector<double> x;
  double f = 0;
  int probes = 0;     // cost function evaluations
  int inner_tasks = 0;  // microthreads its scheduler ran
  template <class Archive> void serialize(Archive& ar) { ar(x, f, probes, inner_tasks); }
};

double rastrigin(const std::vector<double>& x) {
  double s = 10.0 * static_cast<double>(x.size());
  for (double v : x) s += v * v - 10.0 * std::cos(2 * M_PI * v);
  return s;
}

// The inner level: a compass search. Each iteration spawns one probe per
// coordinate and direction as a local microthread, joins them all, moves to
// the best probe that improves, or halves the step when none does. Here the
// probes only compute; a probe that waits (for a simulator it started, or
// on a timer) would let the others run meanwhile.
Found compass_search(std::vector<double> x, double step, int max_iterations) {
  Found found;
  found.f = rastrigin(x);
  for (int it = 0; it < max_iterations && step > 1e-6; ++it) {
    std::vector<coop::Task<double>> probes;
    std::vector<std::vector<double>> points;
    for (std::size_t i = 0; i < x.size(); ++i) {
      for (double dir : {-1.0, 1.0}) {
        std::vector<double> p = x;
        p[i] += dir * step;
        points.push_back(p);
        probes.push_back(coop::spawn([p] { return rastrigin(p); }));  // a local microthread
      }
    }
    std::size_t best = points.size();
    double best_f = found.f;
    for (std::size_t k = 0; k < probes.size(); ++k) {
      double f = probes[k].join();
      ++found.probes;
      if (f < best_f) {
        best_f = f;
        best = k;
      }
    }
    found.inner_tasks += static_cast<int>(probes.size());
    if (best < points.size()) {
      x = points[best];
      found.f = best_f;
    } else {
      step /= 2;
    }
  }
  found.x = x;
  return found;
}

// The outer level's task: one whole search from one start point. On a slot
// it makes its own Scheduler (the slot's thread or process has none), runs
// the search in it, and returns when every microthread has ended. Without a
// VM, the remote spawn runs it as a microthread of the top-level scheduler,
// so it searches there instead of making a second one.
Found search_from(std::vector<double> start) {
  if (coop::Scheduler::current_or_null()) return compass_search(std::move(start), 1.0, 400);
  return coop::run([&] { return compass_search(std::move(start), 1.0, 400); });
}
COS_REMOTE(search_from);


}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // a worker process serves searches here and never returns

  std::string vm_name = "process";
  int slots = 2, starts = 8;
  unsigned seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "multistart: %s needs a value\n", a.c_str());
      return 2;
    }
    std::string v = argv[++i];
    if (a == "--vm") {
      vm_name = v;
    } else if (a == "--slots") {
      slots = std::atoi(v.c_str());
    } else if (a == "--starts") {
      starts = std::atoi(v.c_str());
    } else if (a == "--seed") {
      seed = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
    } else {
      std::fprintf(stderr, "multistart: unknown option '%s'\n", a.c_str());
      return 2;
    }
  }
  if (slots <= 0 || starts <= 0) {
    std::fprintf(stderr, "multistart: --slots and --starts must be positive\n");
    return 2;
  }
  std::shared_ptr<coop::VM> vm;
  try {
    vm = examples::make_vm(vm_name, slots);
  } catch (const coop::Error& e) {
    std::fprintf(stderr, "multistart: %s\n", e.what());
    return 2;
  }

  // The start points: random, from a fixed seed.
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coordinate(-5.12, 5.12);
  std::vector<coop::Job<Found>> jobs;
  for (int s = 0; s < starts; ++s) {
    std::vector<double> x(6);
    for (double& v : x) v = coordinate(rng);
    jobs.push_back(coop::job(search_from, x));
  }

  coop::run(
      [&] {
        // The outer level: one search per slot at a time, results as they end.
        coop::dispatch(jobs, [&](coop::Stream<Found>& results) {
          Found best;
          best.f = INFINITY;
          for (auto& r : results) {
            Found& f = r.value.get();
            std::printf("start %zu: f = %.6g after %d probes in %d microthreads (on %s)\n", r.index, f.f, f.probes,
                        f.inner_tasks, r.host ? r.host->name().c_str() : "this scheduler");
            if (f.f < best.f) best = f;
          }
          std::printf("best of %zu searches: f = %.6g at (", results.stats().done, best.f);
          for (std::size_t i = 0; i < best.x.size(); ++i) std::printf("%s%.3f", i ? ", " : "", best.x[i]);
          std::printf(")\n");
        });
      },
      coop::Options{.vm = vm});
  return 0;
}
