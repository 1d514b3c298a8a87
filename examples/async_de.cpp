// async_de.cpp: an asynchronous parallel differential evolution on the
// slots of a VM, PyOPUS's headline use.
//
//   async_de [--vm none|thread|process|mpi] [--slots N] [--evaluations N]   (default: process, 2 slots)
//            [--work-us US] [--seed S]
//
// It minimises the 30-dimensional Rosenbrock function with a fixed seed and
// budget, and prints the best value, evaluations per second and the
// parallel efficiency (the evaluations' own time / (slots x wall time)).
// --work-us adds that many microseconds of busy work to every evaluation,
// to stand in for a simulator (default 200; 0 measures cos's own overhead).
//
// To adapt it: replace cost() by your model (it must be a function at
// namespace scope, its argument and result serializable by cereal),
// register it with COS_REMOTE, and keep the rest. The algorithm itself, with
// its three steps (spawn on a free slot, join whichever ends, update), is
// in async_de.hpp.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <cos/cos.hpp>

#include "async_de.hpp"
#include "vm_by_name.hpp"

namespace {

// busy(us) spins for `us` microseconds: the stand-in for a simulator's CPU time.
void busy(int us) {
  auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  volatile double sink = 0;
  while (std::chrono::steady_clock::now() < end) sink = sink + 1;
}

// The cost function, as a slot runs it. Everything it needs comes in its
// arguments: a worker process does not share this program's variables.
async_de::Evaluation cost(std::vector<double> x, int extra_us) {
  return async_de::timed(
      [extra_us](const std::vector<double>& p) {
        busy(extra_us);
        return async_de::rosenbrock(p);
      },
      x);
}
COS_REMOTE(cost);  // may now run on any slot, by name


}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // a worker process serves evaluations here and never returns

  std::string vm_name = "process";
  int work_us = 200;  // travels with every call: a worker process has its own copy of every variable
  async_de::Config config;
  int slots = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "async_de: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--vm") {
      vm_name = value();
    } else if (a == "--slots") {
      slots = std::atoi(value().c_str());
    } else if (a == "--evaluations") {
      config.evaluations = std::atol(value().c_str());
    } else if (a == "--work-us") {
      work_us = std::atoi(value().c_str());
    } else if (a == "--seed") {
      config.seed = static_cast<unsigned>(std::strtoul(value().c_str(), nullptr, 10));
    } else {
      std::fprintf(stderr, "async_de: unknown option '%s'\n", a.c_str());
      return 2;
    }
  }
  if (slots <= 0 || config.evaluations < config.population || work_us < 0) {
    std::fprintf(stderr, "async_de: --slots must be positive, --evaluations at least %d, --work-us not negative\n",
                 config.population);
    return 2;
  }

  std::shared_ptr<coop::VM> vm;
  try {
    vm = examples::make_vm(vm_name, slots);
  } catch (const coop::Error& e) {
    std::fprintf(stderr, "async_de: %s\n", e.what());
    return 2;
  }
  // Keep every slot busy, and give a VM that pipelines (ProcessVM with
  // short evaluations) the calls it can queue behind the running ones, so
  // that a worker starts its next evaluation without a round trip; without
  // a VM the evaluations run one after another in this thread, so one at a
  // time is all there is.
  const int slots_used = vm ? vm->slots() : 1;
  config.in_flight = vm ? slots_used + vm->queue_capacity() : 1;
  std::printf("async_de: Rosenbrock, dimension %d, population %d, %ld evaluations, seed %u, %d us of work each, "
              "vm %s with %d slot%s\n",
              config.dimension, config.population, config.evaluations, config.seed, work_us, vm_name.c_str(),
              slots_used, slots_used == 1 ? "" : "s");

  async_de::Report r = coop::run([&] { return async_de::run<&cost>(config, work_us); }, coop::Options{.vm = vm});

  double wall = r.wall.count();
  std::printf("best f = %.6g (best of the first %d evaluations: %.6g)\n", r.best, config.population,
              r.first_best);
  std::printf("%ld evaluations in %.3f s: %.0f evaluations/s, %.2f us each\n", r.evaluations, wall,
              static_cast<double>(r.evaluations) / wall, 1e6 * wall / static_cast<double>(r.evaluations));
  std::printf("parallel efficiency %.2f (evaluation time %.3f s / (%d slots x %.3f s wall))\n",
              r.busy.count() / (slots_used * wall), r.busy.count(), slots_used, wall);
  return 0;
}
