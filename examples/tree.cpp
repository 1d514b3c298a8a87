// tree.cpp: a tree of microthreads, and what the scheduler did with it.
//
// The main task starts three "searches". Each search spawns a few
// "evaluations" that sleep for a while (standing in for work that waits),
// joins them in the order they finish, and returns the best value. One
// evaluation throws, to show an exception travelling back to its parent.
// Finally a skynet tree (a million leaves) shows what a spawn + join costs.
#include <cos/cos.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <vector>

using namespace std::chrono_literals;

namespace {

// An "evaluation": sleeps `ms` milliseconds, then returns a score.
double evaluate(int search, int point, int ms) {
  std::printf("  task %lld: search %d evaluates point %d (%d ms)\n",
              static_cast<long long>(coop::current_tid()), search, point, ms);
  coop::sleep_for(std::chrono::milliseconds(ms));
  if (search == 2 && point == 1) throw std::domain_error("point 1 of search 2 is infeasible");
  return 100.0 - ms + search;
}

// A "search": evaluates four points concurrently and keeps the best.
double search(int id) {
  std::vector<coop::Tid> children;
  for (int point = 0; point < 4; ++point) {
    // Child first: the child runs until its first sleep, then we continue.
    children.push_back(coop::spawn(evaluate, id, point, 10 * (4 - point) + id).tid());
  }
  double best = -1;
  // Join in completion order: the oldest *finished* child comes first.
  while (auto done = coop::join()) {
    try {
      double v = done->get<double>();
      std::printf("  task %lld: joined task %lld -> %.1f\n", static_cast<long long>(coop::current_tid()),
                  static_cast<long long>(done->tid), v);
      if (v > best) best = v;
    } catch (const std::domain_error& e) {
      std::printf("  task %lld: task %lld failed: %s\n", static_cast<long long>(coop::current_tid()),
                  static_cast<long long>(done->tid), e.what());
    }
  }
  return best;
}

long skynet(long num, long size) {
  if (size == 1) return num;
  coop::Task<long> children[10];
  for (long i = 0; i < 10; ++i) children[i] = coop::spawn(skynet, num + i * (size / 10), size / 10);
  long sum = 0;
  for (auto& c : children) sum += c.join();
  return sum;
}

}  // namespace

int main() {
  coop::run([] {
    std::printf("main is task %lld\n", static_cast<long long>(coop::current_tid()));
    std::vector<coop::Task<double>> searches;
    for (int id = 1; id <= 3; ++id) searches.push_back(coop::spawn(search, id));
    std::printf("%zu tasks alive after the spawns\n", coop::Scheduler::current().task_count());
    for (auto& s : searches) {
      std::printf("search task %lld: best %.1f\n", static_cast<long long>(s.tid()), s.join());
    }

    auto t0 = coop::clock::now();
    long sum = coop::spawn(skynet, 0L, 1'000'000L).join();
    double ms = std::chrono::duration<double, std::milli>(coop::clock::now() - t0).count();
    std::printf("skynet: 1,111,111 tasks spawned and joined in %.0f ms, sum %ld\n", ms, sum);
  });
}
