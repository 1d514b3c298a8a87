// async_de.hpp: an asynchronous parallel differential evolution in PyOPUS's
// pattern, written against cos's spawn and join. examples/async_de.cpp runs
// it from the command line; bench/de.cpp measures what cos adds per
// evaluation. To optimise your own model, register your cost function with
// COS_REMOTE and pass it as `Cost` (see async_de.cpp).
//
// Why asynchronous: a synchronous DE evaluates a whole generation, then
// waits for its slowest member before the next one starts, so slots idle
// whenever evaluation times differ. The asynchronous DE keeps every slot
// busy: whenever one is free it spawns the evaluation of a new trial vector,
// it joins whichever evaluation finishes first, and that result updates the
// population at once. The price is that the order of updates, and so the
// run, depends on the timing when there is more than one slot.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cos/cos.hpp>

namespace async_de {

// The knobs of one run. The defaults are the classic DE/rand/1/bin settings.
struct Config {
  int dimension = 30;
  int population = 32;       // NP: members of the population
  long evaluations = 20000;  // the budget: cost function evaluations in all
  double lower = -5, upper = 10;  // every coordinate starts in [lower, upper]
  double weight = 0.5;       // F: the differential weight
  double crossover = 0.9;    // CR: the probability of taking a coordinate from the mutant
  unsigned seed = 1;         // a fixed seed: one slot gives the same run every time
  int in_flight = 1;         // evaluations running at once (the slots to keep busy)
};

// What a run found and what it cost.
struct Report {
  double best = std::numeric_limits<double>::infinity();
  double first_best = std::numeric_limits<double>::infinity();  // best of the first NP evaluations
  std::vector<double> best_x{};
  long evaluations = 0;
  std::chrono::duration<double> wall{};  // from the first spawn to the last join
  std::chrono::duration<double> busy{};  // the evaluations' own run time, summed
};

// Population is the state of the algorithm, kept apart from how evaluations
// run, so that the same DE runs on cos here and on a hand-written thread
// pool in bench/de.cpp.
class Population {
 public:
  explicit Population(const Config& c)
      : c_(c), rng_(c.seed), x_(static_cast<std::size_t>(c.population)),
        f_(static_cast<std::size_t>(c.population), std::numeric_limits<double>::infinity()) {}

  // Step 1: the next point to evaluate, for member `target`. The first NP
  // points are the random initial population; after that a trial vector:
  // mutant = x[r1] + F (x[r2] - x[r3]) of three other members, crossed
  // coordinate by coordinate with the target (at least one coordinate from
  // the mutant).
  std::vector<double> next_point(int& target) {
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const int np = c_.population;
    if (made_ < np) {
      target = made_++;
      std::vector<double> x(static_cast<std::size_t>(c_.dimension));
      for (double& v : x) v = c_.lower + (c_.upper - c_.lower) * uniform(rng_);
      x_[static_cast<std::size_t>(target)] = x;  // trials may draw on it before its value is in
      return x;
    }
    target = made_++ % np;
    std::uniform_int_distribution<int> member(0, np - 1);
    int r1, r2, r3;
    do r1 = member(rng_); while (r1 == target);
    do r2 = member(rng_); while (r2 == target || r2 == r1);
    do r3 = member(rng_); while (r3 == target || r3 == r1 || r3 == r2);
    const auto& a = x_[static_cast<std::size_t>(r1)];
    const auto& b = x_[static_cast<std::size_t>(r2)];
    const auto& d = x_[static_cast<std::size_t>(r3)];
    std::vector<double> trial = x_[static_cast<std::size_t>(target)];
    std::uniform_int_distribution<int> coordinate(0, c_.dimension - 1);
    int forced = coordinate(rng_);
    for (int j = 0; j < c_.dimension; ++j) {
      auto k = static_cast<std::size_t>(j);
      if (j == forced || uniform(rng_) < c_.crossover) trial[k] = a[k] + c_.weight * (b[k] - d[k]);
    }
    return trial;
  }

  // Step 3: an evaluation came back. An initial point takes its place; a
  // trial replaces its target when it is at least as good (greedy
  // selection). The target's value is read now, not when the trial was
  // made: another trial may have replaced it meanwhile.
  void update(int target, std::vector<double>&& x, double f, Report& report) {
    auto t = static_cast<std::size_t>(target);
    if (f <= f_[t]) {
      f_[t] = f;
      x_[t] = x;
      if (f < report.best) {
        report.best = f;
        report.best_x = std::move(x);
      }
    }
    if (++received_ == c_.population) report.first_best = report.best;
  }

 private:
  Config c_;
  std::mt19937_64 rng_;
  std::vector<std::vector<double>> x_;
  std::vector<double> f_;
  int made_ = 0;
  int received_ = 0;
};

// An evaluation's answer: the cost, and how long the slot took to compute it
// (the cost function times itself, so that the figure is the same on every
// VM, without one too).
struct Evaluation {
  double f = 0;
  double seconds = 0;
  template <class Archive> void serialize(Archive& ar) { ar(f, seconds); }
};

// run(config, extra...) is the asynchronous DE on cos. `Cost` is a function
// registered with COS_REMOTE that takes the point (a std::vector<double>),
// then `extra...` (settings that every evaluation needs: they travel with
// each call), and returns an Evaluation.
// Call it from a task of a scheduler: with a VM, evaluations run on its
// slots; without one, PyOPUS's rule applies and they run as local
// microthreads of this scheduler (one at a time unless they yield).
template <auto Cost, class... Extra> Report run(const Config& c, const Extra&... extra) {
  Population population(c);
  Report report;
  struct Pending {
    int target;
    std::vector<double> x;
  };
  std::unordered_map<coop::Tid, Pending> pending;  // what each running evaluation is for
  long spawned = 0;
  auto t0 = std::chrono::steady_clock::now();
  while (report.evaluations < c.evaluations) {
    // Step 1: fill every free slot with an evaluation. A remote spawn goes
    // to a slot of the VM; keeping at most `in_flight` running means none
    // waits for a slot, so each one starts at once.
    while (static_cast<int>(pending.size()) < c.in_flight && spawned < c.evaluations) {
      int target = 0;
      std::vector<double> x = population.next_point(target);
      coop::Task<Evaluation> task = coop::spawn(coop::Spawn{.remote = true}, Cost, x, extra...);
      pending.emplace(task.tid(), Pending{target, std::move(x)});
      ++spawned;
      // The handle may go: coop::join() below still collects the child.
    }
    // Step 2: join whichever evaluation finishes first (any child of this
    // task), yielding until one does. get() rethrows what the cost function
    // threw (coop::RemoteError from a slot), which ends the run here.
    std::optional<coop::Joined> joined = coop::join();
    auto it = pending.find(joined->tid);
    Pending p = std::move(it->second);
    pending.erase(it);
    Evaluation e = joined->get<Evaluation>();
    ++report.evaluations;
    report.busy += std::chrono::duration<double>(e.seconds);
    // Step 3: update the population; the loop then spawns the next trial.
    population.update(p.target, std::move(p.x), e.f, report);
  }
  report.wall = std::chrono::steady_clock::now() - t0;
  return report;
}

// rosenbrock(x) is the standard test function: a long curved valley, its
// minimum 0 at (1, ..., 1).
inline double rosenbrock(const std::vector<double>& x) {
  double s = 0;
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    double a = x[i + 1] - x[i] * x[i];
    double b = 1 - x[i];
    s += 100 * a * a + b * b;
  }
  return s;
}

// timed(f, x) evaluates f and measures how long it took.
template <class F> Evaluation timed(F&& f, const std::vector<double>& x) {
  auto t0 = std::chrono::steady_clock::now();
  double v = f(x);
  return Evaluation{v, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

}  // namespace async_de
