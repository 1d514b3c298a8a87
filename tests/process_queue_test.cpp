// Pipelining on ProcessVM (ProcessOptions::queue, VM::queue): calls queued
// behind a busy worker's running task keep every rule of the scheduler:
// priorities and host queues decide what starts, timeouts count from the
// real start, a crash costs only the task that ran (the queued ones run
// again elsewhere), a cancel of a queued call kills nothing. Also the
// worker's reaping of a task's orphans, which now happens only when a task
// may have left one.
#include <cos/cos.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

int nap(int ms, int value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value;
}
COS_REMOTE(nap);

int nap_then_crash(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return cos_test::crash("segv");
}
COS_REMOTE(nap_then_crash);

int worker_pid() { return static_cast<int>(::getpid()); }
COS_REMOTE(worker_pid);

// leave_orphan() forks a child that exits at once and is not waited for.
int leave_orphan() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  std::this_thread::sleep_for(20ms);  // it has ended (a zombie) when the task returns
  return static_cast<int>(pid);
}
COS_REMOTE(leave_orphan);

// fork_and_return() forks a child that exits at once and returns at once:
// the task is short, so only its fork says that there is something to reap.
int fork_and_return() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  return static_cast<int>(pid);
}
COS_REMOTE(fork_and_return);

// say() prints a line of its own, the only output of its task.
int say(int i) {
  std::printf("task-%d\n", i);
  return i;
}
COS_REMOTE(say);

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

// reaped(pid): the worker no longer has that child, not even as a zombie.
bool reaped(int pid) { return ::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD; }
COS_REMOTE(reaped);

coop::Spawn queued(int priority = 0) { return coop::Spawn{.remote = true, .block = false, .priority = priority}; }

// The cases queue behind tasks of 100 ms and more, to see the rules at
// work: pipelining applies to tasks of any length here.
constexpr coop::ProcessOptions always(int queue) { return coop::ProcessOptions{.queue = queue, .queue_under = 1h}; }

std::shared_ptr<coop::ProcessVM> vm(int slots, int queue) {
  return std::make_shared<coop::ProcessVM>(slots, always(queue));
}

// warm_up() runs one short task, so that the VM has seen a task's run time
// (it queues nothing before).
void warm_up() { coop::spawn(coop::Spawn{.remote = true}, nap, 0, 0).join(); }

// wait_until_on_vm() yields until every task holds a task id: started or
// queued on a busy worker (the pool queues on the VM from its loop).
void wait_until_on_vm(const std::vector<coop::Task<int>*>& ts) {
  for (int i = 0; i < 2000; ++i) {
    if (std::all_of(ts.begin(), ts.end(), [](auto* t) { return t->task_id().has_value(); })) return;
    coop::sleep_for(1ms);
  }
  FAIL("the tasks were not queued on the VM within 2 s");
}

}  // namespace

TEST_CASE("queue: spawns beyond the free slots are queued on busy workers, up to the depth") {
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
      coop::Options{.vm = vm(1, 2)});
}

TEST_CASE("queue: ProcessOptions::queue = 0 queues nothing, and a negative depth is an error") {
  coop::run(
      [] {
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 50, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        coop::sleep_for(20ms);
        CHECK_FALSE(a.task_id().has_value());
        CHECK(coop::Scheduler::current().vm()->queue_capacity() == 0);
        CHECK(a.join() == 1);
        busy.join();
      },
      coop::Options{.vm = vm(1, 0)});
  CHECK_THROWS_WITH(vm(1, -1), Catch::Contains("ProcessOptions::queue is -1"));
}

TEST_CASE("queue: a spawn of higher priority takes back worse calls queued on the worker and starts first") {
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
        // Taken back, they ran once each, on the one worker.
        CHECK(low1.host() == high.host());
      },
      coop::Options{.vm = vm(1, 2)});
}

TEST_CASE("queue: a call bound to a host is queued only on that host's workers") {
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
      coop::Options{.vm = std::make_shared<coop::ProcessVM>(std::map<std::string, int>{{"a", 1}, {"b", 1}},
                                                             always(1))});
}

TEST_CASE("queue: a crash costs the running task only; the calls queued behind it run on the replacement") {
  coop::run(
      [] {
        warm_up();
        auto crasher = coop::spawn(coop::Spawn{.remote = true}, nap_then_crash, 100);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        wait_until_on_vm({&a, &b});
        CHECK_THROWS_AS(crasher.join(), coop::WorkerLost);
        CHECK(a.join() == 1);
        CHECK(b.join() == 2);
        CHECK(a.timing().started >= crasher.timing().started);
      },
      coop::Options{.vm = vm(1, 2)});
}

TEST_CASE("queue: a queued call's timeout counts from its real start, not from its queueing") {
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
      coop::Options{.vm = vm(1, 2)});
}

TEST_CASE("queue: cancelling a queued call ends it without killing the worker that holds it") {
  coop::run(
      [] {
        auto pid = coop::spawn(coop::Spawn{.remote = true}, worker_pid).join();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 100, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        wait_until_on_vm({&a, &b});
        a.cancel();
        CHECK_THROWS_AS(a.join(), coop::Cancelled);
        CHECK(busy.join() == -1);  // the running task was not touched
        CHECK(b.join() == 2);
        CHECK(coop::spawn(coop::Spawn{.remote = true}, worker_pid).join() == pid);  // the same worker
      },
      coop::Options{.vm = vm(1, 2)});
}

TEST_CASE("queue: by default only short tasks are pipelined: nothing queues behind a long one") {
  coop::run(
      [] {
        auto& vm = *coop::Scheduler::current().vm();
        CHECK(vm.queue_capacity() == 16);
        auto first = coop::spawn(coop::Spawn{.remote = true}, nap, 0, 0);
        CHECK(vm.queue_room() == 0);  // no run time seen yet
        first.join();
        // Short tasks seen: a spawn beyond the free slots queues on the VM.
        for (int i = 0; i < 8; ++i) coop::spawn(coop::Spawn{.remote = true}, nap, 0, 0).join();
        auto busy = coop::spawn(coop::Spawn{.remote = true}, nap, 30, -1);
        CHECK(vm.queue_room() > 0);  // up to 16, fewer when these tasks took over 1 ms / 16
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
      coop::Options{.vm = std::make_shared<coop::ProcessVM>(1, coop::ProcessOptions{})});
}

TEST_CASE("queue: a worker holds about queue_under of work: fewer calls for longer tasks") {
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
      coop::Options{.vm = std::make_shared<coop::ProcessVM>(
                        1, coop::ProcessOptions{.queue = 16, .queue_under = 200ms})});
}

TEST_CASE("queue: a dispatch keeps a job per slot and the queue depth in flight, and every result comes once") {
  coop::run(
      [] {
        std::vector<coop::Job<int>> jobs;
        for (int i = 0; i < 300; ++i) jobs.push_back(coop::job(nap, 0, i));
        std::vector<int> seen;
        auto d = coop::dispatch(jobs, [&](coop::Stream<int>& results) {
          for (auto& r : results) seen.push_back(r.value.get());
        });
        std::sort(seen.begin(), seen.end());
        std::vector<int> want(300);
        for (int i = 0; i < 300; ++i) want[static_cast<std::size_t>(i)] = i;
        CHECK(seen == want);
        CHECK(d.stats.done == 300);
      },
      coop::Options{.vm = vm(2, 2)});
}

TEST_CASE("queue: each task's output is its own, also when a queued call starts right after the one before") {
  coop::run(
      [] {
        warm_up();
        std::vector<coop::Job<int>> jobs;
        for (int i = 0; i < 400; ++i) jobs.push_back(coop::job(say, i));
        int wrong = 0, queued_behind = 0;
        coop::clock::time_point last_completed{};
        coop::dispatch(jobs, [&](coop::Stream<int>& results) {
          for (auto& r : results) {
            int i = r.value.get();
            if (r.output != "task-" + std::to_string(i) + "\n") {
              ++wrong;
              UNSCOPED_INFO("job " << i << " has output '" << r.output << "'");
            }
            if (r.timing.started - last_completed < 1ms) ++queued_behind;
            last_completed = r.timing.completed;
          }
        });
        CHECK(wrong == 0);
        CHECK(queued_behind > 0);  // some began right after another: pipelined
      },
      coop::Options{.vm = vm(2, 2)});
}

TEST_CASE("queue: nothing is queued behind a remote object's server, which runs until the object closes") {
  coop::run(
      [] {
        warm_up();
        auto tally = coop::make_remote<Tally>(coop::Spawn{.remote = true}, 1);
        CHECK(tally.call(&Tally::add, 2).join() == 3);
        // One worker serves the object; six short tasks share the other.
        std::vector<coop::Task<int>> ts;
        for (int i = 0; i < 6; ++i) ts.push_back(coop::spawn(queued(), nap, 5, i));
        for (int i = 0; i < 6; ++i) CHECK(ts[static_cast<std::size_t>(i)].join() == i);
        CHECK(tally.call(&Tally::add, 4).join() == 7);
      },
      coop::Options{.vm = vm(2, 2)});
}

TEST_CASE("queue: nothing is queued behind a task that has run longer than queue_under") {
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
      coop::Options{.vm = std::make_shared<coop::ProcessVM>(1, coop::ProcessOptions{.queue = 2, .queue_under = 20ms})});
}

TEST_CASE("queue: a timeout of the running task kills its worker; the calls queued behind it run elsewhere") {
  coop::run(
      [] {
        warm_up();
        auto busy = coop::spawn(coop::Spawn{.remote = true, .timeout = 80ms}, nap, 2000, -1);
        auto a = coop::spawn(queued(), nap, 1, 1);
        auto b = coop::spawn(queued(), nap, 1, 2);
        wait_until_on_vm({&a, &b});
        CHECK_THROWS_AS(busy.join(), coop::Timeout);
        CHECK(a.join() == 1);
        CHECK(b.join() == 2);
      },
      coop::Options{.vm = vm(1, 2)});
}

TEST_CASE("worker: children a task leaves behind are reaped once it returns") {
  auto backend = GENERATE(1, 0);  // with and without pipelining
  INFO("queue depth " << backend);
  coop::run(
      [] {
        int child = coop::spawn(coop::Spawn{.remote = true}, leave_orphan).join();
        CHECK(coop::spawn(coop::Spawn{.remote = true}, reaped, child).join());
        // A short task that forks: the fork says there is one to reap (its
        // child may still run then: it is reaped after a later task).
        child = coop::spawn(coop::Spawn{.remote = true}, fork_and_return).join();
        bool gone = false;
        for (int i = 0; i < 50 && !gone; ++i) {
          std::this_thread::sleep_for(2ms);
          gone = coop::spawn(coop::Spawn{.remote = true}, reaped, child).join();
        }
        CHECK(gone);
      },
      coop::Options{.vm = vm(1, backend)});
}
