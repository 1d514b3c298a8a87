// join_test.cpp: the join rules (DESIGN.md sections 2-4): only a parent joins
// its children, the oldest finished child first, errors for everything else.
#include <cos/cos.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"

using cos_test::Log;

namespace {

// spawn_yielding(n, log) spawns a child that yields n times, logs its tid
// and returns it; children spawned with different n finish in order of n.
coop::Task<coop::Tid> spawn_yielding(int n, Log& log) {
  return coop::spawn([n, &log] {
    for (int i = 0; i < n; ++i) coop::yield();
    log(std::to_string(coop::current_tid()));
    return coop::current_tid();
  });
}

// wait_finished(n) yields until the calling task has n finished, unjoined children.
void wait_finished(std::size_t n) {
  while (coop::Scheduler::current().finished_unjoined() < n) coop::yield();
}

coop::Tid joined_tid(const std::optional<coop::Joined>& j) { return j ? j->tid : coop::invalid_tid; }

}  // namespace

TEST_CASE("join: oldest finished child first") {
  Log finish_order;
  std::vector<coop::Tid> joined;
  coop::run([&] {
    spawn_yielding(3, finish_order);  // tid 2, finishes last
    spawn_yielding(1, finish_order);  // tid 3, finishes first
    spawn_yielding(2, finish_order);  // tid 4
    wait_finished(3);
    while (auto j = coop::join()) joined.push_back(j->tid);
  });
  CHECK(finish_order.str() == "3 4 2");
  CHECK(joined == std::vector<coop::Tid>{2, 3, 4});  // by tid, not completion order
}

TEST_CASE("join: oldest finished child first among many that finish in reverse order") {
  static constexpr int n = 300;
  std::vector<coop::Tid> joined;
  coop::run([&] {
    for (int i = 0; i < n; ++i) {
      coop::spawn([i] {
        for (int k = 0; k < n - i; ++k) coop::yield();
      });
    }
    wait_finished(n);
    while (auto j = coop::join()) joined.push_back(j->tid);
  });
  REQUIRE(joined.size() == static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) CHECK(joined[static_cast<std::size_t>(i)] == i + 2);
}

TEST_CASE("join: with no child finished, a blocking join returns the first to finish") {
  Log finish_order;
  coop::Tid first = coop::invalid_tid;
  coop::run([&] {
    spawn_yielding(3, finish_order);  // tid 2
    spawn_yielding(1, finish_order);  // tid 3
    spawn_yielding(2, finish_order);  // tid 4
    first = joined_tid(coop::join());
  });
  CHECK(first == 3);
}

TEST_CASE("join: returns nullopt when the caller has no children") {
  coop::run([] {
    CHECK_FALSE(coop::join().has_value());
    CHECK_FALSE(coop::join({}, coop::Wait::poll).has_value());
    bool child_saw_none = coop::spawn([] { return !coop::join().has_value(); }).join();
    CHECK(child_saw_none);
  });
}

TEST_CASE("join: returns nullopt once every child was joined") {
  coop::run([] {
    coop::spawn([] { return 1; });
    coop::spawn([] {
      coop::yield();
      return 2;
    });
    int sum = 0;
    int count = 0;
    while (auto j = coop::join()) {
      sum += j->get<int>();
      ++count;
    }
    CHECK(count == 2);
    CHECK(sum == 3);
    CHECK_FALSE(coop::join().has_value());
  });
}

TEST_CASE("join: Wait::poll returns nullopt without yielding when no child has finished") {
  Log log;
  coop::run([&] {
    coop::spawn([&] {
      log("c0");
      coop::yield();
      log("c1");
    });
    auto none = coop::join({}, coop::Wait::poll);
    log(none ? "joined" : "none");  // logged before the child's second step: no yield
    CHECK(joined_tid(coop::join()) == 2);
  });
  CHECK(log.str() == "c0 none c1");
}

TEST_CASE("join: Wait::poll returns a finished child") {
  coop::run([] {
    coop::spawn([] { return 4; });
    auto j = coop::join({}, coop::Wait::poll);
    REQUIRE(j);
    CHECK(j->tid == 2);
    CHECK(j->get<int>() == 4);
  });
}

TEST_CASE("join: among restricts the join to the listed tids") {
  std::vector<coop::Tid> joined;
  coop::run([&] {
    for (int i = 0; i < 3; ++i) coop::spawn([] {});  // tids 2, 3, 4, all finished
    joined.push_back(joined_tid(coop::join({4, 3})));
    joined.push_back(joined_tid(coop::join({4})));
    std::vector<coop::Tid> rest{2};
    joined.push_back(joined_tid(coop::join(rest)));
  });
  CHECK(joined == std::vector<coop::Tid>{3, 4, 2});
}

TEST_CASE("join: a blocking join with among waits for a listed child only") {
  Log finish_order;
  std::vector<coop::Tid> joined;
  coop::run([&] {
    spawn_yielding(0, finish_order);  // tid 2: finished at once, not listed
    spawn_yielding(3, finish_order);  // tid 3: listed
    spawn_yielding(1, finish_order);  // tid 4: finishes during the wait, not listed
    joined.push_back(joined_tid(coop::join({3})));
    while (auto j = coop::join()) joined.push_back(j->tid);
  });
  CHECK(finish_order.str() == "2 4 3");
  CHECK(joined == std::vector<coop::Tid>{3, 2, 4});
}

TEST_CASE("join: a child's children are not its parent's to collect") {
  std::vector<coop::Tid> joined;
  coop::run([&] {
    coop::spawn([] {           // tid 2
      coop::spawn([] {});      // tid 3, a grandchild of main, never joined
      coop::spawn([] { coop::yield(); });  // tid 4
    });
    coop::spawn([] { coop::yield(); });  // tid 5
    while (auto j = coop::join()) joined.push_back(j->tid);
  });
  CHECK(joined == std::vector<coop::Tid>{2, 5});
}

TEST_CASE("join: joining tid 0 (the scheduler) throws coop::Error") {
  coop::run([] {
    CHECK_THROWS_AS(coop::join({coop::scheduler_tid}), coop::Error);
    CHECK_THROWS_AS(coop::join({coop::scheduler_tid}, coop::Wait::poll), coop::Error);
  });
}

TEST_CASE("join: joining tid 1 (the main task) throws coop::Error") {
  coop::run([] {
    CHECK_THROWS_AS(coop::join({coop::main_tid}), coop::Error);
    bool child_threw = coop::spawn([] {
      try {
        coop::join({coop::main_tid});
      } catch (const coop::Error&) {
        return true;
      }
      return false;
    }).join();
    CHECK(child_threw);
  });
}

TEST_CASE("join: joining what is not yours (a sibling's child) throws coop::Error") {
  coop::Tid nephew = coop::invalid_tid;
  bool threw_block = false;
  bool threw_poll = false;
  bool parent_joined = false;
  coop::run([&] {
    auto a = coop::spawn([&] {
      auto g = coop::spawn([] {
        coop::yield();
        coop::yield();
      });
      nephew = g.tid();
      g.join();
      parent_joined = true;
    });
    auto b = coop::spawn([&] {
      try {
        coop::join({nephew});
      } catch (const coop::Error&) {
        threw_block = true;
      }
      try {
        coop::join({nephew}, coop::Wait::poll);
      } catch (const coop::Error&) {
        threw_poll = true;
      }
    });
    CHECK_THROWS_AS(coop::join({nephew}), coop::Error);  // main's grandchild is not its child either
    a.join();
    b.join();
  });
  CHECK(threw_block);
  CHECK(threw_poll);
  CHECK(parent_joined);  // the failed joins took nothing from the real parent
}

TEST_CASE("join: Task::join from a task other than the parent throws coop::Error") {
  bool threw = false;
  coop::run([&] {
    auto c = coop::spawn([] {
      coop::yield();
      return 1;
    });
    coop::spawn([&] {
      try {
        c.join();
      } catch (const coop::Error&) {
        threw = true;
      }
    }).join();
    CHECK(c.join() == 1);  // the parent still can
  });
  CHECK(threw);
}

TEST_CASE("join: a task joining itself throws coop::Error") {
  bool threw = false;
  coop::run([&] {
    coop::spawn([&] {
      try {
        coop::join({coop::current_tid()});
      } catch (const coop::Error&) {
        threw = true;
      }
    }).join();
  });
  CHECK(threw);
}

TEST_CASE("join: joining a tid that does not exist throws coop::Error") {
  coop::run([] {
    coop::spawn([] {});  // tid 2
    CHECK_THROWS_AS(coop::join({99}), coop::Error);
    CHECK_THROWS_AS(coop::join({-5}), coop::Error);
    CHECK_THROWS_AS(coop::join({3}, coop::Wait::poll), coop::Error);
    CHECK(joined_tid(coop::join()) == 2);  // the failed joins took nothing
  });
}

TEST_CASE("join: joining an already joined task throws coop::Error") {
  coop::run([] {
    SECTION("twice through coop::join") {
      coop::spawn([] {});
      CHECK(joined_tid(coop::join({2})) == 2);
      CHECK_THROWS_AS(coop::join({2}), coop::Error);
    }
    SECTION("through coop::join after Task::join") {
      auto t = coop::spawn([] { return 1; });
      CHECK(t.join() == 1);
      CHECK_THROWS_AS(coop::join({t.tid()}), coop::Error);
    }
  });
}

TEST_CASE("join: Task::join twice throws coop::Error") {
  coop::run([] {
    auto t = coop::spawn([] {
      coop::yield();
      return 1;
    });
    CHECK(t.join() == 1);
    CHECK_THROWS_AS(t.join(), coop::Error);
  });
}

TEST_CASE("join: Task::join of a child that coop::join collected throws coop::Error") {
  coop::run([] {
    auto t = coop::spawn([] { return 1; });
    auto j = coop::join();
    REQUIRE(j);
    CHECK(j->tid == t.tid());
    CHECK_THROWS_AS(t.join(), coop::Error);
  });
}

TEST_CASE("join: Joined::get with the wrong type throws coop::Error and keeps the value") {
  coop::run([] {
    coop::spawn([] { return 7; });
    auto j = coop::join();
    REQUIRE(j);
    CHECK_THROWS_AS(j->get<double>(), coop::Error);
    CHECK_THROWS_AS(j->get<std::string>(), coop::Error);
    CHECK(j->get<int>() == 7);
  });
}

TEST_CASE("join: a second Joined::get throws coop::Error") {
  coop::run([] {
    coop::spawn([] { return std::string("once"); });
    auto j = coop::join();
    REQUIRE(j);
    CHECK(j->get<std::string>() == "once");
    CHECK_THROWS_AS(j->get<std::string>(), coop::Error);
  });
}

TEST_CASE("join: Joined::get moves a move-only value out") {
  coop::run([] {
    coop::spawn([] { return std::make_unique<int>(11); });
    auto j = coop::join();
    REQUIRE(j);
    auto p = j->get<std::unique_ptr<int>>();
    REQUIRE(p);
    CHECK(*p == 11);
  });
}

TEST_CASE("join: Joined::get<void> collects a void child") {
  bool ran = false;
  coop::run([&] {
    coop::spawn([&] {
      coop::yield();
      ran = true;
    });
    auto j = coop::join();
    REQUIRE(j);
    j->get<void>();
    CHECK_THROWS_AS(j->get<void>(), coop::Error);
  });
  CHECK(ran);
}

TEST_CASE("join: a local child's Joined has its tid, no host and no timing") {
  coop::run([] {
    coop::spawn([] { return 1; });
    auto j = coop::join();
    REQUIRE(j);
    CHECK(j->tid == 2);
    CHECK_FALSE(j->host.has_value());
    CHECK(j->timing.started == coop::clock::time_point{});
    CHECK(j->timing.completed == coop::clock::time_point{});
  });
}

TEST_CASE("join: finished_unjoined counts the caller's finished, unjoined children") {
  coop::Scheduler sched;
  CHECK(sched.finished_unjoined() == 0);
  coop::spawn([] {});
  coop::spawn([] { coop::yield(); });
  auto inner = coop::spawn([&sched] {
    coop::spawn([] {});  // the child's own finished child
    return sched.finished_unjoined();
  });
  CHECK(sched.finished_unjoined() == 2);  // tids 2 and 4 (the inner one)
  CHECK(inner.join() == 1);
  CHECK(sched.finished_unjoined() == 1);
  wait_finished(2);
  CHECK(sched.finished_unjoined() == 2);
  while (coop::join()) {
  }
  CHECK(sched.finished_unjoined() == 0);
}

TEST_CASE("join: a child whose handle was dropped is collected by coop::join") {
  coop::run([] {
    {
      auto t = coop::spawn([] {
        coop::yield();
        return 12;
      });
    }
    auto j = coop::join();
    REQUIRE(j);
    CHECK(j->tid == 2);
    CHECK(j->get<int>() == 12);
  });
}

TEST_CASE("join: Task::done is true after a join") {
  coop::run([] {
    auto t = coop::spawn([] { coop::yield(); });
    CHECK_FALSE(t.done());
    t.join();
    CHECK(t.done());
  });
}
