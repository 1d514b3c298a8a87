// backends_time_test.cpp: time on every VM backend (DESIGN.md sections 3-5):
// overlapping tasks, timeouts, cancel and the timing of remote tasks.
//
// The one difference between the backends here: a ProcessVM kills the worker
// of a task that timed out or was cancelled and starts a new one, so the slot
// comes back soon; a ThreadVM cannot stop a thread, so its slot stays busy
// until the function returns. Either way the task ends for the scheduler at
// once. Cases that see the difference branch on the backend and say so.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "backends_support.hpp"

using namespace backends;

TEST_CASE("slots: four requests of 100-400 ms on four slots take about the longest, not the sum") {
  // The MSL-Network example: the requests overlap on four slots. The VM is
  // made before the clock starts, so worker start-up is not counted.
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, 4);
  double elapsed = 0;
  coop::run(
      [&] {
        auto t0 = coop::clock::now();
        std::vector<coop::Task<int>> ts;
        for (int ms : {100, 200, 300, 400}) ts.push_back(coop::spawn(remote, nap, ms, ms));
        int i = 1;
        for (auto& t : ts) CHECK(t.join() == 100 * i++);
        elapsed = ms_since(t0);
      },
      coop::Options{.vm = vm});
  CHECK(elapsed >= 395);
  CHECK(elapsed < 700);  // the sum would be 1000 ms
}

// ---- timeouts ------------------------------------------------------------------

TEST_CASE("timeouts: a task past its timeout gives coop::Timeout well before it would end") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, 1);
  double elapsed = 0;
  coop::run(
      [&] {
        auto t0 = coop::clock::now();
        auto t = coop::spawn(coop::Spawn{.remote = true, .timeout = 50ms}, nap, 500, 1);
        CHECK_THROWS_AS(t.join(), coop::Timeout);
        elapsed = ms_since(t0);
        CHECK(t.done());
      },
      coop::Options{.vm = vm});
  CHECK(elapsed >= 45);
  CHECK(elapsed < 350);
}

TEST_CASE("timeouts: a task that ends within its timeout returns its value") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run([] { CHECK(coop::spawn(coop::Spawn{.remote = true, .timeout = 2s}, nap, 5, 8).join() == 8); },
            coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("timeouts: the timeout counts from the start, not while the spawn is queued") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto busy = coop::spawn(remote, nap, 200, 0);
        auto q = coop::spawn(coop::Spawn{.remote = true, .block = false, .timeout = 100ms}, nap, 5, 3);
        CHECK(q.join() == 3);
        busy.join();
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("timeouts: a timed-out task does not disturb the others") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto slow = coop::spawn(coop::Spawn{.remote = true, .timeout = 30ms}, nap, 300, 1);
        auto fine = coop::spawn(remote, nap, 60, 2);
        CHECK_THROWS_AS(slow.join(), coop::Timeout);
        CHECK(fine.join() == 2);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("timeouts: a timeout comes back well under a second past the limit, and its slot comes back") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(1, 2, 4);
  INFO("backend " << backend << ", " << n << " slots");
  // A ProcessVM kills the hung worker, so its task may hang for good; a
  // ThreadVM's slot comes back only when the function returns, so there it
  // hangs for a while, not for ever.
  const int hang_ms = cos_test::isolated(backend) ? 10000 : 600;
  coop::run(
      [&] {
        auto& s = coop::Scheduler::current();
        std::vector<coop::Task<int>> others;
        for (int i = 1; i < n; ++i) others.push_back(coop::spawn(remote, nap, 300, i * i));
        auto t0 = coop::clock::now();
        auto t = coop::spawn(coop::Spawn{.remote = true, .timeout = 100ms}, nap, hang_ms, 3);
        CHECK_THROWS_AS(t.join(), coop::Timeout);
        auto late = coop::clock::now() - t0 - 100ms;
        CHECK(late < 500ms);
        for (std::size_t i = 0; i < others.size(); ++i) {
          CHECK(others[i].join() == static_cast<int>((i + 1) * (i + 1)));
        }
        if (!cos_test::isolated(backend)) CHECK(s.free_slots() == n - 1);  // the thread (or rank) still naps
        auto deadline = coop::clock::now() + 2s;
        while (s.free_slots() < n && coop::clock::now() < deadline) coop::sleep_for(5ms);
        CHECK(s.free_slots() == n);
        CHECK(coop::spawn(remote, square, 4).join() == 16);
      },
      coop::Options{.vm = cos_test::make_vm(backend, n)});
  CHECK(cos_test::no_children());
}

// ---- cancel --------------------------------------------------------------------

TEST_CASE("cancel: a queued task is cancelled and never runs; its join throws coop::Cancelled") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  RunFile file;
  coop::run(
      [&] {
        auto& s = coop::Scheduler::current();
        auto busy = coop::spawn(remote, nap, 40, 0);
        auto q = coop::spawn(coop::Spawn{.remote = true, .block = false}, record_run, file.path(), 4711);
        CHECK(s.remote_task_count() == 2);
        CHECK(q.cancel());
        CHECK(q.done());
        CHECK(s.remote_task_count() == 1);
        CHECK_THROWS_AS(q.join(), coop::Cancelled);
        CHECK(busy.join() == 0);
        CHECK(coop::spawn(remote, square, 3).join() == 9);  // the slot serves others
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
  CHECK_FALSE(file.has(4711));
}

TEST_CASE("cancel: a running task is cancelled; its join throws coop::Cancelled at once") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  double elapsed = 0;
  coop::run(
      [&] {
        auto t = coop::spawn(remote, nap, 300, 1);
        auto t0 = coop::clock::now();
        CHECK(t.cancel());
        CHECK_THROWS_AS(t.join(), coop::Cancelled);
        elapsed = ms_since(t0);
        CHECK(coop::Scheduler::current().remote_task_count() == 0);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
  CHECK(elapsed < 150);
}

TEST_CASE("cancel: a cancelled running task's slot comes back") {
  // A ProcessVM kills the worker and starts another: the slot is back long
  // before the task would have ended. A ThreadVM's thread runs the function
  // to its end, and only then is the slot back.
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [&] {
        auto& s = coop::Scheduler::current();
        auto t = coop::spawn(remote, nap, 400, 1);
        auto t0 = coop::clock::now();
        CHECK(t.cancel());
        CHECK_THROWS_AS(t.join(), coop::Cancelled);
        auto deadline = coop::clock::now() + 2s;
        while (s.free_slots() < 1 && coop::clock::now() < deadline) coop::sleep_for(1ms);
        CHECK(s.free_slots() == 1);
        if (cos_test::isolated(backend)) {
          CHECK(ms_since(t0) < 300);
        } else {
          CHECK(ms_since(t0) >= 350);
        }
        CHECK(coop::spawn(remote, square, 5).join() == 25);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("cancel: cancel of a finished task returns false") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto t = coop::spawn(remote, square, 3);
        wait_done(t);
        CHECK_FALSE(t.cancel());
        CHECK(t.join() == 9);  // the value is kept
        CHECK_FALSE(t.cancel());
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("cancel: a cancelled task cannot be cancelled again") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto t = coop::spawn(remote, nap, 50, 1);
        CHECK(t.cancel());
        CHECK_FALSE(t.cancel());
        CHECK_THROWS_AS(t.join(), coop::Cancelled);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("cancel: cancel by a task that is not the parent throws coop::Error") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto t = coop::spawn(remote, nap, 30, 1);
        auto other = coop::spawn([&t] { return t.cancel(); });
        CHECK_THROWS_AS(other.join(), coop::Error);
        CHECK(t.join() == 1);  // not cancelled
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("cancel: a local task cannot be cancelled") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto t = coop::spawn([] {
          coop::sleep_for(10ms);
          return 1;
        });
        CHECK_THROWS_AS(t.cancel(), coop::Error);
        CHECK(t.join() == 1);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

// ---- timing --------------------------------------------------------------------

TEST_CASE("timing: submitted <= started <= completed <= received for remote tasks") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto busy = coop::spawn(remote, nap, 40, 0);
        auto q = coop::spawn(coop::Spawn{.remote = true, .block = false}, nap, 20, 1);
        CHECK(busy.join() == 0);
        CHECK(q.join() == 1);
        for (const coop::Timing& t : {busy.timing(), q.timing()}) {
          CHECK(t.submitted != coop::clock::time_point{});
          CHECK(t.submitted <= t.started);
          CHECK(t.started <= t.completed);
          CHECK(t.completed <= t.received);
          CHECK(t.run_time() >= 15ms);
        }
        CHECK(q.timing().queue_time() >= 25ms);  // it waited for busy's slot

        coop::spawn(remote, nap, 5, 2);
        auto j = coop::join();
        REQUIRE(j);
        const coop::Timing& t = j->timing;
        CHECK(t.submitted != coop::clock::time_point{});
        CHECK(t.submitted <= t.started);
        CHECK(t.started <= t.completed);
        CHECK(t.completed <= t.received);
        CHECK(t.received <= coop::clock::now());
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("timing: a task that timed out or was cancelled is received when it ended") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto late = coop::spawn(coop::Spawn{.remote = true, .timeout = 20ms}, nap, 200, 0);
        auto dropped = coop::spawn(coop::Spawn{.remote = true, .block = false}, nap, 10, 1);
        CHECK(dropped.cancel());
        auto before = coop::clock::now();
        CHECK_THROWS_AS(late.join(), coop::Timeout);
        CHECK_THROWS_AS(dropped.join(), coop::Cancelled);
        CHECK(late.timing().received >= late.timing().started);
        CHECK(late.timing().received <= coop::clock::now());
        CHECK(late.timing().received >= before - 50ms);
        CHECK(dropped.timing().received >= dropped.timing().submitted);
        CHECK(dropped.timing().received != coop::clock::time_point{});
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}
