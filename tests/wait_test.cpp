// wait_test.cpp: waiting for children without joining them (DESIGN.md
// section 6): Task::ready, wait_for, wait_until, wait_all, wait_all_for,
// wait_any and as_completed, on local tasks and on remote ones.
#include <cos/cos.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

int nap(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
COS_REMOTE(nap);

// A local child that sleeps (yielding) for `ms` and returns it.
coop::Task<int> sleeper(int ms) {
  return coop::spawn([ms] {
    coop::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  });
}

}  // namespace

TEST_CASE("wait: wait_for returns false while the child runs, and the child keeps running to its join") {
  coop::run([] {
    auto t = sleeper(100);
    CHECK_FALSE(t.ready());
    auto t0 = coop::clock::now();
    CHECK_FALSE(t.wait_for(20ms));
    CHECK(coop::clock::now() - t0 >= 20ms);
    CHECK_FALSE(t.ready());
    CHECK(t.wait_for(5s));
    CHECK(t.ready());
    CHECK(coop::clock::now() - t0 < 2s);
    CHECK(t.join() == 100);
  });
}

TEST_CASE("wait: wait_until a time already past only looks, and an ended child is true at once") {
  coop::run([] {
    auto t = sleeper(30);
    CHECK_FALSE(t.wait_until(coop::clock::now() - 1s));
    t.join();
    CHECK(t.wait_until(coop::clock::now()));  // joined counts as ended
    auto u = coop::spawn([] { return 1; });
    CHECK(u.ready());
    CHECK(u.wait_for(0ms));
    CHECK(u.join() == 1);
  });
}

TEST_CASE("wait: a wait that ended before its deadline leaves no timer to cut a later sleep short") {
  coop::run([] {
    auto t = sleeper(20);
    CHECK(t.wait_for(150ms));  // ends at about 20 ms; its timer is still due at 150 ms
    auto t0 = coop::clock::now();
    coop::sleep_for(300ms);    // the stale timer fires meanwhile and must wake nothing
    CHECK(coop::clock::now() - t0 >= 300ms);
    t.join();
  });
}

TEST_CASE("wait: other tasks run while a task waits") {
  coop::run([] {
    int ticks = 0;
    auto ticker = coop::spawn([&] {
      for (int i = 0; i < 5; ++i) {
        ++ticks;
        coop::sleep_for(5ms);
      }
    });
    auto t = sleeper(60);
    CHECK(t.wait_for(5s));
    CHECK(ticks == 5);
    ticker.join();
    t.join();
  });
}

TEST_CASE("wait: wait_all over tasks of different result types and a range") {
  coop::run([] {
    auto a = sleeper(30);
    auto b = coop::spawn([] {
      coop::sleep_for(10ms);
      return std::string("b");
    });
    std::vector<coop::Task<int>> more;
    for (int ms : {20, 5, 40}) more.push_back(sleeper(ms));
    coop::wait_all(a, b, more);
    CHECK(a.ready());
    CHECK(b.ready());
    for (auto& t : more) CHECK(t.ready());
    CHECK(a.join() + more[2].join() == 70);
    CHECK(b.join() == "b");
    more[0].join();
    more[1].join();
  });
}

TEST_CASE("wait: wait_all_for is false when the time passes first, true once all ended") {
  coop::run([] {
    std::vector<coop::Task<int>> ts;
    ts.push_back(sleeper(10));
    ts.push_back(sleeper(200));
    CHECK_FALSE(coop::wait_all_for(ts, 30ms));
    CHECK(ts[0].ready());
    CHECK_FALSE(ts[1].ready());
    CHECK(coop::wait_all_for(ts, 5s));
    for (auto& t : ts) t.join();
  });
}

TEST_CASE("wait: wait_any gives the index of the first to end, the oldest first among ended ones") {
  coop::run([] {
    std::vector<coop::Task<int>> ts;
    for (int ms : {80, 10, 40}) ts.push_back(sleeper(ms));
    CHECK(coop::wait_any(ts) == std::size_t{1});
    CHECK_FALSE(coop::wait_any(ts, 0ms) == std::size_t{0});  // index 1 has ended: it is what comes back
    coop::sleep_for(100ms);
    CHECK(coop::wait_any(ts) == std::size_t{0});  // all ended: the oldest
    std::vector<coop::Task<int>> none;
    CHECK_FALSE(coop::wait_any(none).has_value());
    std::vector<coop::Task<int>> slow;
    slow.push_back(sleeper(300));
    CHECK_FALSE(coop::wait_any(slow, 20ms).has_value());
    for (auto& t : ts) t.join();
    slow[0].join();
  });
}

TEST_CASE("wait: as_completed yields each task once, in the order they end") {
  coop::run([] {
    std::vector<coop::Task<int>> ts;
    for (int ms : {60, 20, 40, 0}) ts.push_back(sleeper(ms));
    std::vector<int> order;
    for (coop::Task<int>& t : coop::as_completed(ts)) order.push_back(t.join());
    CHECK(order == std::vector<int>{0, 20, 40, 60});
  });
}

TEST_CASE("wait: remote tasks on a ThreadVM are waited for like local ones, total time the longest") {
  coop::run([] {
    std::vector<coop::Task<int>> ts;
    for (int ms : {150, 50, 100}) ts.push_back(coop::spawn(coop::Spawn{.remote = true}, nap, ms));
    auto t0 = coop::clock::now();
    CHECK_FALSE(ts[0].wait_for(20ms));
    std::vector<int> order;
    for (auto& t : coop::as_completed(ts)) order.push_back(t.join());
    CHECK(order == std::vector<int>{50, 100, 150});
    CHECK(coop::clock::now() - t0 < 290ms);  // the longest (150 ms), not the sum (300 ms)
  }, coop::Options{.vm = std::make_shared<coop::ThreadVM>(3)});
}

TEST_CASE("wait: waiting for a task that is not yours, or an invalid handle, is a coop::Error") {
  coop::run([] {
    auto mine = sleeper(20);
    auto other = coop::spawn([&] { CHECK_THROWS_WITH(mine.wait_for(1ms), Contains("is not a child of task 3")); });
    other.join();
    coop::Task<int> invalid;
    CHECK_THROWS_AS(invalid.wait_for(1ms), coop::Error);
    mine.join();
  });
}

TEST_CASE("wait: a wait with no limit on a child that can never end is reported as a deadlock, not a hang") {
  coop::run([] {
    coop::detail::Waiter never;
    auto stuck = coop::spawn([&] { never.wait(); });
    std::vector<coop::Task<void>> ts;
    ts.push_back(std::move(stuck));
    CHECK_THROWS_WITH(coop::wait_all(ts), Contains("task 1 waits for something that can never happen"));
    // The child was stuck too: its wait threw in it, and its join says so.
    CHECK_THROWS_WITH(ts[0].join(), Contains("task 2 waits for something that can never happen"));
  });
}

// ---- on_done -------------------------------------------------------------------

TEST_CASE("on_done: callbacks run in the order added as soon as the child ends, and join still returns the value") {
  coop::run([] {
    std::vector<std::string> seen;
    auto t = sleeper(30);
    t.on_done([&](const coop::Outcome<int>& o) { seen.push_back("first " + std::to_string(o.get())); });
    t.on_done([&](const coop::Outcome<int>& o) { seen.push_back("second " + std::to_string(o.get())); });
    CHECK(seen.empty());  // the child has not ended yet
    CHECK(t.wait_for(5s));
    coop::yield();        // the callbacks are ready tasks now
    CHECK(seen == std::vector<std::string>{"first 30", "second 30"});
    CHECK(t.join() == 30);
  });
}

TEST_CASE("on_done: on a child that has already ended the callback runs at once") {
  coop::run([] {
    auto t = coop::spawn([] { return 7; });
    int got = 0;
    t.on_done([&](const coop::Outcome<int>& o) { got = o.get(); });
    CHECK(got == 7);
    CHECK(t.join() == 7);
  });
}

TEST_CASE("on_done: a failed child's callback sees the exception, and join rethrows it") {
  coop::run([] {
    auto t = coop::spawn([]() -> int {
      coop::yield();
      throw std::runtime_error("no convergence");
    });
    std::string what;
    t.on_done([&](const coop::Outcome<int>& o) {
      try {
        o.get();
      } catch (const std::runtime_error& e) {
        what = e.what();
      }
    });
    CHECK_THROWS_WITH(t.join(), "no convergence");
    coop::yield();
    CHECK(what == "no convergence");
  });
}

TEST_CASE("on_done: callbacks are not children to join, and one that throws is reported at shutdown") {
  cos_test::StderrCapture err;
  coop::run([] {
    auto t = sleeper(10);
    t.on_done([](const coop::Outcome<int>&) { throw std::logic_error("callback broke"); });
    CHECK(t.join() == 10);
    CHECK_FALSE(coop::join().has_value());  // the callback is nobody's child
  });
  err.restore();
  CHECK_THAT(err.text(), Contains("callback broke"));
}

TEST_CASE("on_done: a remote child's callback runs when its result arrives") {
  coop::run([] {
    auto t = coop::spawn(coop::Spawn{.remote = true}, nap, 20);
    bool called = false;
    t.on_done([&](const coop::Outcome<int>& o) { called = o.get() == 20; });
    CHECK(t.wait_for(5s));
    coop::yield();
    CHECK(called);
    CHECK(t.join() == 20);
    CHECK_THROWS_AS(t.on_done([](const coop::Outcome<int>&) {}), coop::Error);  // joined
  }, coop::Options{.vm = std::make_shared<coop::ThreadVM>(1)});
}
