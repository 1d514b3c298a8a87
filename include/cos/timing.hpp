// timing.hpp: when a task was submitted, started, completed and received.
#pragma once

#include <chrono>

namespace coop {

using clock = std::chrono::steady_clock;

// Timing of one remote task or job, as IPython parallel keeps it per task.
// Local microthreads are not timed (reading the clock would double the cost of
// a spawn); their Timing stays at clock::time_point{}.
struct Timing {
  clock::time_point submitted{};  // the spawn asked for a slot
  clock::time_point started{};    // the slot began to run it
  clock::time_point completed{};  // the slot finished it
  clock::time_point received{};   // the scheduler took its result

  // run_time() is how long the slot worked on it (zero when not timed).
  clock::duration run_time() const { return completed - started; }
  // queue_time() is how long it waited for a slot.
  clock::duration queue_time() const { return started - submitted; }
};

}  // namespace coop
