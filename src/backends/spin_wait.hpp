// spin_wait.hpp: AdaptiveSpin, a short busy wait before a thread sleeps.
#pragma once

#include <sched.h>

#include <chrono>

#include <cos/timing.hpp>

namespace coop::detail {

// AdaptiveSpin polls a condition for a short window before its caller goes
// to sleep on a condition variable. When the other side answers within the
// window (a slot's thread handing back an empty call, the scheduler handing
// it the next), the waiter never sleeps, so neither side pays for a futex
// sleep and wake-up: on ThreadVM that wake-up was the largest cost of an
// empty call on the scheduler's thread. Between polls it yields the CPU
// (sched_yield) rather than pausing: with more threads than cores (a
// scheduler and two slots on two cores) a pausing spinner would hold the
// core the other side needs to answer. When the answer did not come within
// the window the last time (long calls, an idle slot), waits go straight to
// sleep, except one in 16, which tries the window again: a waiter of long
// calls burns almost nothing.
class AdaptiveSpin {
 public:
  explicit AdaptiveSpin(std::chrono::nanoseconds window) : window_(window) {}

  // wait(ready) returns true once ready() holds within the window, false
  // when the caller must sleep (ready() may still hold by then).
  template <class Ready> bool wait(Ready&& ready) {
    // Ready at once says nothing of how long a wait takes: no spin, no count.
    if (ready()) return true;
    if (misses_ > 0 && (misses_++ & 15) != 0) return false;
    auto end = clock::now() + window_;
    for (;;) {
      if (ready()) {
        misses_ = 0;
        return true;
      }
      if (clock::now() >= end) break;
      sched_yield();
    }
    misses_ = 1;
    return false;
  }

 private:
  std::chrono::nanoseconds window_;
  unsigned misses_ = 0;
};

}  // namespace coop::detail
