// backends_queue_test.cpp: pipelining (VM::queue) on every backend that
// queues (ProcessVM, and MpiVM with and without isolate under mpirun):
// calls queued behind a busy slot's running task keep every rule of the
// scheduler: priorities and host queues decide what starts, timeouts count
// from the real start, a crash or a timeout costs only the task that ran
// (the queued ones run again), a cancel of a queued call kills nothing, and
// a dispatch gets every result exactly once. What only ProcessVM has (its
// workers' output marks, reaping orphans) is in process_queue_test.cpp.
#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "backends_support.hpp"

using namespace std::chrono_literals;
using Catch::Contains;

namespace backends_queue {

int nap_then_crash(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return cos_test::crash("segv");
}

// A remote object that serves until it is closed.
class Tally {
 public:
  explicit Tally(int start) : n_(start) {}
  int add(int k) { return n_ += k; }

 private:
  int n_;
};
COS_REMOTE_CLASS(Tally, int);
COS_REMOTE_METHOD(Tally, add);

}  // namespace backends_queue

COS_REMOTE(backends_queue::nap_then_crash);

namespace {

using backends::nap;
using backends::where;
using backends_queue::Tally;

coop::Spawn queued(int priority = 0) { return coop::Spawn{.remote = true, .block = false, .priority = priority}; }

// The cases queue behind tasks of 100 ms and more, to see the rules at
// work: pipelining applies to tasks of any length here.
std::shared_ptr<coop::VM> vm(const std::string& backend, int slots, int queue) {
  return cos_test::make_queue_vm(backend, slots, cos_test::QueueOptions{.queue = queue, .queue_under = 1h});
}

// warm_up() runs one short task, so that the VM has seen a task's run time
// (it queues nothing before).
void warm_up() { coop::spawn(coop::Spawn{.remote = true}, nap, 0, 0).join(); }

// wait_until_on_vm() yields until every task holds a task id: started or
// queued on a busy slot (the pool queues on the VM from its loop).
void wait_until_on_vm(const std::vector<coop::Task<int>*>& ts) {
  for (int i = 0; i < 2000; ++i) {
    if (std::all_of(ts.begin(), ts.end(), [](auto* t) { return t->task_id().has_value(); })) return;
    coop::sleep_for(1ms);
  }
  FAIL("the tasks were not queued on the VM within 2 s");
}

std::vector<std::string> isolated_queue_backends() {
  std::vector<std::string> out;
  for (auto& b : cos_test::queue_backends())
    if (cos_test::isolated(b)) out.push_back(b);
  return out;
}

}  // namespace

TEST_CASE("queue: spawns beyond the free slots are queued on busy slots, up to the depth") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 100, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        auto c = coop::spawn(queued(), nap, 1, 3);
        wait_until_on_vm({&a, &b});
        auto& s = coop::Scheduler::current();
        CHECK(s.vm()->queue_capacity() == 2);
        CHECK(s.vm()->queue_room() == 0);
        CHECK_FALSE(c.task_id().has_value());  // the depth is 2: c waits in the scheduler
        CHECK(a.join() == 1);
        CHECK(b.join() == 2);
        CHECK(c.join() == 3);
        CHECK(busy.join() == -1);
        // Queued calls began after the running one ended, in order.
        CHECK(a.timing().started >= busy.timing().completed);
        CHECK(b.timing().started >= a.timing().completed);
      },
      coop::Options{.vm = vm(backend, 1, 2)});
}

TEST_CASE("queue: a slot holds about queue_under of work: fewer calls for longer tasks") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto& vm = *coop::Scheduler::current().vm();
        CHECK(vm.queue_capacity() == 16);
        // Tasks of 20 ms against 200 ms of queued work: 10 calls, or fewer
        // when a loaded machine makes the naps longer; never the 16 allowed.
        for (int i = 0; i < 8; ++i) coop::spawn(coop::Spawn{.remote = true}, nap, 20, 0).join();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 100, -1);
        const int room = vm.queue_room();
        CHECK(room >= 3);
        CHECK(room <= 10);
        std::vector<coop::Task<int>> queued_calls;
        for (int i = 0; i < room + 1; ++i) queued_calls.push_back(coop::spawn(queued(), nap, 0, i));
        std::vector<coop::Task<int>*> on_vm;
        for (int i = 0; i < room; ++i) on_vm.push_back(&queued_calls[static_cast<std::size_t>(i)]);
        wait_until_on_vm(on_vm);
        CHECK(vm.queue_room() == 0);
        CHECK_FALSE(queued_calls.back().task_id().has_value());  // beyond the depth: waits in the scheduler
        CHECK(busy.join() == -1);
        for (int i = 0; i <= room; ++i) CHECK(queued_calls[static_cast<std::size_t>(i)].join() == i);
      },
      coop::Options{.vm = cos_test::make_queue_vm(backend, 1, cos_test::QueueOptions{.queue = 16, .queue_under = 200ms})});
}

TEST_CASE("queue: a queue depth of 0 queues nothing, and a negative depth is an error") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 50, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        coop::sleep_for(20ms);
        CHECK_FALSE(a.task_id().has_value());
        CHECK(coop::Scheduler::current().vm()->queue_capacity() == 0);
        CHECK(a.join() == 1);
        busy.join();
      },
      coop::Options{.vm = vm(backend, 1, 0)});
  CHECK_THROWS_WITH(vm(backend, 1, -1), Contains("Options::queue is -1"));
}

TEST_CASE("queue: a spawn of higher priority takes back worse calls queued on the slot and starts first") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 150, -1);
        auto low1 = coop::spawn(queued(0), nap, 1, 1);
        auto low2 = coop::spawn(queued(0), nap, 1, 2);
        wait_until_on_vm({&low1, &low2});
        auto high = coop::spawn(queued(5), nap, 1, 3);
        CHECK(high.join() == 3);
        CHECK(low1.join() == 1);
        CHECK(low2.join() == 2);
        busy.join();
        CHECK(high.timing().started >= busy.timing().completed);
        CHECK(low1.timing().started >= high.timing().completed);
        CHECK(low2.timing().started >= low1.timing().completed);
        // Taken back, they ran once each, on the one slot.
        CHECK(low1.host() == high.host());
      },
      coop::Options{.vm = vm(backend, 1, 2)});
}

TEST_CASE("queue: a call bound to a host is queued only on that host's slots") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto on = [](const char* h) { return coop::Spawn{.remote = true, .host = coop::HostId(h), .block = false}; };
        auto busy_a = coop::spawn(on("a"), nap, 150, -1);
        auto busy_b = coop::spawn(on("b"), nap, 150, -1);
        wait_until_on_vm({&busy_a, &busy_b});
        auto x = coop::spawn(on("a"), nap, 1, 1);
        auto y = coop::spawn(on("a"), nap, 1, 2);  // a's one queue place is x's
        auto z = coop::spawn(queued(), nap, 1, 3);  // any host: b has room
        wait_until_on_vm({&x, &z});
        coop::sleep_for(20ms);
        CHECK_FALSE(y.task_id().has_value());
        CHECK(z.host() == coop::HostId("b"));
        CHECK(x.join() == 1);
        CHECK(y.join() == 2);
        CHECK(z.join() == 3);
        CHECK(x.host() == coop::HostId("a"));
        CHECK(y.host() == coop::HostId("a"));
        busy_a.join();
        busy_b.join();
      },
      coop::Options{.vm = cos_test::make_queue_vm(backend, std::map<std::string, int>{{"a", 1}, {"b", 1}},
                                                  cos_test::QueueOptions{.queue = 1, .queue_under = 1h})});
}

TEST_CASE("queue: a crash costs the running task only; the calls queued behind it run after", "[crash]") {
  auto backend = GENERATE(from_range(isolated_queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto crasher = coop::spawn(coop::Spawn{.remote = true}, backends_queue::nap_then_crash, 100);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        wait_until_on_vm({&a, &b});
        CHECK_THROWS_AS(crasher.join(), coop::WorkerLost);
        CHECK(a.join() == 1);
        CHECK(b.join() == 2);
        CHECK(a.timing().started >= crasher.timing().started);
      },
      coop::Options{.vm = vm(backend, 1, 2)});
}

TEST_CASE("queue: a queued call's timeout counts from its real start, not from its queueing") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 200, -1);
        auto patient = coop::spawn(coop::Spawn{.remote = true, .block = false, .timeout = 100ms}, nap, 10, 1);
        auto slow = coop::spawn(coop::Spawn{.remote = true, .block = false, .timeout = 100ms}, nap, 400, 2);
        wait_until_on_vm({&patient, &slow});
        CHECK(patient.join() == 1);  // it waited 200 ms in the queue, and ran 10
        auto t0 = std::chrono::steady_clock::now();
        CHECK_THROWS_AS(slow.join(), coop::Timeout);
        // It began after `patient` (about 210 ms in) and timed out 100 ms later.
        CHECK(std::chrono::steady_clock::now() - t0 < 300ms);
        CHECK(busy.join() == -1);
      },
      coop::Options{.vm = vm(backend, 1, 2)});
}

TEST_CASE("queue: cancelling a queued call ends it without touching the slot that holds it") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto place = coop::spawn(coop::Spawn{.remote = true}, where).join();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 100, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        wait_until_on_vm({&a, &b});
        a.cancel();
        CHECK_THROWS_AS(a.join(), coop::Cancelled);
        CHECK(busy.join() == -1);  // the running task was not touched
        CHECK(b.join() == 2);
        CHECK(coop::spawn(coop::Spawn{.remote = true}, where).join() == place);  // the same worker
      },
      coop::Options{.vm = vm(backend, 1, 2)});
}

TEST_CASE("queue: by default only short tasks are pipelined: nothing queues behind a long one") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto& vm = *coop::Scheduler::current().vm();
        CHECK(vm.queue_capacity() == 2);
        auto first = coop::spawn(coop::Spawn{.remote = true}, nap, 0, 0);
        CHECK(vm.queue_room() == 0);  // no run time seen yet
        first.join();
        // Short tasks seen: a spawn beyond the free slots queues on the VM.
        for (int i = 0; i < 8; ++i) coop::spawn(coop::Spawn{.remote = true}, nap, 0, 0).join();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 30, -1);
        CHECK(vm.queue_room() == 2);
        auto a = coop::spawn(queued(), nap, 0, 1);
        wait_until_on_vm({&a});
        CHECK(a.timing().started == coop::clock::time_point{});  // queued: it has not begun
        a.join();
        busy.join();
        // After long tasks, no more.
        for (int i = 0; i < 8; ++i) coop::spawn(coop::Spawn{.remote = true}, nap, 5, 0).join();
        auto long_one = coop::spawn(coop::Spawn{.remote = true}, nap, 30, -1);
        CHECK(vm.queue_room() == 0);
        auto b = coop::spawn(queued(), nap, 0, 2);
        coop::sleep_for(10ms);
        CHECK_FALSE(b.task_id().has_value());
        b.join();
        long_one.join();
      },
      coop::Options{.vm = cos_test::make_queue_vm(backend, 1, cos_test::QueueOptions{})});
}

TEST_CASE("queue: a dispatch of hundreds of jobs keeps the slots and their queues busy, and every result comes once") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        std::vector<coop::Job<int>> jobs;
        for (int i = 0; i < 300; ++i) jobs.push_back(coop::job(nap, 0, i));
        std::vector<int> seen;
        int queued_behind = 0;
        coop::clock::time_point last_completed{};
        auto d = coop::dispatch(jobs, [&](coop::Stream<int>& results) {
          for (auto& r : results) {
            seen.push_back(r.value.get());
            if (r.timing.started - last_completed < 1ms) ++queued_behind;
            last_completed = r.timing.completed;
          }
        });
        std::sort(seen.begin(), seen.end());
        std::vector<int> want(300);
        for (int i = 0; i < 300; ++i) want[static_cast<std::size_t>(i)] = i;
        CHECK(seen == want);
        CHECK(d.stats.done == 300);
        CHECK(queued_behind > 0);  // some began right after another: pipelined
      },
      coop::Options{.vm = cos_test::make_queue_vm(backend, 2, cos_test::QueueOptions{})});
}

TEST_CASE("queue: nothing is queued behind a remote object's server, which runs until the object closes") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto tally = coop::make_remote<Tally>(coop::Spawn{.remote = true}, 1);
        CHECK(tally.call(&Tally::add, 2).join() == 3);
        // One slot serves the object; six short tasks share the other.
        std::vector<coop::Task<int>> ts;
        for (int i = 0; i < 6; ++i) ts.push_back(coop::spawn(queued(), nap, 5, i));
        for (int i = 0; i < 6; ++i) CHECK(ts[static_cast<std::size_t>(i)].join() == i);
        CHECK(tally.call(&Tally::add, 4).join() == 7);
      },
      coop::Options{.vm = vm(backend, 2, 2)});
}

TEST_CASE("queue: nothing is queued behind a task that has run longer than queue_under") {
  auto backend = GENERATE(from_range(cos_test::queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 100, -1);
        coop::sleep_for(30ms);  // busy has run for 30 ms: past queue_under
        auto a = coop::spawn(queued(), nap, 1, 1);
        coop::sleep_for(10ms);
        CHECK_FALSE(a.task_id().has_value());
        CHECK(a.join() == 1);
        busy.join();
      },
      coop::Options{.vm = cos_test::make_queue_vm(backend, 1, cos_test::QueueOptions{.queue = 2, .queue_under = 20ms})});
}

TEST_CASE("queue: a timeout of the running task kills its worker, and the calls queued behind it run after", "[isolate]") {
  auto backend = GENERATE(from_range(isolated_queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true, .timeout = 80ms}, nap, 2000, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        wait_until_on_vm({&a, &b});
        auto t0 = std::chrono::steady_clock::now();
        CHECK_THROWS_AS(busy.join(), coop::Timeout);
        CHECK(a.join() == 1);
        CHECK(b.join() == 2);
        CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);  // not after the 2 s nap
      },
      coop::Options{.vm = vm(backend, 1, 2)});
}

TEST_CASE("queue: cancelling the running task gives back the calls queued behind it, which run after", "[isolate]") {
  auto backend = GENERATE(from_range(isolated_queue_backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 2000, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        wait_until_on_vm({&a, &b});
        auto t0 = std::chrono::steady_clock::now();
        busy.cancel();
        CHECK_THROWS_AS(busy.join(), coop::Cancelled);
        CHECK(a.join() == 1);
        CHECK(b.join() == 2);
        CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
      },
      coop::Options{.vm = vm(backend, 1, 2)});
}
