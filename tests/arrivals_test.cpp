// arrivals_test.cpp: detail::Arrivals, the completion queue of dispatch():
// the order of its tids, children that ended before they were watched, the
// waiter it wakes, its growth, bad watches, and hooks that outlive it.
#include <cos/cos.hpp>
#include <cos/detail/arrivals.hpp>
#include <cos/wait.hpp>

#include <chrono>
#include <vector>

#include <catch2/catch.hpp>

using namespace std::chrono_literals;

namespace {

using coop::detail::Arrivals;
using coop::detail::TaskAccess;
using coop::detail::Waiter;

coop::Task<int> sleeper(int ms) {
  return coop::spawn([ms] {
    coop::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  });
}

// pop_all() waits on `w` until `n` tids have arrived and returns them in order.
std::vector<coop::Tid> pop_all(Arrivals& a, Waiter& w, std::size_t n) {
  std::vector<coop::Tid> got;
  while (got.size() < n) {
    if (a.empty()) w.wait();
    while (!a.empty()) got.push_back(a.pop());
  }
  return got;
}

}  // namespace

TEST_CASE("Arrivals: tids come out in the order the children end, not the order they were watched") {
  coop::run([] {
    Waiter w;
    Arrivals a(w);
    std::vector<coop::Task<int>> tasks;
    for (int ms : {60, 20, 40}) tasks.push_back(sleeper(ms));
    for (std::size_t i = 0; i < tasks.size(); ++i) a.watch(TaskAccess::ref(tasks[i]), i + 1);
    CHECK(a.empty());
    CHECK(pop_all(a, w, 3) == std::vector<coop::Tid>{tasks[1].tid(), tasks[2].tid(), tasks[0].tid()});
    CHECK(a.empty());
    for (auto& t : tasks) t.join();  // each is still joinable: Arrivals only watches
  });
}

TEST_CASE("Arrivals: a child that ended before the watch is queued at once") {
  coop::run([] {
    Waiter w;
    Arrivals a(w);
    auto t = coop::spawn([] { return 7; });  // runs first, and ends
    REQUIRE(t.done());
    a.watch(TaskAccess::ref(t), 1);
    REQUIRE_FALSE(a.empty());
    CHECK(a.pop() == t.tid());
    auto joined = coop::join({t.tid()}, coop::Wait::poll);
    REQUIRE(joined);
    CHECK(joined->get<int>() == 7);
  });
}

TEST_CASE("Arrivals: its waiter wakes when a watched child ends") {
  coop::run([] {
    Waiter w;
    Arrivals a(w);
    auto t = sleeper(10);
    a.watch(TaskAccess::ref(t), 1);
    w.wait();  // only the end of `t` can wake it
    REQUIRE_FALSE(a.empty());
    CHECK(a.pop() == t.tid());
    CHECK(t.join() == 10);
  });
}

TEST_CASE("Arrivals: the queue grows past its first size while wrapped, and keeps every tid in order") {
  coop::run([] {
    Waiter w;
    Arrivals a(w);
    std::vector<coop::Task<int>> tasks;
    std::vector<coop::Tid> ended_order;
    // Children that end at once, watched with some popped in between, so
    // that the ring's head has moved when it has to grow.
    std::size_t watched = 0;
    for (int round = 0; round < 5; ++round) {
      for (int i = 0; i < 10 + 20 * round; ++i) {
        tasks.push_back(coop::spawn([] { return 0; }));
        a.watch(TaskAccess::ref(tasks.back()), ++watched - ended_order.size());
      }
      for (int i = 0; i < 7 && !a.empty(); ++i) ended_order.push_back(a.pop());
    }
    while (!a.empty()) ended_order.push_back(a.pop());
    REQUIRE(ended_order.size() == tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) CHECK(ended_order[i] == tasks[i].tid());
  });
}

TEST_CASE("Arrivals: watching a task that is not the caller's child throws and queues nothing") {
  coop::run([] {
    Waiter w;
    Arrivals a(w);
    coop::Task<int> grandchild;
    auto child = coop::spawn([&] {
      grandchild = sleeper(20);
      coop::sleep_for(40ms);
      grandchild.join();
    });
    CHECK_THROWS_AS(a.watch(TaskAccess::ref(grandchild), 1), coop::Error);
    child.join();
    CHECK(a.empty());
    auto joined = sleeper(1);
    joined.join();
    CHECK_THROWS_AS(a.watch(TaskAccess::ref(joined), 1), coop::Error);  // already joined
    CHECK(a.empty());
  });
}

TEST_CASE("Arrivals: a child that ends after its Arrivals is gone queues nothing and ends normally") {
  std::vector<int> values;
  coop::run([&] {
    std::vector<coop::Task<int>> tasks;
    {
      Waiter w;
      Arrivals a(w);
      for (int ms : {10, 20}) {
        tasks.push_back(sleeper(ms));
        a.watch(TaskAccess::ref(tasks.back()), tasks.size());
      }
    }  // gone with both children running: their hooks hold the queue
    for (auto& t : tasks) values.push_back(t.join());
    auto t = sleeper(5);
    {
      Waiter w;
      Arrivals a(w);
      a.watch(TaskAccess::ref(t), 1);
    }
    // Never joined: the scheduler's end deletes its hook after the queue's owner.
  });
  CHECK(values == std::vector<int>{10, 20});
}
