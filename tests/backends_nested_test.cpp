// backends_nested_test.cpp: two levels of parallelism on every VM backend
// (DESIGN.md section 2, examples/multistart.cpp): a remote task that runs
// its own coop::Scheduler of local microthreads inside its slot keeps every
// rule of the local model there (child first, FIFO, yield, timers, join
// order, exceptions), and each task on a slot gets a fresh scheduler.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

#include "backends_support.hpp"

using namespace backends;

namespace {

// inner_log(n) runs a scheduler in its slot, with n probes that log, yield,
// sleep and throw in a known pattern, and returns the log.
std::string inner_log(int n) {
  if (coop::Scheduler::current_or_null()) throw std::logic_error("a slot already has a scheduler");
  cos_test::Log log;
  coop::run([&] {
    std::vector<coop::Task<int>> probes;
    for (int i = 0; i < n; ++i) {
      probes.push_back(coop::spawn([&log, i] {
        log("start" + std::to_string(i));  // child first: runs before the spawner goes on
        coop::yield();
        if (i == 1) coop::sleep_for(std::chrono::milliseconds(5));  // a timer in the slot's scheduler
        log("end" + std::to_string(i));
        if (i == 2) throw std::runtime_error("probe 2 failed");
        return i * i;
      }));
    }
    log("spawned");
    for (int i = 0; i < n; ++i) {
      try {
        log("join" + std::to_string(probes[static_cast<std::size_t>(i)].join()));
      } catch (const std::runtime_error& e) {
        log(e.what());
      }
    }
  });
  return log.str() + (coop::Scheduler::current_or_null() ? " (a scheduler was left behind)" : "");
}
COS_REMOTE(inner_log);

}  // namespace

TEST_CASE("nested: a remote task's own scheduler keeps the local rules inside its slot") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  // What the same function logs as a plain program, without any VM.
  std::string expected = inner_log(4);
  CHECK(expected ==
        "start0 start1 start2 start3 spawned end0 end2 end3 join0 end1 join1 probe 2 failed join9");
  coop::run(
      [&] {
        // Two at a time, then again on the same slots: each task gets a fresh scheduler.
        for (int round = 0; round < 2; ++round) {
          auto a = coop::spawn(remote, inner_log, 4);
          auto b = coop::spawn(remote, inner_log, 4);
          CHECK(a.join() == expected);
          CHECK(b.join() == expected);
        }
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("nested: a remote task cannot make a second scheduler on a thread that has one") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  // Without a VM the remote spawn runs in this scheduler's thread, where a
  // second Scheduler is a coop::Error; on a slot it is fine.
  coop::run([] { CHECK_THROWS_AS(coop::spawn(remote, inner_log, 2).join(), std::logic_error); });
  coop::run([] { CHECK_NOTHROW(coop::spawn(remote, inner_log, 2).join()); },
            coop::Options{.vm = cos_test::make_vm(backend, 1)});
}
