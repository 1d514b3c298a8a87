// engine.hpp: the local core, behind coop::Scheduler: task records, context
// switches, stacks, timers, joins and drain. Remote tasks reach it only
// through the seam of external.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/context/detail/fcontext.hpp>

#include <cos/detail/core.hpp>
#include <cos/join.hpp>
#include <cos/scheduler.hpp>

#include "core/external.hpp"
#include "core/overflow.hpp"
#include "core/ring.hpp"
#include "core/stack_pool.hpp"
#include "core/task_record.hpp"
#include "core/tid_table.hpp"

namespace coop::detail {

using boost_transfer_t = boost::context::detail::transfer_t;

inline std::string task_name(Tid tid) { return "task " + std::to_string(tid); }

// Engine owns every task of one scheduler and the loop that runs them.
//
// Switches are direct: a task that gives up the CPU jumps straight to the
// next ready task. Only when nothing is ready, or when timers or the VM are
// due a look, does it jump to the loop context (tid 0), which fires timers,
// polls or blocks in the VM, and resumes the next ready task. Every jump
// carries the record of the task that left, so the resumed side can save that
// task's context or, if it ended, recycle its stack.
class Engine {
 public:
  explicit Engine(Options options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  static Engine* current() noexcept;
  // overflow_at() says whether a fault at `address` is in the guard page (or
  // up to `reach` bytes below it) of the stack of the task running on this
  // thread, and which task that is. Async-signal-safe: for the fault handler.
  static bool overflow_at(const void* address, std::size_t reach, long long& tid, std::size_t& size) noexcept;
  static Engine& current_checked(const char* what);  // throws coop::Error outside a scheduler

  // Tasks.
  LocalSpawn prepare_local(std::size_t size, std::size_t align, RunFn run);
  TaskRef start_local(TaskRecord* rec);
  void start_detached(TaskRecord* rec, bool now);
  void on_done(const TaskRef& ref, DoneHook* hook);
  void abandon_local(const LocalSpawn& spawn) noexcept;
  TaskInfo info_of(const TaskRef& ref) const;
  TaskRecord* join_task(const TaskRef& ref);
  TaskRecord* join_among(std::span<const Tid> among, Wait wait);
  void release(TaskRecord* rec) noexcept;
  // wait_any() yields until one of the calling task's children in `refs`
  // has ended (or `deadline` passes) without joining it; returns the index
  // of the oldest ended one, -1 on timeout. A joined task counts as ended.
  int wait_any(const TaskRef* refs, std::size_t n, const clock::time_point* deadline);

  // System calls of the running task.
  void yield();
  void sleep_until(clock::time_point deadline);
  Tid current_tid() const { return current_->tid; }

  // The seam to the remote layer (external.hpp). add_external() makes a
  // child of the running task that runs elsewhere (blocked until ended), or
  // with `detached` one that nobody joins (as start_detached);
  // remove_external() undoes one that could not start, tid included.
  TaskRecord* add_external(External* external, bool detached = false);
  void remove_external(TaskRecord* rec) noexcept;
  // end_external() ends an external task: with `error`, or with the value
  // already put in rec->value.
  void end_external(TaskRecord* rec, std::exception_ptr error);
  // add_timer() calls fn(context, rec, tid, token) once `deadline` passes.
  void add_timer(clock::time_point deadline, TimerFn fn, void* context, TaskRecord* rec,
                 std::uint64_t token);
  // set_events() gives the loop its other source of events (nullptr: none).
  void set_events(EventSource* events) { events_ = events; }
  bool cancel(const TaskRef& ref);
  std::uint64_t serial() const { return serial_; }

  // Parking, for synchronisation built on the scheduler (streams): park()
  // blocks the running task until unpark() makes it ready again.
  TaskRecord* running() const { return current_; }
  void park() { block(WaitKind::park); }
  void unpark(TaskRecord* rec) {
    if (rec->state == State::blocked && rec->wait == WaitKind::park) wake(rec);
  }

  // Scheduler queries and drain.
  void drain();
  std::size_t task_count() const { return live_; }
  std::size_t finished_unjoined() const { return current_->finished.size(); }
  TaskInfo record_info(const TaskRecord* rec) const;

 private:
  // A timer wakes a sleeping task or, with `fn`, calls the layer that added it.
  struct Timer {
    clock::time_point deadline;
    std::uint64_t seq;  // FIFO among equal deadlines
    TaskRecord* rec;
    Tid tid;
    TimerFn fn;
    void* context;
    std::uint64_t token;
    bool operator>(const Timer& o) const {
      return deadline != o.deadline ? deadline > o.deadline : seq > o.seq;
    }
  };

  TaskRecord* new_record();
  void recycle(TaskRecord* rec) noexcept;
  void maybe_recycle(TaskRecord* rec) noexcept;
  void drop(TaskRecord* rec) noexcept;  // unjoinable from now on; keeps its error for the report

  void wake(TaskRecord* rec);
  void block(WaitKind why);  // parks the running task until wake()
  void suspend();            // the running task is queued or parked: run another
  TaskRecord* next_to_run();
  void switch_to(TaskRecord* next);
  void resumed(void* from_ctx, void* from_rec);
  [[noreturn]] void finish_current();
  void child_finished(TaskRecord* child);
  void ended(TaskRecord* rec);  // bookkeeping of any task that ended
  void check_canary(const TaskRecord* rec) const {
    if (rec->stack && !StackPool::intact(rec->stack)) [[unlikely]] overflowed(rec);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void overflowed(const TaskRecord* rec) const;

  static void task_entry(boost_transfer_t t);
  static void loop_entry(boost_transfer_t t);
  [[noreturn]] void loop();
  bool service(bool may_block);
  void fire_timers();
  void fire(const Timer& timer);

  bool events_busy() const { return events_ && events_->busy(); }
  void wake_stalled();
  void report_lost() noexcept;
  [[noreturn]] void join_error(Tid tid, const TaskRecord* rec) const;

  Options options_;
  std::uint64_t serial_;
  StackPool stacks_;
  std::optional<OverflowGuard> overflow_guard_;  // with guard pages
  EventSource* events_ = nullptr;

  TaskRecord main_;        // tid 1, runs on the thread's own stack
  TaskRecord loop_;        // tid 0, the loop context
  TaskRecord* current_;
  EhGlobals* eh_;  // this thread's C++ exception state, swapped per task
  Ring<TaskRecord*> ready_;
  TidTable<TaskRecord> table_;
  Tid next_tid_ = 2;
  std::size_t live_ = 1;  // unfinished tasks, main included

  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::uint64_t timer_seq_ = 0;
  int poll_budget_ = 0;


  std::vector<std::unique_ptr<TaskRecord[]>> chunks_;
  TaskRecord* free_records_ = nullptr;
  std::vector<std::pair<Tid, std::exception_ptr>> lost_;  // errors no join can collect now
};

}  // namespace coop::detail
