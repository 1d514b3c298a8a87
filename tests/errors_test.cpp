// errors_test.cpp: exceptions travelling from tasks to their joins and to
// stderr at shutdown, and the errors that bad input gets (DESIGN.md 2-4).
#include <cos/cos.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

struct SimulatorFailed : std::runtime_error {
  explicit SimulatorFailed(int c) : std::runtime_error("simulator failed with code " + std::to_string(c)), code(c) {}
  int code;
};

// NotAnException is thrown, but derives from nothing.
struct NotAnException {
  int code;
  std::string why;
};

int twice(int x) { return 2 * x; }

// ThrowsOnCopy fails to be copied into a child.
struct ThrowsOnCopy {
  ThrowsOnCopy() = default;
  ThrowsOnCopy(const ThrowsOnCopy&) { throw std::runtime_error("copy failed"); }
  ThrowsOnCopy(ThrowsOnCopy&&) noexcept = default;
};

// BigThrowsOnCopy is too big for the child's stack, so its closure goes to
// the heap, and it fails to be copied there.
struct BigThrowsOnCopy {
  std::array<char, 4096> bytes{};
  BigThrowsOnCopy() = default;
  BigThrowsOnCopy(const BigThrowsOnCopy&) { throw std::runtime_error("copy failed"); }
  BigThrowsOnCopy(BigThrowsOnCopy&&) noexcept = default;
};

}  // namespace

// ---- exceptions through join -------------------------------------------------

TEST_CASE("exceptions: a std::runtime_error subclass comes back from Task::join with its type") {
  coop::run([] {
    auto t = coop::spawn([]() -> int { throw SimulatorFailed(3); });
    try {
      t.join();
      FAIL("join did not throw");
    } catch (const SimulatorFailed& e) {
      CHECK(e.code == 3);
      CHECK(std::string(e.what()) == "simulator failed with code 3");
    }
  });
}

TEST_CASE("exceptions: std::out_of_range comes back from Task::join with its type") {
  coop::run([] {
    auto t = coop::spawn([] {
      std::string s = "abc";
      return s.at(10);
    });
    CHECK_THROWS_AS(t.join(), std::out_of_range);
  });
}

TEST_CASE("exceptions: a user type not derived from std::exception comes back from Task::join") {
  coop::run([] {
    auto t = coop::spawn([] { throw NotAnException{7, "bad point"}; });
    try {
      t.join();
      FAIL("join did not throw");
    } catch (const NotAnException& e) {
      CHECK(e.code == 7);
      CHECK(e.why == "bad point");
    }
  });
}

TEST_CASE("exceptions: an int comes back from Task::join") {
  coop::run([] {
    auto t = coop::spawn([]() -> double { throw 42; });
    try {
      t.join();
      FAIL("join did not throw");
    } catch (int e) {
      CHECK(e == 42);
    }
  });
}

TEST_CASE("exceptions: Joined::get rethrows the child's exception with its type") {
  coop::run([] {
    coop::spawn([]() -> int { throw SimulatorFailed(5); });
    coop::spawn([]() -> int { throw NotAnException{1, "x"}; });
    auto first = coop::join();
    REQUIRE(first);
    CHECK_THROWS_AS(first->get<int>(), SimulatorFailed);
    auto second = coop::join();
    REQUIRE(second);
    CHECK_THROWS_AS(second->get<int>(), NotAnException);
  });
}

TEST_CASE("exceptions: Joined::get rethrows whatever type it is asked for") {
  coop::run([] {
    coop::spawn([]() -> int { throw std::out_of_range("range"); });
    auto j = coop::join();
    REQUIRE(j);
    CHECK_THROWS_AS(j->get<std::string>(), std::out_of_range);  // the error wins over the type check
    CHECK_THROWS_AS(j->get<int>(), coop::Error);                 // then it is gone
  });
}

TEST_CASE("exceptions: an exception thrown after the child yielded and slept comes back") {
  coop::run([] {
    auto t = coop::spawn([] {
      coop::yield();
      coop::sleep_for(1ms);
      throw std::logic_error("late");
    });
    CHECK_THROWS_AS(t.join(), std::logic_error);
  });
}

TEST_CASE("exceptions: a failing child does not disturb its siblings or its parent") {
  int sum = 0;
  coop::run([&] {
    auto a = coop::spawn([] {
      coop::yield();
      return 1;
    });
    auto bad = coop::spawn([]() -> int {
      coop::yield();
      throw std::runtime_error("boom");
    });
    auto c = coop::spawn([] {
      coop::yield();
      coop::yield();
      return 2;
    });
    sum += a.join();
    CHECK_THROWS_AS(bad.join(), std::runtime_error);
    sum += c.join();
  });
  CHECK(sum == 3);
}

TEST_CASE("exceptions: an exception a grandchild threw reaches the grandparent through its parent") {
  coop::run([] {
    auto t = coop::spawn([] { return coop::spawn([]() -> int { throw SimulatorFailed(9); }).join(); });
    CHECK_THROWS_AS(t.join(), SimulatorFailed);
  });
}

TEST_CASE("exceptions: an exception nobody joined is reported on stderr at shutdown") {
  cos_test::StderrCapture err;
  bool returned = false;
  coop::run([] {
    coop::spawn([] {
      coop::yield();
      throw SimulatorFailed(17);
    });
  });
  returned = true;  // the program did not terminate
  err.restore();
  std::string text = err.text();
  CHECK(returned);
  CHECK_THAT(text, Contains("task 2"));
  CHECK_THAT(text, Contains("simulator failed with code 17"));
}

TEST_CASE("exceptions: a non-std exception nobody joined is reported on stderr at shutdown") {
  cos_test::StderrCapture err;
  coop::run([] { coop::spawn([] { throw 5; }); });
  err.restore();
  CHECK_THAT(err.text(), Contains("task 2"));
}

TEST_CASE("exceptions: an orphan's exception is reported on stderr at shutdown") {
  cos_test::StderrCapture err;
  coop::run([] {
    auto parent = coop::spawn([] {
      coop::spawn([] {  // tid 3; its parent ends without joining it
        coop::sleep_for(2ms);
        throw std::runtime_error("orphan failed");
      });
    });
    parent.join();
  });
  err.restore();
  std::string text = err.text();
  CHECK_THAT(text, Contains("task 3"));
  CHECK_THAT(text, Contains("orphan failed"));
}

TEST_CASE("exceptions: an exception that a join collected is not reported again") {
  cos_test::StderrCapture err;
  coop::run([] {
    auto t = coop::spawn([] { throw std::runtime_error("seen"); });
    try {
      t.join();
    } catch (const std::runtime_error&) {
    }
    coop::spawn([] { throw std::runtime_error("seen too"); });
    auto j = coop::join();
    try {
      j->get<void>();
    } catch (const std::runtime_error&) {
    }
  });
  err.restore();
  CHECK(err.text().empty());
}

TEST_CASE("exceptions: an exception thrown by main is rethrown by run after the other tasks drain") {
  bool child_finished = false;
  auto main_fn = [&]() -> int {
    coop::spawn([&] {
      coop::sleep_for(5ms);
      child_finished = true;
    });
    throw SimulatorFailed(1);
  };
  CHECK_THROWS_AS(coop::run(main_fn), SimulatorFailed);
  CHECK(child_finished);
  // and the thread is free for a new scheduler
  CHECK(coop::run([] { return coop::spawn([] { return 3; }).join(); }) == 3);
}

TEST_CASE("exceptions: a task that yields inside a catch block keeps its own exception") {
  // Library bug: the C++ runtime's per-thread list of caught exceptions is not
  // switched with the tasks, so `throw;` in one task's handler rethrows
  // another task's exception, and leaving a handler can free the exception
  // another task is still handling. Run in a child process: it is undefined
  // behaviour until fixed.
  auto r = cos_test::in_child([] {
    std::string a_saw, b_saw;
    coop::run([&] {
      auto a = coop::spawn([&] {
        try {
          throw std::runtime_error("a");
        } catch (...) {
          coop::yield();
          coop::yield();
          try {
            throw;
          } catch (const std::exception& e) {
            a_saw = e.what();
          }
        }
      });
      auto b = coop::spawn([&] {
        try {
          throw std::runtime_error("b");
        } catch (...) {
          for (int i = 0; i < 4; ++i) coop::yield();
          try {
            throw;
          } catch (const std::exception& e) {
            b_saw = e.what();
          }
        }
      });
      a.join();
      b.join();
    });
    std::fprintf(stderr, "task a rethrew \"%s\", task b rethrew \"%s\"\n", a_saw.c_str(), b_saw.c_str());
    return a_saw == "a" && b_saw == "b" ? 0 : 1;
  });
  CHECK(r.exited);
  CHECK(r.code == 0);
}

// ---- bad input ---------------------------------------------------------------

TEST_CASE("bad input: a stack_size of 0 throws coop::Error") {
  CHECK_THROWS_AS(coop::Scheduler(coop::Options{.stack_size = 0}), coop::Error);
  CHECK_THROWS_AS(coop::run([] {}, coop::Options{.stack_size = 0}), coop::Error);
}

TEST_CASE("bad input: a stack_size under 16 KiB throws coop::Error") {
  std::size_t size = GENERATE(std::size_t{1}, std::size_t{4096}, std::size_t{16 * 1024 - 1});
  CAPTURE(size);
  CHECK_THROWS_AS(coop::Scheduler(coop::Options{.stack_size = size}), coop::Error);
}

TEST_CASE("bad input: a stack_size of 16 KiB is accepted") {
  int v = coop::run([] { return coop::spawn([] { return 1; }).join(); }, coop::Options{.stack_size = 16 * 1024});
  CHECK(v == 1);
}

TEST_CASE("bad input: a rejected Options leaves the thread free for a scheduler") {
  CHECK_THROWS_AS(coop::Scheduler(coop::Options{.stack_size = 0}), coop::Error);
  CHECK(coop::Scheduler::current_or_null() == nullptr);
  CHECK_THROWS_AS(coop::Scheduler::current(), coop::Error);
  CHECK(coop::run([] { return coop::spawn([] { return 2; }).join(); }) == 2);
}

TEST_CASE("bad input: scheduler calls outside a scheduler throw coop::Error") {
  CHECK_THROWS_AS(coop::spawn([] {}), coop::Error);
  CHECK_THROWS_AS(coop::spawn([](int x) { return x; }, 1), coop::Error);
  CHECK_THROWS_AS(coop::yield(), coop::Error);
  CHECK_THROWS_AS(coop::sleep_for(1ms), coop::Error);
  CHECK_THROWS_AS(coop::join(), coop::Error);
  CHECK_THROWS_AS(coop::join({2}, coop::Wait::poll), coop::Error);
  CHECK_THROWS_AS(coop::current_tid(), coop::Error);
  CHECK_THROWS_AS(coop::Scheduler::current(), coop::Error);
  CHECK(coop::Scheduler::current_or_null() == nullptr);
}

TEST_CASE("bad input: a second scheduler made inside a task throws coop::Error") {
  bool threw = false;
  coop::run([&] {
    coop::spawn([&] {
      try {
        coop::Scheduler inner;
      } catch (const coop::Error&) {
        threw = true;
      }
    }).join();
  });
  CHECK(threw);
}

TEST_CASE("bad input: joining a default-constructed Task throws coop::Error") {
  coop::run([] {
    coop::Task<int> none;
    CHECK_THROWS_AS(none.join(), coop::Error);
  });
}

TEST_CASE("bad input: a Task of an ended scheduler cannot be joined in a new one") {
  coop::Task<int> stale;
  coop::run([&] {
    stale = coop::spawn([] { return 1; });
  });
  CHECK(stale.done());
  coop::run([&] {
    coop::spawn([] { return 2; });  // the same tid in the new scheduler
    CHECK(stale.done());
    CHECK_THROWS_AS(stale.join(), coop::Error);
    CHECK(coop::join()->get<int>() == 2);
  });
}

TEST_CASE("bad input: drain from a task other than main throws coop::Error") {
  bool threw = false;
  coop::run([&] {
    coop::spawn([&] {
      try {
        coop::Scheduler::current().drain();
      } catch (const coop::Error&) {
        threw = true;
      }
    }).join();
  });
  CHECK(threw);
}

TEST_CASE("bad input: Spawn{.remote = true} with no VM runs the task locally") {
  coop::run([] {
    auto t = coop::spawn(coop::Spawn{.remote = true}, twice, 21);
    CHECK(t.valid());
    CHECK(t.tid() == 2);
    CHECK_FALSE(t.remote());
    CHECK_FALSE(t.host().has_value());
    CHECK_FALSE(t.task_id().has_value());
    CHECK(coop::Scheduler::current().remote_task_count() == 0);
    CHECK(t.join() == 42);
  });
}

TEST_CASE("bad input: a spawn whose arguments cannot be copied throws and leaves no task") {
  coop::run([] {
    ThrowsOnCopy arg;
    CHECK_THROWS_AS(coop::spawn([](const ThrowsOnCopy&) { return 1; }, arg), std::runtime_error);
    CHECK(coop::Scheduler::current().task_count() == 1);
    CHECK_FALSE(coop::join().has_value());
    CHECK(coop::spawn([] { return 2; }).join() == 2);  // the scheduler carries on
  });
}

TEST_CASE("bad input: a failed spawn does not use up a tid") {
  // Library bug (minor): the tid is taken before the arguments are copied and
  // not given back, so the next spawn gets 3, and joining tid 2 then says
  // "task 2 was already joined" about a task that never existed.
  coop::run([] {
    ThrowsOnCopy arg;
    CHECK_THROWS_AS(coop::spawn([](const ThrowsOnCopy&) {}, arg), std::runtime_error);
    CHECK(coop::spawn([] {}).tid() == 2);
  });
}

TEST_CASE("bad input: a failed spawn of a large closure does not break the next spawn") {
  // Library bug: the failed spawn leaves its record marked as holding a heap
  // closure; the next spawn reuses the record, and its end frees a pointer
  // into its stack. Run in a child process: that crashes.
  auto r = cos_test::in_child([] {
    return coop::run([] {
      BigThrowsOnCopy big;
      try {
        coop::spawn([](const BigThrowsOnCopy&) { return 1; }, big);
      } catch (const std::runtime_error&) {
      }
      return coop::spawn([] { return 2; }).join() == 2 ? 0 : 1;
    });
  });
  CHECK(r.exited);
  CHECK(r.code == 0);
}

// ---- spawn options with any callable, and a scheduler that cannot finish -----

TEST_CASE("spawn options: Spawn{.remote = false} spawns a lambda with captures locally") {
  coop::run([] {
    int base = 40;
    auto t = coop::spawn(coop::Spawn{.remote = false}, [base](int x) { return base + x; }, 2);
    CHECK_FALSE(t.remote());
    CHECK(t.join() == 42);
  });
}

TEST_CASE("spawn options: Spawn{.remote = true} of a lambda is a coop::Error naming the fix, with or without a VM") {
  auto spawn_lambda = [] {
    int base = 1;
    CHECK_THROWS_WITH(coop::spawn(coop::Spawn{.remote = true}, [base] { return base; }),
                      Contains("cannot run remotely") && Contains("COS_REMOTE"));
    CHECK(coop::Scheduler::current().task_count() == 1);  // no task was made
  };
  coop::run(spawn_lambda);
  coop::run(spawn_lambda, coop::Options{.vm = std::make_shared<coop::ThreadVM>(1)});
}

namespace {

// FailingVM has no slots and fails to finalize.
class FailingVM : public coop::VM {
 public:
  int slots() const override { return 1; }
  int free_slots() const override { return 1; }
  std::vector<coop::HostId> hosts() const override { return {coop::HostId("h")}; }
  std::vector<coop::HostId> hosts_with_free_slots() const override { return hosts(); }
  std::optional<coop::TaskId> start(const coop::Call&, const std::optional<coop::HostId>&) override {
    return std::nullopt;
  }
  std::optional<coop::Message> receive(std::chrono::nanoseconds) override { return std::nullopt; }
  coop::HostId host_of(const coop::TaskId&) const override { return coop::HostId("h"); }
  void cancel(const coop::TaskId&) override {}
  void send(const coop::TaskId&, std::string) override {}
  void finalize() override { throw coop::Error("the cluster is gone"); }
};

}  // namespace

TEST_CASE("shutdown: a VM that fails to finalize is reported on stderr; the scheduler still ends") {
  cos_test::StderrCapture err;
  {
    coop::Scheduler sched(coop::Options{.vm = std::make_shared<FailingVM>()});
    CHECK(coop::spawn([] { return 1; }).join() == 1);
  }
  err.restore();
  CHECK_THAT(err.text(), Contains("could not be finalized") && Contains("the cluster is gone"));
  CHECK(coop::Scheduler::current_or_null() == nullptr);
  coop::run([] {});  // the thread is free for a new scheduler
}
