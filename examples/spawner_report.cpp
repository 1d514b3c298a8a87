// spawner_report.cpp: a search that reports its best point to the spawner
// (PyOPUS's spawnerCall): each remote task runs a random local search and,
// whenever it improves, posts its point to the spawner, which keeps the
// best of all; every few rounds a task asks the spawner for the best point
// so far and continues from there.
//
//   spawner_report            on worker processes (ProcessVM, 2 slots)
//   spawner_report --threads  on worker threads of this process (ThreadVM)
//
// report() and best_so_far() run in the spawner as local tasks of its
// scheduler, one at a time, so they touch the spawner's `best` without locks.
// spawner_post() does not wait (the search goes on); spawner_call() waits for
// the answer.
#include <cos/cos.hpp>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace {

struct Best {
  double f = INFINITY;
  std::vector<double> x;
  int reports = 0;
  double printed = INFINITY;  // the last best printed
  template <class Archive> void serialize(Archive& ar) { ar(f, x); }
};

Best best;  // the spawner's state

// Rosenbrock's function in 4 dimensions: its minimum is 0 at (1, 1, 1, 1).
double rosenbrock(const std::vector<double>& x) {
  double f = 0;
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    f += 100 * std::pow(x[i + 1] - x[i] * x[i], 2) + std::pow(1 - x[i], 2);
  }
  return f;
}

// In the spawner: a task reports a point it found.
void report(int searcher, double f, std::vector<double> x) {
  ++best.reports;
  if (f < best.f) {
    if (f < best.printed / 10) {  // one line per order of magnitude
      std::printf("new best f = %.3g from searcher %d\n", f, searcher);
      best.printed = f;
    }
    best.f = f;
    best.x = std::move(x);
  }
}
COS_REMOTE(report);

// In the spawner: the best point so far, for a task to continue from.
Best best_so_far() { return best; }
COS_REMOTE(best_so_far);

// On a slot: rounds of random steps around the current point; improvements
// are posted, and every round starts from the spawner's best point.
double search(int searcher, int rounds) {
  std::mt19937 rng(static_cast<unsigned>(searcher) * 7919u + 1);
  std::normal_distribution<double> step(0.0, 1.0);
  std::vector<double> x(4, -1.0);
  double f = rosenbrock(x);
  double scale = 0.5;
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < 2000; ++i) {
      std::vector<double> y = x;
      for (double& v : y) v += scale * step(rng);
      double fy = rosenbrock(y);
      if (fy < f) {
        f = fy;
        x = y;
        coop::spawner_post(report, searcher, f, x);  // does not wait
      } else {
        scale = std::max(1e-4, scale * 0.999);
      }
    }
    Best b = coop::spawner_call(best_so_far);  // waits for the spawner's answer
    if (b.f < f) {
      f = b.f;
      x = b.x;
    }
  }
  return f;
}
COS_REMOTE(search);

}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // in a worker process this serves tasks and never returns
  bool threads = argc > 1 && std::string(argv[1]) == "--threads";
  coop::Options options;
  if (threads) {
    options.vm = std::make_shared<coop::ThreadVM>(2);
  } else {
    options.vm = std::make_shared<coop::ProcessVM>(2);
  }
  coop::run(
      [] {
        std::vector<coop::Task<double>> searchers;
        for (int s = 0; s < 4; ++s) searchers.push_back(coop::spawn({.remote = true, .block = false}, search, s, 20));
        double found = INFINITY;
        for (auto& t : searchers) found = std::min(found, t.join());
        std::printf("best f = %.3g at (%.3f, %.3f, %.3f, %.3f) after %d reports; %s\n", best.f, best.x[0],
                    best.x[1], best.x[2], best.x[3], best.reports,
                    found == best.f ? "the spawner kept the searchers' best point"
                                    : "MISMATCH: the spawner missed the best point");
      },
      std::move(options));
}
