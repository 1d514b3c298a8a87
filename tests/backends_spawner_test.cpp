// backends_spawner_test.cpp: spawner calls and this_host()/this_task_id()
// (DESIGN.md section 6) on every VM backend: calls that wait and posts that
// do not, both running as local tasks of the spawner's scheduler, failures
// that reach the task, a spawner that can no longer answer, and calls from
// inside a dispatch job.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <tuple>
#include <map>
#include <string>
#include <vector>

#include "backends_objects.hpp"
#include "backends_support.hpp"

using namespace backends;
using Catch::Matchers::Contains;

TEST_CASE("spawner calls: spawner_call runs in the spawner as a local task and returns its value") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  spawner_total = 0;
  spawner_tid = coop::invalid_tid;
  coop::run(
      [&] {
        auto a = coop::spawn(remote, call_spawner, 50);
        auto b = coop::spawn(remote, call_spawner, 50);
        int last_a = a.join();
        int last_b = b.join();
        CHECK(spawner_total == 100);  // the spawner's own variable
        CHECK(std::max(last_a, last_b) == 100);
        CHECK(spawner_tid > coop::main_tid);  // a spawned local task of this scheduler
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("spawner calls: outside a remote task both call f directly") {
  auto backend = GENERATE(from_range(cos_test::backends_and("none")));
  INFO("backend " << backend);
  spawner_total = 0;
  spawner_log_lines.clear();
  coop::Options options;
  if (backend != "none") options.vm = cos_test::make_vm(backend, 1);
  coop::run(
      [&] {
        CHECK(coop::spawner_call(add_to_total, 2) == 2);  // in the spawner itself
        coop::spawner_post(log_line, 7);
        CHECK(spawner_log_lines == std::vector<int>{7});
        // A remote spawn without a VM runs locally: its calls are direct too.
        CHECK(coop::spawn(remote, call_spawner, 3).join() == 5);
        CHECK_THROWS_AS(coop::spawner_call(spawner_fail, std::string("x")), std::invalid_argument);
      },
      options);
}

TEST_CASE("spawner calls: posts from one task arrive in order and do not wait") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  spawner_log_lines.clear();
  coop::run(
      [&] {
        auto a = coop::spawn(remote, post_spawner, 0, 500);
        auto b = coop::spawn(remote, post_spawner, 1000, 500);
        CHECK(a.join() == 500);
        CHECK(b.join() == 500);
        // Every post arrived before its task's result; they run as local
        // tasks behind the joins' wake-ups: let them.
        while (spawner_log_lines.size() < 1000) coop::sleep_for(1ms);
        std::vector<int> from_a, from_b;
        for (int i : spawner_log_lines) (i < 1000 ? from_a : from_b).push_back(i);
        REQUIRE(from_a.size() == 500);
        REQUIRE(from_b.size() == 500);
        for (int i = 0; i < 500; ++i) {
          REQUIRE(from_a[i] == i);
          REQUIRE(from_b[i] == 1000 + i);
        }
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("spawner calls: a spawner call that throws reaches the task as coop::RemoteError") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [&] {
        std::string got = coop::spawn(remote, call_spawner_fail).join();
        CHECK_THAT(got, Contains("std::invalid_argument|no more work|"));
        CHECK(got.back() != '|');  // the spawner's host is named
        CHECK(coop::spawn(remote, call_spawner_unregistered).join() ==
              "NotRegistered|backends::not_a_remote_function");
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("spawner calls: a spawner_post that throws is reported when the scheduler ends") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  cos_test::StderrCapture capture;
  coop::run([&] { coop::spawn(remote, post_fail).join(); }, coop::Options{.vm = cos_test::make_vm(backend, 1)});
  capture.restore();
  CHECK_THAT(capture.text(), Contains("spawner_post(spawner_fail)") && Contains("posted and failed"));
}

TEST_CASE("spawner calls: a task cancelled while its spawner call waits ends instead of hanging") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  spawner_release = false;
  RunFile file;
  coop::run(
      [&] {
        auto t = coop::spawn(remote, call_spawner_wait, file.path());
        while (file.lines().empty()) coop::sleep_for(1ms);
        coop::sleep_for(20ms);
        CHECK(t.cancel());
        CHECK_THROWS_AS(t.join(), coop::Cancelled);
        // The slot comes back while the spawner's side still waits: the
        // cancelled task did not hang in its call (a hang fails the test by
        // its CTest timeout).
        CHECK(coop::spawn(remote, square, 6).join() == 36);
        spawner_release = true;  // the spawner's side ends; its reply is dropped
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}

TEST_CASE("spawner calls: from inside a dispatch job") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  spawner_total = 0;
  coop::run(
      [&] {
        std::vector<coop::Job<int>> jobs;
        for (int i = 0; i < 20; ++i) jobs.push_back(coop::job(call_spawner, 5));
        std::vector<int> lasts = coop::dispatch(jobs);
        CHECK(lasts.size() == 20);
        CHECK(spawner_total == 100);
        CHECK(*std::max_element(lasts.begin(), lasts.end()) == 100);
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
}

TEST_CASE("where am I: this_host and this_task_id in a remote task, nullopt elsewhere") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [&] {
        CHECK(!coop::this_host());
        CHECK(!coop::this_task_id());
        CHECK(coop::spawn([] { return where_am_i(); }).join() == "none");
        auto t = coop::spawn(coop::Spawn{.remote = true, .host = coop::HostId("b")}, where_am_i);
        coop::TaskId id = *t.task_id();
        CHECK(t.join() == "b|" + std::to_string(id.value()));
      },
      coop::Options{.vm = cos_test::make_vm(backend, std::map<std::string, int>{{"a", 1}, {"b", 2}})});
  // Without a VM a remote spawn runs locally: nullopt there too.
  coop::run([] { CHECK(coop::spawn(remote, where_am_i).join() == "none"); });
}

TEST_CASE("vm contract: a task's posts arrive in order before its result, free nothing, and send to an ended task is dropped") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto vm = cos_test::make_vm(backend, 1);
  coop::Call call{"post_spawner", coop::detail::to_bytes(std::tuple<int, int>(0, 5))};
  std::optional<coop::TaskId> id = vm->start(call, std::nullopt);
  REQUIRE(id);
  std::vector<coop::Message> got;
  while (got.empty() || got.back().kind != coop::Message::Kind::result) {
    std::optional<coop::Message> m = vm->receive(std::chrono::seconds(10));
    REQUIRE(m);
    if (m->kind == coop::Message::Kind::started) continue;
    CHECK(m->task == *id);
    if (m->kind == coop::Message::Kind::post) {
      // A post frees nothing. (ProcessVM counts a slot free as soon as it has
      // read the result frame, which may come in the same read as the posts.)
      if (backend == "thread") CHECK(vm->free_slots() == 0);
      CHECK(m->host == vm->hosts()[0]);
      CHECK(!m->payload.empty());
    }
    got.push_back(std::move(*m));
  }
  REQUIRE(got.size() == 6);
  for (int i = 0; i < 5; ++i) CHECK(got[i].kind == coop::Message::Kind::post);
  std::vector<std::string> payloads;
  for (int i = 0; i < 5; ++i) payloads.push_back(got[i].payload);
  for (int i = 1; i < 5; ++i) CHECK(payloads[i] != payloads[i - 1]);  // five posts, each its own
  CHECK(vm->free_slots() == 1);
  vm->send(*id, "late bytes");            // the task has ended: dropped
  vm->send(coop::TaskId(9999), "stray");  // never started: dropped
  // The slot still serves, undisturbed by what was dropped.
  auto next = vm->start(coop::Call{"square", coop::detail::to_bytes(std::tuple<int>(7))}, std::nullopt);
  REQUIRE(next);
  std::optional<coop::Message> m;
  do {
    m = vm->receive(std::chrono::seconds(10));
    REQUIRE(m);
  } while (m->kind != coop::Message::Kind::result);
  int value = 0;
  coop::detail::from_bytes(m->payload, value);
  CHECK(value == 49);
  vm->finalize();
}

TEST_CASE("vm contract: a VM finalized while its task posts leaves the next VM on the same slots whole") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  auto receive_until = [](coop::VM& vm, coop::Message::Kind kind) {
    std::optional<coop::Message> m;
    do {
      m = vm.receive(std::chrono::seconds(10));
      REQUIRE(m);
    } while (m->kind != kind && m->kind != coop::Message::Kind::result);
    return *m;
  };
  {
    auto vm = cos_test::make_vm(backend, 1);
    REQUIRE(vm->start(coop::Call{"post_then_nap", coop::detail::to_bytes(std::tuple<int>(300))}, std::nullopt));
    CHECK(receive_until(*vm, coop::Message::Kind::post).kind == coop::Message::Kind::post);
    vm->finalize();  // while the task naps: it is stopped, or waited for where it cannot be
  }
  auto vm = cos_test::make_vm(backend, 1);
  REQUIRE(vm->start(coop::Call{"square", coop::detail::to_bytes(std::tuple<int>(6))}, std::nullopt));
  coop::Message m = receive_until(*vm, coop::Message::Kind::result);
  REQUIRE(m.kind == coop::Message::Kind::result);
  REQUIRE(m.failure == coop::Message::Failure::none);
  int value = 0;
  coop::detail::from_bytes(m.payload, value);
  CHECK(value == 36);
  vm->finalize();
}

TEST_CASE("spawner calls: they run in the spawner's own task_scratch and leave it as it was") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  coop::run(
      [&] {
        std::string mine = coop::task_scratch().string();
        // Two posts and a call of a function that yields in the spawner,
        // so that the three overlap there.
        CHECK(coop::spawn(remote, call_spawner_scratch).join() == mine);
        CHECK(coop::task_scratch().string() == mine);
        CHECK(std::filesystem::is_directory(mine));
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
}
