// backends_errors_test.cpp: errors on every VM backend (DESIGN.md sections
// 3-5): remote exceptions, unregistered functions and bad input.
#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "backends_support.hpp"

using namespace backends;
using Catch::Matchers::Contains;

// ---- remote errors -----------------------------------------------------------

TEST_CASE("remote errors: a std exception comes back as coop::RemoteError with type, message and host") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(1, 2, 4);
  INFO("backend " << backend << ", " << n << " slots");
  auto vm = cos_test::make_vm(backend, n);
  coop::HostId host = vm->hosts()[0];
  coop::run(
      [&] {
        auto t = coop::spawn(remote, throw_invalid, std::string("bad input"));
        try {
          t.join();
          FAIL("join did not throw");
        } catch (const coop::RemoteError& e) {
          CHECK(e.type() == "std::invalid_argument");
          CHECK(e.message() == "bad input");
          CHECK(e.host() == host);
          CHECK_THAT(e.what(), Contains("std::invalid_argument") && Contains("bad input"));
        }
      },
      coop::Options{.vm = vm});
  CHECK(cos_test::no_children());
}

TEST_CASE("remote errors: a non-std exception (throw 42) comes back with type int") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto t = coop::spawn(remote, throw_int, 42);
        try {
          t.join();
          FAIL("join did not throw");
        } catch (const coop::RemoteError& e) {
          CHECK(e.type() == "int");
          CHECK(e.host().has_value());
        }
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("remote errors: Joined::get rethrows coop::RemoteError, and siblings are undisturbed") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto ok1 = coop::spawn(remote, nap, 10, 1);
        auto bad = coop::spawn(remote, throw_invalid, std::string("x"));
        auto ok2 = coop::spawn(remote, nap, 10, 2);
        std::vector<coop::Tid> among{bad.tid()};
        auto j = coop::join(among);
        REQUIRE(j);
        CHECK(j->host.has_value());
        CHECK_THROWS_AS(j->get<int>(), coop::RemoteError);
        CHECK(ok1.join() == 1);
        CHECK(ok2.join() == 2);
        CHECK(coop::spawn(remote, square, 9).join() == 81);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

// ---- unregistered functions --------------------------------------------------

TEST_CASE("unregistered: a remote spawn of an unregistered function throws coop::NotRegistered at the spawn") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        CHECK_THROWS_AS(coop::spawn(remote, unregistered_cube, 2), coop::NotRegistered);
        CHECK_THROWS_AS(coop::spawn(coop::Spawn{.remote = true, .block = false}, unregistered_cube, 2),
                        coop::NotRegistered);
        CHECK(coop::Scheduler::current().remote_task_count() == 0);
        CHECK(coop::Scheduler::current().free_slots() == 1);
        CHECK_FALSE(coop::join().has_value());  // no task was made
        CHECK(coop::spawn(remote, square, 2).join() == 4);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("unregistered: coop::NotRegistered names the function") {
  // DESIGN.md section 3: "throws coop::NotRegistered naming it".
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        try {
          coop::spawn(remote, unregistered_cube, 2);
          FAIL("the spawn did not throw");
        } catch (const coop::NotRegistered& e) {
          CHECK_THAT(e.function(), Contains("unregistered_cube"));
          CHECK_THAT(e.what(), Contains("unregistered_cube"));
        }
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("unregistered: without a VM the same spawn runs locally") {
  coop::run([] {
    auto t = coop::spawn(remote, unregistered_cube, 3);
    CHECK_FALSE(t.remote());
    CHECK(t.join() == 27);
  });
}

// ---- bad input -----------------------------------------------------------------

TEST_CASE("vm: a finalized VM has no slots and refuses every start") {
  // The VM contract (vm.hpp): "afterwards slots() is 0 and start() throws".
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, 2);
  vm->finalize();
  CHECK(vm->slots() == 0);
  CHECK(vm->free_slots() == 0);
  CHECK(vm->hosts_with_free_slots().empty());
  CHECK_THROWS_AS(vm->start(coop::Call{"square", ""}, std::nullopt), coop::Error);
  vm->finalize();  // idempotent
  CHECK(vm->slots() == 0);
  CHECK(cos_test::no_children());
}

TEST_CASE("bad input: a remote spawn the VM refuses leaves no task and uses no tid") {
  // A finalized VM refuses every start. A VM that keeps the contract above
  // has no free slot then, so the spawn finds none rather than being refused
  // by start(); either way the spawn must leave nothing behind.
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, 1);
  vm->finalize();
  coop::run(
      [] {
        CHECK_THROWS_AS(coop::spawn(remote, square, 2), coop::Error);
        CHECK(coop::Scheduler::current().remote_task_count() == 0);
        CHECK_FALSE(coop::join().has_value());
        CHECK(coop::spawn([] { return 1; }).tid() == 2);
      },
      coop::Options{.vm = vm});
}

TEST_CASE("bad input: a VM of zero or negative slots throws coop::Error") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(0, -1, -100);
  INFO("backend " << backend << ", " << n << " slots");
  CHECK_THROWS_AS(cos_test::make_vm(backend, n), coop::Error);
  CHECK(cos_test::no_children());
}

TEST_CASE("bad input: a VM with no hosts or a host without slots throws coop::Error") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  // VM({}) picks the VM(int) constructor with 0 slots (an empty brace list
  // converts to int exactly); either way it is an error.
  if (backend == "thread") {
    CHECK_THROWS_AS(coop::ThreadVM({}), coop::Error);
  } else if (backend == "process") {
    CHECK_THROWS_AS(coop::ProcessVM({}), coop::Error);
  } else {
    // An MpiVM takes its hosts from the job, not from a map: the same
    // mistakes are a rank list that is empty, names rank 0 or a rank the
    // job does not have, or names a rank twice.
    const int size = coop::mpi_size();
    for (auto ranks : {std::vector<int>{}, std::vector<int>{0}, std::vector<int>{size}, std::vector<int>{1, 1}}) {
      CHECK_THROWS_AS(coop::MpiVM(cos_test::mpi_options(backend, ranks)), coop::Error);
    }
    CHECK_THROWS_WITH(coop::MpiVM(cos_test::mpi_options(backend, {size})), Contains("rank " + std::to_string(size)));
    CHECK_THROWS_WITH(coop::MpiVM(cos_test::mpi_options(backend, {1, 1})), Contains("twice"));
    CHECK(cos_test::no_children());
    return;
  }
  CHECK_THROWS_AS(cos_test::make_vm(backend, std::map<std::string, int>{}), coop::Error);
  CHECK_THROWS_AS(cos_test::make_vm(backend, {{"a", 2}, {"b", 0}}), coop::Error);
  CHECK_THROWS_AS(cos_test::make_vm(backend, {{"a", -1}}), coop::Error);
  CHECK_THROWS_WITH(cos_test::make_vm(backend, {{"a", 2}, {"b", 0}}), Contains("'b'"));
  CHECK(cos_test::no_children());
}

TEST_CASE("bad input: Spawn{.retries = -1} throws coop::Error and makes no task") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        CHECK_THROWS_AS(coop::spawn(coop::Spawn{.remote = true, .retries = -1}, square, 2), coop::Error);
        CHECK(coop::Scheduler::current().remote_task_count() == 0);
        CHECK_FALSE(coop::join().has_value());
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("bad input: a zero or negative timeout throws coop::Error") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  auto timeout = GENERATE(as<std::chrono::nanoseconds>{}, 0ns, -1ns, -5ms);
  INFO("backend " << backend << ", timeout " << timeout.count() << " ns");
  coop::run(
      [timeout] {
        CHECK_THROWS_AS(coop::spawn(coop::Spawn{.remote = true, .timeout = timeout}, square, 2), coop::Error);
        CHECK(coop::Scheduler::current().remote_task_count() == 0);
        CHECK_FALSE(coop::join().has_value());
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("bad input: set_vm while remote tasks run throws coop::Error") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [&] {
        auto t = coop::spawn(remote, nap, 30, 1);
        CHECK_THROWS_AS(coop::Scheduler::current().set_vm(cos_test::make_vm(backend, 1)), coop::Error);
        CHECK(t.join() == 1);
        coop::Scheduler::current().set_vm(cos_test::make_vm(backend, 3));
        CHECK(coop::Scheduler::current().slots() == 3);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}
