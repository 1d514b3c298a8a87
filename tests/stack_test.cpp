// stack_test.cpp: what happens when a task overflows its stack, with and
// without guard pages (each case runs in a forked child, since it ends the
// program on purpose).
#include <cos/cos.hpp>

#include <signal.h>

#include <cstdint>
#include <cstring>

#include <catch2/catch.hpp>

#include "test_support.hpp"

using Catch::Matchers::Contains;

namespace {

// recurse() uses about 1 KiB of stack per level, so that any depth beyond
// the stack's size overflows it.
[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[1024];
  std::memset(const_cast<char*>(frame), depth & 0xff, sizeof frame);
  if (depth == 0) return frame[0];
  return recurse(depth - 1) + frame[depth % sizeof frame];
}

}  // namespace

TEST_CASE("stacks: with guard pages an overflow stops the program with a message naming the task") {
  cos_test::StderrCapture err;
  auto r = cos_test::in_child([] {
    coop::run([] { coop::spawn([] { return recurse(1000); }).join(); },
              coop::Options{.stack_size = 64 * 1024, .guard_pages = true});
    return 0;
  });
  err.restore();
  CHECK_FALSE(r.exited);
  CHECK(r.code == SIGSEGV);
  CHECK_THAT(err.text(), Contains("cos: task 2 overflowed its 65536-byte stack") && Contains("guard page"));
}

TEST_CASE("stacks: with guard pages a fault that is not an overflow stays a plain crash") {
  cos_test::StderrCapture err;
  auto r = cos_test::in_child([] {
    coop::run([] {
      coop::spawn([] {
        volatile int* nowhere = nullptr;
        return *nowhere;
      }).join();
    }, coop::Options{.guard_pages = true});
    return 0;
  });
  err.restore();
  CHECK_FALSE(r.exited);
  CHECK(r.code == SIGSEGV);
  CHECK_THAT(err.text(), !Contains("overflowed"));
}

TEST_CASE("stacks: a task that does not overflow runs with guard pages, many times over") {
  int sum = 0;
  coop::run([&] {
    for (int i = 0; i < 100; ++i) sum += coop::spawn([] { return recurse(20) >= 0 ? 1 : 0; }).join();
  }, coop::Options{.guard_pages = true});
  CHECK(sum == 100);
}

TEST_CASE("stacks: without guard pages the canary catches a write over the stack's bottom at the next switch") {
  cos_test::StderrCapture err;
  auto r = cos_test::in_child([] {
    coop::run([] {
      coop::spawn([] {
        // The stack's top is the page boundary above this frame; its bottom
        // is stack_size below, where the canary lies.
        char here = 0;
        auto top = (reinterpret_cast<std::uintptr_t>(&here) + 4095) & ~std::uintptr_t(4095);
        auto* bottom = reinterpret_cast<volatile char*>(top - 64 * 1024);
        for (int i = 0; i < 64; ++i) bottom[i] = 0;
        coop::yield();
      }).join();
    }, coop::Options{.stack_size = 64 * 1024, .guard_pages = false});
    return 0;
  });
  err.restore();
  CHECK_FALSE(r.exited);
  CHECK(r.code == SIGABRT);
  CHECK_THAT(err.text(), Contains("cos: task 2 overflowed its 65536-byte stack"));
}
