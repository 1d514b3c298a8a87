// vm_contract_test.cpp: what every backend owes the layers above (vm.hpp's
// contract) checked where the process backend needs no worker program:
// typed failures from execute() and ThreadVM, and ThreadVM's bounded finalize.
#include <cos/cos.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;
using Catch::Contains;
using coop::Message;

namespace {

int twice(int x) { return 2 * x; }
COS_REMOTE(twice);

int refuse(int x) { throw std::domain_error("no " + std::to_string(x)); }
COS_REMOTE(refuse);

// stuck() does not return until the test releases it (or 60 s pass, so that
// a broken test cannot keep a thread forever).
std::atomic<bool> stuck_entered{false};
std::atomic<bool> stuck_release{false};
std::atomic<bool> stuck_left{false};
int stuck(int x) {
  stuck_entered = true;
  auto give_up = coop::clock::now() + 60s;
  while (!stuck_release && coop::clock::now() < give_up) std::this_thread::sleep_for(1ms);
  stuck_left = true;
  return x;
}
COS_REMOTE(stuck);

template <class... A> coop::Call call(const char* fn, A... args) {
  return coop::Call{fn, coop::detail::to_bytes(std::tuple<A...>(args...))};
}

// FinalizeTimeout sets COS_FINALIZE_TIMEOUT for its lifetime.
struct FinalizeTimeout {
  explicit FinalizeTimeout(const char* seconds) { ::setenv("COS_FINALIZE_TIMEOUT", seconds, 1); }
  ~FinalizeTimeout() { ::unsetenv("COS_FINALIZE_TIMEOUT"); }
};

// release_stuck() lets a stuck() that a finalize detached return, and waits
// until its thread has pushed its message into the freed-by-now VM's state.
void release_stuck() {
  stuck_release = true;
  auto deadline = coop::clock::now() + 5s;
  while (!stuck_left && coop::clock::now() < deadline) std::this_thread::sleep_for(1ms);
  CHECK(stuck_left);
  std::this_thread::sleep_for(50ms);  // the thread returns through the VM's code
}

void reset_stuck() {
  stuck_entered = false;
  stuck_release = false;
  stuck_left = false;
}

Message receive_one(coop::VM& vm) {
  auto m = vm.receive(5s);
  REQUIRE(m);
  return *m;
}

}  // namespace

TEST_CASE("execute: success and an exception and an unknown function are told apart by Failure") {
  Message ok = coop::detail::execute(call("twice", 21));
  CHECK(ok.ok);
  CHECK(ok.failure == Message::Failure::none);
  int v = 0;
  coop::detail::from_bytes(ok.payload, v);
  CHECK(v == 42);

  Message threw = coop::detail::execute(call("refuse", 3));
  CHECK_FALSE(threw.ok);
  CHECK(threw.failure == Message::Failure::exception);
  CHECK(threw.error_type == "std::domain_error");
  CHECK(threw.payload == "no 3");

  Message unknown = coop::detail::execute(coop::Call{"no_such_function", ""});
  CHECK_FALSE(unknown.ok);
  CHECK(unknown.failure == Message::Failure::not_registered);
  CHECK(unknown.error_type == "coop::NotRegistered");
  CHECK(unknown.payload == "no_such_function");
}

TEST_CASE("thread vm: messages carry the Failure of each result") {
  coop::ThreadVM vm(1);
  REQUIRE(vm.start(call("twice", 1), {}));
  Message m = receive_one(vm);
  CHECK(m.kind == Message::Kind::result);
  CHECK(m.failure == Message::Failure::none);
  CHECK(m.ok);

  REQUIRE(vm.start(call("refuse", 1), {}));
  m = receive_one(vm);
  CHECK(m.failure == Message::Failure::exception);
  CHECK(m.error_type == "std::domain_error");
  CHECK_FALSE(m.ok);

  REQUIRE(vm.start(coop::Call{"no_such_function", ""}, {}));
  m = receive_one(vm);
  CHECK(m.failure == Message::Failure::not_registered);
  CHECK(m.payload == "no_such_function");
  CHECK_FALSE(m.ok);
  CHECK(vm.free_slots() == 1);
}

TEST_CASE("thread vm: receive with a negative timeout returns at once when no task runs") {
  coop::ThreadVM vm(2);
  auto t0 = coop::clock::now();
  CHECK_FALSE(vm.receive(-1ns));
  CHECK(coop::clock::now() - t0 < 100ms);
}

TEST_CASE("thread vm: finalize with a task that never returns ends within its bound and names the task") {
  reset_stuck();
  FinalizeTimeout limit("0.3");
  auto vm = std::make_unique<coop::ThreadVM>(2);
  auto id = vm->start(call("stuck", 5), {});
  REQUIRE(id);
  while (!stuck_entered) std::this_thread::sleep_for(1ms);
  cos_test::StderrCapture err;
  auto t0 = coop::clock::now();
  vm->finalize();
  auto took = coop::clock::now() - t0;
  err.restore();
  CHECK(took >= 250ms);
  CHECK(took < 1300ms);
  CHECK_THAT(err.text(), Contains("task " + std::to_string(id->value()) + " (stuck)"));
  CHECK_THAT(err.text(), Contains("detached"));
  CHECK_THROWS_AS(vm->start(call("twice", 1), {}), coop::Error);
  vm.reset();
  // The detached thread returns into state the VM no longer owns alone.
  release_stuck();
}

TEST_CASE("thread vm: a scheduler whose remote task never returns still ends within the bound") {
  reset_stuck();
  FinalizeTimeout limit("0.3");
  cos_test::StderrCapture err;
  auto t0 = coop::clock::now();
  coop::run(
      [] {
        auto t = coop::spawn(coop::Spawn{.remote = true, .timeout = 50ms}, stuck, 1);
        CHECK_THROWS_AS(t.join(), coop::Timeout);
      },
      coop::Options{.vm = std::make_shared<coop::ThreadVM>(1)});
  auto took = coop::clock::now() - t0;
  err.restore();
  CHECK(took < 1500ms);
  CHECK_THAT(err.text(), Contains("(stuck)"));
  release_stuck();
}

TEST_CASE("thread vm: finalize waits for a task that returns within the bound") {
  reset_stuck();
  coop::ThreadVM vm(1);
  REQUIRE(vm.start(call("stuck", 1), {}));
  while (!stuck_entered) std::this_thread::sleep_for(1ms);
  std::thread releaser([] {
    std::this_thread::sleep_for(100ms);
    stuck_release = true;
  });
  cos_test::StderrCapture err;
  vm.finalize();
  err.restore();
  releaser.join();
  CHECK(stuck_left);
  CHECK(err.text().empty());
}

TEST_CASE("thread vm: a bad COS_FINALIZE_TIMEOUT is a coop::Error naming it") {
  const char* bad = GENERATE("abc", "-1", "0", "2s");
  FinalizeTimeout limit(bad);
  CHECK_THROWS_AS(coop::ThreadVM(1), coop::Error);
  CHECK_THROWS_WITH(coop::ThreadVM(1), Contains("COS_FINALIZE_TIMEOUT") && Contains(bad));
}
