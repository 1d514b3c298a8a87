// backends_slots_test.cpp: slots and queues on every VM backend (DESIGN.md
// sections 3-5): slot counts, block / enqueue / fail, priorities and host
// queues.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "backends_support.hpp"

using namespace backends;

namespace {

const std::map<std::string, int> a1_b1{{"a", 1}, {"b", 1}};

coop::Spawn on(const char* host, bool block = true) {
  return coop::Spawn{.remote = true, .host = coop::HostId(host), .block = block};
}

}  // namespace

// ---- slots -----------------------------------------------------------------

TEST_CASE("slots: free_slots drops while tasks run and recovers after their join") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(1, 2, 4);
  INFO("backend " << backend << ", " << n << " slots");
  coop::run(
      [n] {
        auto& s = coop::Scheduler::current();
        CHECK(s.slots() == n);
        CHECK(s.free_slots() == n);
        CHECK(s.remote_task_count() == 0);
        std::vector<coop::Task<int>> ts;
        for (int k = 0; k < n; ++k) {
          ts.push_back(coop::spawn(remote, nap, 60, k));
          CHECK(s.free_slots() == n - k - 1);
          CHECK(s.remote_task_count() == static_cast<std::size_t>(k + 1));
          CHECK(s.slots() == n);
        }
        for (int k = 0; k < n; ++k) CHECK(ts[static_cast<std::size_t>(k)].join() == k);
        CHECK(s.free_slots() == n);
        CHECK(s.remote_task_count() == 0);
      },
      coop::Options{.vm = cos_test::make_vm(backend, n)});
}

TEST_CASE("slots: remote_task_count counts queued tasks as well as running ones") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(1, 2);
  INFO("backend " << backend << ", " << n << " slots");
  coop::run(
      [n] {
        auto& s = coop::Scheduler::current();
        std::vector<coop::Task<int>> ts;
        for (int k = 0; k < n; ++k) ts.push_back(coop::spawn(remote, nap, 40, k));
        for (int k = 0; k < 3; ++k) ts.push_back(coop::spawn(coop::Spawn{.remote = true, .block = false}, nap, 0, k));
        CHECK(s.free_slots() == 0);
        CHECK(s.remote_task_count() == static_cast<std::size_t>(n + 3));
        CHECK(s.local_task_count() == 1);
        CHECK(s.task_count() == static_cast<std::size_t>(n + 4));
        for (auto& t : ts) t.join();
        CHECK(s.remote_task_count() == 0);
        CHECK(s.free_slots() == n);
      },
      coop::Options{.vm = cos_test::make_vm(backend, n)});
}

TEST_CASE("slots: without a VM slots and free_slots are -1") {
  coop::run([] {
    CHECK(coop::Scheduler::current().slots() == -1);
    CHECK(coop::Scheduler::current().free_slots() == -1);
  });
}

// ---- block / enqueue / fail --------------------------------------------------

TEST_CASE("spawn: with every slot busy, a non-blocking, non-queued spawn returns an invalid Task") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(1, 2);
  INFO("backend " << backend << ", " << n << " slots");
  coop::run(
      [n] {
        auto& s = coop::Scheduler::current();
        std::vector<coop::Task<int>> busy;
        for (int k = 0; k < n; ++k) busy.push_back(coop::spawn(remote, nap, 40, k));
        auto t = coop::spawn(coop::Spawn{.remote = true, .block = false, .enqueue = false}, square, 3);
        CHECK_FALSE(t.valid());
        CHECK(t.tid() == coop::invalid_tid);
        CHECK_THROWS_AS(t.join(), coop::Error);
        CHECK_THROWS_AS(t.cancel(), coop::Error);
        CHECK(s.remote_task_count() == static_cast<std::size_t>(n));
        for (auto& b : busy) b.join();
        CHECK_FALSE(coop::join().has_value());  // no task was left behind
      },
      coop::Options{.vm = cos_test::make_vm(backend, n)});
}

TEST_CASE("spawn: with a free slot, a non-blocking, non-queued spawn starts at once") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto t = coop::spawn(coop::Spawn{.remote = true, .block = false, .enqueue = false}, square, 3);
        CHECK(t.valid());
        CHECK(t.task_id().has_value());
        CHECK(t.join() == 9);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("spawn: with every slot busy, a non-blocking spawn queues and starts when a slot frees") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto& s = coop::Scheduler::current();
        auto busy = coop::spawn(remote, nap, 120, 1);
        auto t0 = coop::clock::now();
        auto q = coop::spawn(coop::Spawn{.remote = true, .block = false, .enqueue = true}, square, 5);
        CHECK(ms_since(t0) < 80);  // it did not wait for the slot
        CHECK(q.valid());
        CHECK(q.remote());
        CHECK_FALSE(q.done());
        CHECK_FALSE(q.task_id().has_value());
        CHECK_FALSE(q.host().has_value());
        CHECK(s.remote_task_count() == 2);
        CHECK(busy.join() == 1);
        CHECK(q.join() == 25);
        CHECK(q.task_id().has_value());
        CHECK(q.host().has_value());
        CHECK(q.task_id() != busy.task_id());
        CHECK(q.timing().started >= busy.timing().completed);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("spawn: a blocking spawn yields until a slot frees while other local tasks run") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto busy = coop::spawn(remote, nap, 80, 1);
        int ticks = 0;
        bool stop = false;
        auto ticker = coop::spawn([&] {
          while (!stop) {
            ++ticks;
            coop::sleep_for(5ms);
          }
        });
        int before = ticks;
        auto t0 = coop::clock::now();
        auto t = coop::spawn(coop::Spawn{.remote = true, .block = true}, square, 6);
        double waited = ms_since(t0);
        CHECK(t.task_id().has_value());  // it holds a slot now
        CHECK(busy.done());
        CHECK(waited >= 50);
        CHECK(ticks >= before + 3);  // the ticker ran while the spawn waited
        CHECK(t.join() == 36);
        stop = true;
        ticker.join();
        busy.join();
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

// ---- priorities --------------------------------------------------------------

TEST_CASE("priority: queued spawns start highest priority first, FIFO within equal") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto busy = coop::spawn(remote, nap, 50, -1);
        const std::vector<int> priority{0, 5, 1, 5, 0, 10, -3, 1};
        std::vector<coop::Task<int>> ts;
        for (std::size_t i = 0; i < priority.size(); ++i) {
          ts.push_back(coop::spawn(coop::Spawn{.remote = true, .block = false, .priority = priority[i]}, nap, 1,
                                   static_cast<int>(i)));
          CHECK_FALSE(ts.back().task_id().has_value());
        }
        busy.join();
        std::vector<std::pair<std::uint64_t, int>> started;  // (task id, job)
        for (std::size_t i = 0; i < ts.size(); ++i) {
          CHECK(ts[i].join() == static_cast<int>(i));
          REQUIRE(ts[i].task_id().has_value());
          started.emplace_back(ts[i].task_id()->value(), static_cast<int>(i));
        }
        std::sort(started.begin(), started.end());
        std::vector<int> order;
        for (auto& [id, i] : started) order.push_back(i);
        CHECK(order == std::vector<int>{5, 1, 3, 2, 7, 0, 4, 6});
        // One slot: each started after the one before it completed.
        for (std::size_t k = 1; k < order.size(); ++k) {
          auto prev = ts[static_cast<std::size_t>(order[k - 1])].timing();
          auto next = ts[static_cast<std::size_t>(order[k])].timing();
          CHECK(next.started >= prev.completed);
        }
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("priority: a queued spawn of higher priority overtakes older ones in a blocking spawn's queue") {
  // A blocking spawn waits in the same queue as the others, with its priority.
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto busy = coop::spawn(remote, nap, 40, -1);
        auto low = coop::spawn(coop::Spawn{.remote = true, .block = false, .priority = -1}, nap, 1, 0);
        auto high = coop::spawn(coop::Spawn{.remote = true, .block = true, .priority = 3}, nap, 1, 1);
        CHECK(high.task_id().has_value());  // the blocking spawn returned once it started
        CHECK_FALSE(low.task_id().has_value());
        CHECK(high.join() == 1);
        CHECK(low.join() == 0);
        CHECK(high.task_id()->value() < low.task_id()->value());
        busy.join();
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

// ---- hosts -------------------------------------------------------------------

TEST_CASE("hosts: a VM of n slots has one host, named after this machine") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  char name[256] = {};
  REQUIRE(::gethostname(name, sizeof name - 1) == 0);
  auto vm = cos_test::make_vm(backend, 3);
  CHECK(vm->slots() == 3);
  CHECK(vm->hosts() == std::vector<coop::HostId>{coop::HostId(name)});
}

TEST_CASE("hosts: Spawn{.host} runs the task on that host") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, {{"a", 1}, {"b", 2}});
  CHECK(vm->slots() == 3);
  CHECK(vm->hosts() == std::vector<coop::HostId>{coop::HostId("a"), coop::HostId("b")});
  coop::run(
      [] {
        std::vector<coop::Task<int>> ts;
        for (int k = 0; k < 4; ++k) ts.push_back(coop::spawn(on("b"), nap, 10, k));
        for (auto& t : ts) {
          CHECK(t.join() >= 0);
          CHECK(t.host() == coop::HostId("b"));
        }
        coop::spawn(on("a"), square, 2);
        auto j = coop::join();
        REQUIRE(j);
        CHECK(j->host == coop::HostId("a"));
        CHECK(j->get<int>() == 4);
      },
      coop::Options{.vm = vm});
}

TEST_CASE("hosts: a freed slot serves its host's queue before the any-host queue") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto on_a = coop::spawn(on("a"), nap, 200, 0);
        auto on_b = coop::spawn(on("b"), nap, 30, 0);
        // The any-host spawn is queued first, and with a higher priority.
        auto any = coop::spawn(coop::Spawn{.remote = true, .block = false, .priority = 9}, nap, 1, 1);
        auto bound = coop::spawn(on("b", false), nap, 1, 2);
        CHECK(any.join() == 1);
        CHECK(bound.join() == 2);
        CHECK(bound.host() == coop::HostId("b"));
        REQUIRE(bound.task_id().has_value());
        REQUIRE(any.task_id().has_value());
        CHECK(bound.task_id()->value() < any.task_id()->value());  // b's slot took its own queue first
        CHECK(any.host() == coop::HostId("b"));  // then the any-host one, before a was free
        CHECK_FALSE(on_a.done());
        on_a.join();
        on_b.join();
      },
      coop::Options{.vm = cos_test::make_vm(backend, a1_b1)});
}

TEST_CASE("hosts: a freed slot whose host has no queue serves the any-host queue") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto on_a = coop::spawn(on("a"), nap, 30, 0);
        auto on_b = coop::spawn(on("b"), nap, 200, 0);
        auto bound_b = coop::spawn(on("b", false), nap, 1, 1);
        auto any = coop::spawn(coop::Spawn{.remote = true, .block = false}, nap, 1, 2);
        CHECK(any.join() == 2);
        CHECK(any.host() == coop::HostId("a"));
        CHECK_FALSE(on_b.done());                    // it did not wait for b
        CHECK_FALSE(bound_b.task_id().has_value());  // a's slot does not take b's queue
        CHECK(bound_b.join() == 1);
        CHECK(bound_b.host() == coop::HostId("b"));
        CHECK(bound_b.timing().started >= on_b.timing().completed);
        on_a.join();
        on_b.join();
      },
      coop::Options{.vm = cos_test::make_vm(backend, a1_b1)});
}

TEST_CASE("hosts: a host-bound spawn waits for its host while another host has a free slot") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto& s = coop::Scheduler::current();
        auto on_b = coop::spawn(on("b"), nap, 40, 0);
        CHECK(s.free_slots() == 1);  // a is free
        auto none = coop::spawn(
            coop::Spawn{.remote = true, .host = coop::HostId("b"), .block = false, .enqueue = false}, square, 1);
        CHECK_FALSE(none.valid());
        auto queued = coop::spawn(on("b", false), square, 2);
        CHECK(queued.valid());
        CHECK_FALSE(queued.task_id().has_value());
        auto blocked = coop::spawn(on("b"), square, 3);
        CHECK(on_b.done());  // the blocking spawn waited for b's slot
        CHECK(blocked.host() == coop::HostId("b"));
        CHECK(queued.join() == 4);
        CHECK(blocked.join() == 9);
        CHECK(queued.host() == coop::HostId("b"));
        CHECK(queued.timing().started >= on_b.timing().completed);
        on_b.join();
      },
      coop::Options{.vm = cos_test::make_vm(backend, a1_b1)});
}

TEST_CASE("hosts: a queued task reports its bound host, and a task id once it starts") {
  // PyOPUS's extended return value: an enqueued spawn has no task id yet and
  // its host is the target host; a spawn for any host reports none until then.
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto on_b = coop::spawn(on("b"), nap, 30, 0);
        auto on_a = coop::spawn(on("a"), nap, 30, 0);
        auto queued = coop::spawn(on("b", false), square, 2);
        auto any = coop::spawn(coop::Spawn{.remote = true, .block = false}, square, 3);
        CHECK_FALSE(queued.task_id().has_value());
        CHECK(queued.host() == coop::HostId("b"));
        CHECK_FALSE(any.task_id().has_value());
        CHECK_FALSE(any.host().has_value());
        CHECK(queued.join() == 4);
        CHECK(queued.task_id().has_value());
        CHECK(queued.host() == coop::HostId("b"));
        CHECK(any.join() == 9);
        CHECK(any.host().has_value());
        on_b.join();
        on_a.join();
      },
      coop::Options{.vm = cos_test::make_vm(backend, a1_b1)});
}

TEST_CASE("hosts: a spawn on an unknown host throws coop::Error naming it") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        CHECK_THROWS_AS(coop::spawn(on("c"), square, 2), coop::Error);
        CHECK_THROWS_WITH(coop::spawn(on("c"), square, 2), Catch::Matchers::Contains("'c'"));
        CHECK_THROWS_AS(coop::spawn(on("c", false), square, 2), coop::Error);
        CHECK(coop::Scheduler::current().remote_task_count() == 0);
        CHECK_FALSE(coop::join().has_value());
      },
      coop::Options{.vm = cos_test::make_vm(backend, a1_b1)});
}
