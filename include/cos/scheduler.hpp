// scheduler.hpp: Scheduler, its Options, and run().
#pragma once

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <cos/export.hpp>
#include <cos/storage.hpp>

namespace coop {

class VM;

// Options of a Scheduler.
struct Options {
  // vm runs remote tasks; nullptr means no remote slots (remote spawns then
  // run as local microthreads, as in PyOPUS).
  std::shared_ptr<VM> vm{};
  // stack_size is the stack of each local task, rounded up to whole pages;
  // at least 16 KiB. Pages are committed only when a task touches them.
  std::size_t stack_size = 64 * 1024;
  // guard_pages puts an inaccessible page below every stack: an overflow
  // faults at once and stops the program with a message naming the task
  // ("cos: task 7 overflowed its 65536-byte stack ...") and SIGSEGV. It costs
  // nothing per spawn on a reused stack, an mprotect per fresh one (about
  // +40% on creating a stack), and two kernel mappings per live stack, so
  // at most about 32,000 tasks alive at once under Linux's default
  // vm.max_map_count: hence off by default. Without it, a canary at the
  // bottom of each stack is checked when the task next switches or ends and
  // stops the program with the same message if it was overwritten; an
  // overflow that skips over the canary (one large frame), or that crashes
  // before the task switches, is not caught. Turn it on while developing.
  bool guard_pages = false;
  // mirrors are directories of this process that remote tasks find copied
  // on their host (coop::Mirror, cos/storage.hpp); to_abstract() and
  // to_actual() translate paths inside them.
  std::vector<Mirror> mirrors{};
};

// Scheduler runs microthreads on the thread that constructs it; that thread's
// code becomes the main task (tid 1). One per thread; schedulers on different
// threads are independent. Not thread-safe: every member is called from the
// scheduler's own thread (its tasks, or the code that made it).
//
// Example:
//   coop::Scheduler sched;
//   auto t = coop::spawn([] { return 1; });
//   t.join();
class COS_API Scheduler {
 public:
  // Makes this thread's scheduler; never blocks. Throws coop::Error when this
  // thread already has a scheduler, for a bad stack size, or when a VM is
  // given and COS_REMOTE registered a name twice.
  explicit Scheduler(Options options = {});
  // Runs every unfinished task to the end (drain(): the thread blocks while
  // remote tasks run), reports exceptions that no join collected on stderr,
  // then finalizes the VM (which may block, as the VM says). Call it from
  // the main task. It never terminates the program: what it cannot finish
  // (a drain from another task, a VM that fails to finalize) is reported on
  // stderr.
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // current() is this thread's scheduler; throws coop::Error when there is none.
  static Scheduler& current();
  // current_or_null() is this thread's scheduler, or nullptr.
  static Scheduler* current_or_null() noexcept;

  // set_vm() replaces the VM (nullptr: none); never yields. Throws
  // coop::Error while remote tasks are queued or run, and when COS_REMOTE
  // registered a name twice. The old VM is not finalized (its owner's to do).
  void set_vm(std::shared_ptr<VM> vm);
  const std::shared_ptr<VM>& vm() const;

  // The counts never yield nor block. slots() and free_slots() are the VM's
  // counts; -1 when there is no VM.
  int slots() const;
  int free_slots() const;

  // task_count() counts unfinished tasks, the main task included;
  // local_task_count() the local ones (main included), remote_task_count() the
  // remote ones (queued or running).
  std::size_t task_count() const;
  std::size_t local_task_count() const;
  std::size_t remote_task_count() const;
  // finished_unjoined() counts the calling task's children that ended and
  // wait to be joined (PyOPUS's finishedTasks).
  std::size_t finished_unjoined() const;

  // drain() yields until every task but the main task has ended (the thread
  // blocks only while nothing but remote tasks or timers remain). Only the
  // main task may call it (coop::Error otherwise); the destructor calls it.
  void drain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// run() makes a Scheduler on this thread, calls `main` as task 1, drains every
// other task, and returns what `main` returned (or rethrows what it threw,
// after the drain). It blocks the calling thread until then; the thread must
// not have a scheduler already (coop::Error).
template <class F> auto run(F&& main, Options options = {}) {
  using R = std::invoke_result_t<F&>;
  Scheduler sched(std::move(options));
  std::exception_ptr error;
  if constexpr (std::is_void_v<R>) {
    try {
      std::invoke(main);
    } catch (...) {
      error = std::current_exception();
    }
    sched.drain();
    if (error) std::rethrow_exception(error);
  } else {
    std::optional<R> result;
    try {
      result.emplace(std::invoke(main));
    } catch (...) {
      error = std::current_exception();
    }
    sched.drain();
    if (error) std::rethrow_exception(error);
    return std::move(*result);
  }
}

}  // namespace coop
