// time_slice.hpp: the calling thread's time slice under Linux's EEVDF
// scheduler (6.6 and later): asking for a shorter one, and reading it.
#pragma once

#include <chrono>
#include <cstdint>

#include <cos/export.hpp>

namespace coop::posix {

// ask_time_slice() asks for `slice` (Linux takes 100 µs to 100 ms) for the
// calling thread, which then takes a core at once when it wakes while a
// thread with a longer slice runs there (with the default, 0.7 ms times
// 1 + log2(cores), it may wait for that slice to end). For a thread that
// passes messages on and runs for microseconds at a time. What it starts
// (threads, forked processes) gets the default again (reset on fork); its
// nice value and policy stay. Best effort: a kernel that does not know it,
// or a real-time policy (whose parameters mean something else), is left as
// it is.
COS_API void ask_time_slice(std::chrono::nanoseconds slice) noexcept;

// time_slice() is the calling thread's slice as the kernel reports it
// (sched_getattr's runtime of a fair thread), or 0 when it reports none.
COS_API std::chrono::nanoseconds time_slice() noexcept;

}  // namespace coop::posix
