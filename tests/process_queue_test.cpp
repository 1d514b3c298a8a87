// Pipelining on ProcessVM (ProcessOptions::queue, VM::queue), what only
// ProcessVM has: each task's output is its own although a queued call
// starts right after the one before (the cut that each `started` carries,
// output_counts.hpp), and the
// worker's reaping of a task's orphans, which happens only when a task may
// have left one. The rules that hold on every backend that queues
// (priorities, host queues, timeouts from the real start, crashes, cancel,
// dispatch) are backends_queue_test.cpp's, which runs on ProcessVM and on
// MpiVM.
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

// say_much() writes its task's share of output in several ways: C's stdout
// (buffered), stderr, write(2) on fd 1, and a task in 25 more than the
// pipe holds (96 KiB), so that the spawner reads it in pieces, some
// perhaps after the next task has begun; a task in 7 writes nothing.
// Every line names the task.
int say_much(int i) {
  if (i % 7 == 3) return i;
  std::printf("out-%d\n", i);
  std::fprintf(stderr, "err-%d\n", i);
  std::string line = "raw-" + std::to_string(i) + "\n";
  if (::write(1, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return -1;
  if (i % 25 == 0) {
    std::string big;
    while (big.size() < 96 * 1024) big += "big-" + std::to_string(i) + "\n";
    std::fwrite(big.data(), 1, big.size(), stdout);
  }
  return i;
}
COS_REMOTE(say_much);

// lines_of(i) is how many lines say_much(i) writes.
std::size_t lines_of(int i) {
  if (i % 7 == 3) return 0;
  if (i % 25 != 0) return 3;
  const std::size_t line = 5 + std::to_string(i).size();  // "big-<i>\n"
  return 3 + (96 * 1024 + line - 1) / line;
}

// foreign_lines() counts the lines of `output` that do not end in "-<i>".
int foreign_lines(const std::string& output, int i) {
  std::string tail = "-";
  tail += std::to_string(i);
  int foreign = 0;
  std::size_t from = 0;
  while (from < output.size()) {
    std::size_t end = output.find('\n', from);
    if (end == std::string::npos) end = output.size();
    std::string_view line(output.data() + from, end - from);
    if (line.size() < tail.size() || line.substr(line.size() - tail.size()) != tail) ++foreign;
    from = end + 1;
  }
  return foreign;
}

// reaped(pid): the worker no longer has that child, not even as a zombie.
bool reaped(int pid) { return ::waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD; }
COS_REMOTE(reaped);

// Pipelining applies to tasks of any length here.
constexpr coop::ProcessOptions always(int queue) { return coop::ProcessOptions{.queue = queue, .queue_under = 1h}; }

std::shared_ptr<coop::ProcessVM> vm(int slots, int queue) {
  return std::make_shared<coop::ProcessVM>(slots, always(queue));
}

// warm_up() runs one short task, so that the VM has seen a task's run time
// (it queues nothing before).
void warm_up() { coop::spawn(coop::Spawn{.remote = true}, nap, 0, 0).join(); }

}  // namespace

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

TEST_CASE("queue: output on both streams, written every way and larger than a pipe, stays with its task") {
  coop::run(
      [] {
        warm_up();
        std::vector<coop::Job<int>> jobs;
        for (int i = 0; i < 300; ++i) jobs.push_back(coop::job(say_much, i));
        int wrong = 0;
        coop::dispatch(jobs, [&](coop::Stream<int>& results) {
          for (auto& r : results) {
            int i = r.value.get();
            REQUIRE(i >= 0);
            std::size_t lines = static_cast<std::size_t>(std::count(r.output.begin(), r.output.end(), '\n'));
            bool own = foreign_lines(r.output, i) == 0 && lines == lines_of(i);
            for (const char* kind : {"out-", "err-", "raw-"}) {
              if (lines_of(i) > 0 && r.output.find(kind + std::to_string(i) + "\n") == std::string::npos) own = false;
            }
            if (!own) {
              ++wrong;
              UNSCOPED_INFO("job " << i << " has " << lines << " lines of output, " << foreign_lines(r.output, i)
                                   << " of them another task's: '" << r.output.substr(0, 200) << "'");
            }
          }
        });
        CHECK(wrong == 0);
      },
      coop::Options{.vm = vm(2, 4)});
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
