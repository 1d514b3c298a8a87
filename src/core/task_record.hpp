// task_record.hpp: the scheduler's bookkeeping of one task.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <cos/detail/core.hpp>
#include <cos/ids.hpp>
#include <cos/timing.hpp>

#include "core/external.hpp"
#include "core/finished_set.hpp"
#include "core/stack_pool.hpp"

namespace coop::detail {

enum class State : std::uint8_t { created, ready, running, blocked, finished };
enum class WaitKind : std::uint8_t { none, join, sleep, drain, park, watch };

// EhGlobals mirrors the C++ runtime's per-thread exception state
// (__cxa_eh_globals of the Itanium C++ ABI: the stack of exceptions being
// handled and the count of uncaught ones), saved and restored per task.
struct EhGlobals {
  void* caught = nullptr;
  unsigned int uncaught = 0;
};
extern "C" EhGlobals* __cxa_get_globals() noexcept;
inline EhGlobals* eh_globals() noexcept { return __cxa_get_globals(); }

// The FinishedNode base holds the tid and the links of the parent's FinishedSet.
struct TaskRecord : FinishedNode {
  TaskRecord* parent = nullptr;
  void* ctx = nullptr;  // the fcontext to resume; valid while suspended
  Stack stack;          // none for the main task and remote tasks
  RunFn run = nullptr;
  void* closure = nullptr;
  std::size_t closure_align = 0;  // non-zero: the closure is on the heap
  State state = State::created;
  WaitKind wait = WaitKind::none;
  // Counts the task's timed waits, so that a timer left over from an earlier
  // wait (one that ended before its deadline) wakes nothing.
  std::uint32_t wait_seq = 0;
  // released: no longer joinable (joined, or its parent ended); the record
  // is recycled once its stack is free and no child points at it.
  bool released = false;
  // detached: nobody joins it (an on_done callback); its parent is the main
  // task, which does not count it among its children.
  bool detached = false;
  std::uint32_t live_children = 0;  // children that have not ended
  DoneHook* done_hooks = nullptr;   // run when it ends, in order

  FinishedSet finished;  // children that ended and wait for a join

  // A blocking join: the tids it waits for (all children when among_n is 0),
  // and the child that woke it.
  const Tid* among = nullptr;
  std::size_t among_n = 0;
  TaskRecord* woken_by = nullptr;
  // wake_error is thrown by the blocking call when the scheduler wakes a task
  // that nothing else could ever wake.
  std::exception_ptr wake_error;

  ValueBox value;
  // A task that runs outside the core (a remote task): never on the ready
  // queue, ended by the layer that owns it. Owned; nullptr for local tasks.
  External* external = nullptr;

  TaskRecord* next_free = nullptr;
  EhGlobals eh;  // this task's exception state while it is switched out

#if defined(__SANITIZE_ADDRESS__)
  void* asan_fake_stack = nullptr;
  const void* asan_bottom = nullptr;
  std::size_t asan_size = 0;
#endif
};

}  // namespace coop::detail
