// objects.cpp: a remote object's call round trip against a remote spawn of
// the same function, on ThreadVM(2) and ProcessVM(2), in one run: the
// object holds one slot, the spawns run on the other.
//
// cos side: obj.sync(&Echo::echo, i), a call on an object that lives on
// the slot (DESIGN.md section 6). Baseline: coop::spawn({.remote = true},
// echo, i).join(), the same work as a fresh remote task. Blocks of each
// alternate (and which goes first alternates too), so that the machine's noise hits both alike; the published
// values are the medians of the blocks. Target: ratio (spawn / call) >= 1,
// the object call must not cost more than the spawn.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <cos/cos.hpp>

namespace {

using namespace std::chrono;

int echo(int x) { return x; }
COS_REMOTE(echo);

struct Echo {
  int echo(int x) { return x + calls_ * 0; }
  int calls_ = 0;
};
COS_REMOTE_CLASS(Echo);
COS_REMOTE_METHOD(Echo, echo);

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class MakeVM> void call_vs_spawn(benchmark::State& state, MakeVM make_vm) {
  const int block = 2000;
  const int rounds = 7;
  std::vector<double> call_ns, spawn_ns;
  for (auto _ : state) {
    call_ns.clear();
    spawn_ns.clear();
    auto t_all = steady_clock::now();
    try {
      coop::run(
          [&] {
            // The object holds one slot for the whole run; the spawns use the other.
            auto obj = coop::make_remote<Echo>({.remote = true});
            auto spawns = [&] {
              auto t0 = steady_clock::now();
              for (int i = 0; i < block; ++i) benchmark::DoNotOptimize(coop::spawn({.remote = true}, echo, i).join());
              spawn_ns.push_back(static_cast<double>(duration_cast<nanoseconds>(steady_clock::now() - t0).count()) /
                                 block);
            };
            auto calls = [&] {
              auto t0 = steady_clock::now();
              for (int i = 0; i < block; ++i) benchmark::DoNotOptimize(obj.sync(&Echo::echo, i));
              call_ns.push_back(static_cast<double>(duration_cast<nanoseconds>(steady_clock::now() - t0).count()) /
                                block);
            };
            for (int i = 0; i < 200; ++i) obj.sync(&Echo::echo, i);  // warm-up
            for (int r = 0; r < rounds; ++r) {
              // Which goes first alternates, so that neither always follows the other.
              if (r % 2 == 0) {
                spawns();
                calls();
              } else {
                calls();
                spawns();
              }
            }
          },
          coop::Options{.vm = make_vm()});
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      return;
    }
    state.SetIterationTime(duration<double>(steady_clock::now() - t_all).count());
  }
  double c = median(call_ns), s = median(spawn_ns);
  state.counters["cos_ns"] = c;
  state.counters["baseline_ns"] = s;
  state.counters["ratio_ns"] = s / c;
  state.counters["min_ratio_ns"] = 1.0;
}

void thread_vm(benchmark::State& state) {
  call_vs_spawn(state, [] { return std::make_shared<coop::ThreadVM>(2); });
}
void process_vm(benchmark::State& state) {
  call_vs_spawn(state, [] { return std::make_shared<coop::ProcessVM>(2); });
}
BENCHMARK(thread_vm)->Name("remote object call vs remote spawn round trip, ThreadVM(2)")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(process_vm)->Name("remote object call vs remote spawn round trip, ProcessVM(2)")
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  coop::init(argc, argv);  // a worker serves tasks here and never returns
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
