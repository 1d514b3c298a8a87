// backends_values_test.cpp: remote spawns on every VM backend (DESIGN.md
// sections 3-5): values and user types through serialization, void and
// noexcept functions, task ids and hosts, nested schedulers, failures nobody
// joined, retries, lost workers and dispatch.
#include <catch2/catch.hpp>

#include <string>
#include <thread>

#include "backends_support.hpp"

using namespace backends;
using Catch::Matchers::Contains;

TEST_CASE("remote: a task's value comes back from a slot") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(1, 2, 4);
  INFO("backend " << backend << ", " << n << " slots");
  std::string here = where();
  coop::run(
      [&] {
        auto t = coop::spawn(remote, square, 7);
        CHECK(t.valid());
        CHECK(t.remote());
        CHECK(t.join() == 49);
        CHECK(coop::spawn(remote, where).join() != here);  // another thread, or another process
      },
      coop::Options{.vm = cos_test::make_vm(backend, n)});
  CHECK(cos_test::no_children());
}

TEST_CASE("remote: a user type with a serialize member travels both ways") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        Point p{1.5, -2, "p"};
        CHECK(coop::spawn(remote, scale, p, 2.0).join() == Point{3, -4, "p*2"});
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("remote: std::vector, std::string and std::map travel both ways") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto v = coop::spawn(remote, reversed, std::vector<int>{1, 2, 3, 4});
        auto m = coop::spawn(remote, count_words, std::string("a b a c a b"));
        auto g = coop::spawn(remote, group, std::vector<Point>{{1, 1, "x"}, {2, 2, "y"}, {3, 3, "x"}});
        auto empty = coop::spawn(remote, reversed, std::vector<int>{});
        CHECK(v.join() == std::vector<int>{4, 3, 2, 1});
        CHECK(m.join() == std::map<std::string, int>{{"a", 3}, {"b", 2}, {"c", 1}});
        auto groups = g.join();
        REQUIRE(groups.size() == 2);
        CHECK(groups["x"] == std::vector<Point>{{1, 1, "x"}, {3, 3, "x"}});
        CHECK(groups["y"] == std::vector<Point>{{2, 2, "y"}});
        CHECK(empty.join().empty());
      },
      coop::Options{.vm = cos_test::make_vm(backend, 4)});
}

TEST_CASE("remote: a void function runs on a slot and its join returns") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  RunFile file;
  coop::run(
      [&] {
        auto t = coop::spawn(remote, touch, file.path(), 17);
        CHECK(t.remote());
        t.join();
        CHECK(file.lines() == std::vector<std::string>{"17"});
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("remote: several arguments are converted to the parameter types") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        // int, float -> double, const char* -> std::string, int -> long
        CHECK(coop::spawn(remote, describe, 2, 3.5f, "abc", 7).join() == "2|3.5|abc|7");
        std::string s = "moved";
        CHECK(coop::spawn(remote, describe, short{1}, 2, std::move(s), 4u).join() == "1|2|moved|4");
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("remote: a noexcept function can run remotely") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run([] { CHECK(coop::spawn(remote, twice, 21).join() == 42); },
            coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("remote: queued tasks that nobody joins still run before the scheduler ends") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  RunFile file;
  coop::run(
      [&] {
        coop::spawn(remote, nap, 20, 0);
        for (int id = 100; id < 105; ++id)
          coop::spawn(coop::Spawn{.remote = true, .block = false}, record_run, file.path(), id);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
  for (int id = 100; id < 105; ++id) CHECK(file.has(id));
}

TEST_CASE("remote: a running task reports that it is remote, its task id and its host") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, 2);
  REQUIRE(vm->hosts().size() == 1);
  coop::HostId host = vm->hosts()[0];
  coop::run(
      [&] {
        auto t = coop::spawn(remote, nap, 30, 1);
        CHECK(t.remote());
        CHECK_FALSE(t.done());
        CHECK(t.task_id().has_value());
        CHECK(t.host() == host);
        auto u = coop::spawn(remote, nap, 30, 2);
        CHECK(u.task_id() != t.task_id());
        CHECK(t.join() == 1);
        CHECK(t.done());
        CHECK(t.host() == host);  // still known after the join
        CHECK(t.task_id().has_value());
        auto j = coop::join();
        REQUIRE(j);
        CHECK(j->tid == u.tid());
        CHECK(j->host == host);
        CHECK(j->get<int>() == 2);
      },
      coop::Options{.vm = vm});
}

TEST_CASE("remote: a local child may spawn and join remote tasks of its own") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [] {
        auto child = coop::spawn([] {
          auto a = coop::spawn(remote, square, 3);
          auto b = coop::spawn(remote, square, 4);
          return a.join() + b.join();
        });
        CHECK(child.join() == 25);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("remote: a remote task may run a scheduler of its own in its slot") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run([] { CHECK(coop::spawn(remote, sum_of_squares, 4).join() == 1 + 4 + 9 + 16); },
            coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("remote: a failed remote task that nobody joined is reported on stderr at shutdown") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, 1);
  cos_test::StderrCapture err;
  coop::run([] { coop::spawn(remote, throw_invalid, std::string("nobody looked")); }, coop::Options{.vm = vm});
  err.restore();
  std::string text = err.text();
  CHECK_THAT(text, Contains("task 2"));
  CHECK_THAT(text, Contains("std::invalid_argument"));
  CHECK_THAT(text, Contains("nobody looked"));
}

TEST_CASE("retries: a task that does not fail runs once, whatever its retries") {
  // Retries follow coop::WorkerLost only; on a ThreadVM no slot is ever lost
  // (a thread cannot crash alone), so there it is all that retries can mean.
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  RunFile file;
  coop::run(
      [&] { CHECK(coop::spawn(coop::Spawn{.remote = true, .retries = 3}, record_run, file.path(), 5).join() == 5); },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
  CHECK(file.lines() == std::vector<std::string>{"5"});
}

TEST_CASE("retries: a crash gives coop::WorkerLost, or a new attempt with retries", "[crash]") {
  // Isolating backends only (ProcessVM, MpiVM with isolate): a task crashing
  // on a ThreadVM, or in an MPI rank without isolate, takes the whole
  // program (or job) with it, since a thread or a rank cannot die alone.
  // The mpi-inline run leaves this case out by its tag (tests/mpi/).
  auto backend = GENERATE(from_range(cos_test::crash_backends()));
  int n = GENERATE(1, 2, 4);
  INFO("backend " << backend << ", " << n << " slots");
  RunFile once;
  coop::run(
      [&] {
        auto lost = coop::spawn(remote, crash, std::string("segv"));
        CHECK_THROWS_AS(lost.join(), coop::WorkerLost);
        auto again = coop::spawn(remote, crash, std::string("segv"));
        CHECK_THROWS_WITH(again.join(), Contains("SIGSEGV"));
        auto retried = coop::spawn(coop::Spawn{.remote = true, .retries = 1}, crash_once, once.path());
        CHECK(retried.join() == 7);
        CHECK(coop::Scheduler::current().free_slots() == n);
      },
      coop::Options{.vm = cos_test::make_vm(backend, n)});
  CHECK(cos_test::no_children());
}

TEST_CASE("dispatch: hundreds of jobs on remote slots come back in job order") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  int n = GENERATE(1, 2, 4);
  INFO("backend " << backend << ", " << n << " slots");
  std::vector<int> got;
  coop::run(
      [&] {
        std::vector<coop::Job<int>> jobs;
        for (int i = 0; i < 300; ++i) jobs.push_back(coop::job(square, i));
        got = coop::dispatch(jobs);
      },
      coop::Options{.vm = cos_test::make_vm(backend, n)});
  REQUIRE(got.size() == 300);
  for (int i = 0; i < 300; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * i);
  CHECK(cos_test::no_children());
}
