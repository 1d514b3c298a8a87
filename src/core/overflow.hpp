// overflow.hpp: a fault in the guard page below a task's stack, turned into
// a message that names the task instead of a bare SIGSEGV.
#pragma once

#include <signal.h>

namespace coop::detail {

// OverflowGuard gives the constructing thread an alternate signal stack and
// makes sure the process's SIGSEGV and SIGBUS handler is cos's, which, for
// a fault in the guard page of the task running on this thread, writes
//   cos: task 7 overflowed its 65536-byte stack (it hit the guard page below it) ...
// on stderr and lets the fault kill the program (SIGSEGV, as before). Any
// other fault goes to the handler that was there before (or the default).
// One per scheduler with guard pages; not thread-safe (its thread only).
class OverflowGuard {
 public:
  OverflowGuard();
  ~OverflowGuard();
  OverflowGuard(const OverflowGuard&) = delete;
  OverflowGuard& operator=(const OverflowGuard&) = delete;

 private:
  void* altstack_ = nullptr;  // ours, when the thread had none
  stack_t old_{};
};

}  // namespace coop::detail
