// spin_wait.hpp: AdaptiveSpin, a short busy wait before a thread sleeps.
#pragma once

#include <sched.h>

#include <chrono>

#include <cos/timing.hpp>

namespace coop::detail {

// cpu_relax() tells the CPU that this is a spin (a few pauses between polls).
inline void cpu_relax() noexcept {
  for (int i = 0; i < 16; ++i) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
}

// AdaptiveSpin polls a condition for a short window before its caller goes
// to sleep on a condition variable. When the other side answers within the
// window (a slot's thread handing back an empty call, the scheduler handing
// it the next), the waiter never sleeps, so neither side pays for a futex
// sleep and wake-up: on ThreadVM that wake-up was the largest cost of an
// empty call on the scheduler's thread. Between polls it either pauses the
// CPU (keeps its core: for a waiter whose quick answer matters to every
// other thread) or yields it (sched_yield: with more threads than cores it
// gives the core to the thread that is to answer, but a yielder may wait out
// a time slice). When the answer did not come within the window the last
// time (long calls, an idle slot), waits go straight to sleep, except one in
// 16, which tries the window again: a waiter of long calls burns almost
// nothing. A wait that is ready at once neither spins nor counts.
class AdaptiveSpin {
 public:
  enum class Between { pause, yield };
  AdaptiveSpin(std::chrono::nanoseconds window, Between between)
      : window_(window), yield_(between == Between::yield) {}

  // wait(ready) returns true once ready() holds within the window, false
  // when the caller must sleep (ready() may still hold by then).
  template <class Ready> bool wait(Ready&& ready) {
    if (ready()) return true;  // says nothing of how long a wait takes
    if (misses_ > 0 && (misses_++ & 15) != 0) return false;
    auto end = clock::now() + window_;
    for (;;) {
      if (ready()) {
        misses_ = 0;
        return true;
      }
      if (clock::now() >= end) break;
      if (yield_) {
        sched_yield();
      } else {
        cpu_relax();
      }
    }
    misses_ = 1;
    return false;
  }

 private:
  std::chrono::nanoseconds window_;
  bool yield_;
  unsigned misses_ = 0;
};

}  // namespace coop::detail
