// core.hpp: the local core's entry points behind the templates of task.hpp
// and spawn.hpp. Private to cos: users call coop::spawn, Task<R>::join, ...
// No remote type reaches here: remote tasks are records of the core that the
// remote layer ends (src/core/external.hpp).
#pragma once

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <string>
#include <memory>
#include <optional>

#include <cos/detail/value_box.hpp>
#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/timing.hpp>

namespace coop::detail {

struct TaskRecord;  // a task's bookkeeping, owned by its scheduler
class Engine;       // a scheduler's implementation

// RunFn runs a task's closure, stores its value or exception in `out`, and
// destroys the closure.
using RunFn = void (*)(void* closure, ValueBox& out) noexcept;

// TaskRef is what a Task<R> handle holds: the record, and the tid and
// scheduler serial that prove the record still belongs to that task.
struct TaskRef {
  TaskRecord* rec = nullptr;
  Tid tid = invalid_tid;
  std::uint64_t serial = 0;
};

// A spawn in two steps: prepare_local() reserves a record, a stack and room
// for the closure; the caller constructs the closure there; start_local()
// switches to the child (child first). abandon_local() undoes a preparation
// whose closure could not be constructed.
struct LocalSpawn {
  Engine* engine;
  TaskRecord* rec;
  void* closure;
};
COS_API LocalSpawn prepare_local(std::size_t size, std::size_t align, RunFn run);
COS_API TaskRef start_local(const LocalSpawn& spawn);
COS_API void abandon_local(const LocalSpawn& spawn) noexcept;

// What a handle can ask about its task without joining it.
struct TaskInfo {
  bool remote = false;
  bool done = false;
  std::optional<HostId> host{};
  std::optional<TaskId> task_id{};
  Timing timing{};
  std::string output{};
};
COS_API TaskInfo info_of(const TaskRef& ref);

// join_task() waits (yielding) until the child ends and detaches its record
// from the parent. The caller takes the value, then release()s the record
// (a ReleaseGuard does it also when the value rethrows).
struct JoinedTask {
  Engine* engine;
  TaskRecord* rec;
  ValueBox* value;
  bool remote;
};
COS_API JoinedTask join_task(const TaskRef& ref);
COS_API void release(const JoinedTask& joined) noexcept;
// remote_info() is what a joined remote record reports about where it ran.
COS_API std::unique_ptr<TaskInfo> remote_info(const JoinedTask& joined);

// DoneHook runs when a task ends, in order of addition, before anything can
// join it: it may read the task's outcome (without taking it). The core
// deletes it after it ran (or when its scheduler ends first).
struct DoneHook {
  DoneHook* next = nullptr;
  virtual ~DoneHook() = default;
  // fire() runs the callback; `now`: the task had already ended when the
  // hook was added (the caller is running), otherwise it ends right now.
  virtual void fire(const ValueBox& outcome, bool now) noexcept = 0;
};
// on_done() adds a hook to the calling task's child; when the child has
// already ended the hook fires at once. Throws coop::Error for a task that
// is not the caller's child or was joined.
COS_API void on_done(const TaskRef& ref, DoneHook* hook);
// start_detached() starts a prepared local task that nobody joins: its
// exception is reported at shutdown. With `now` it runs at once (child
// first); otherwise it waits at the back of the ready queue.
COS_API void start_detached(const LocalSpawn& spawn, bool now);

// wait_any() yields until one of the calling task's children in refs[0..n)
// has ended or *deadline passes (nullptr: no limit), without joining it;
// returns the index of the oldest ended one (a joined one counts), or -1.
COS_API int wait_any(const TaskRef* refs, std::size_t n, const clock::time_point* deadline);

// cancel() stops a remote child: false when it had already ended. Throws
// coop::Error for a local child or a task that is not the caller's child.
COS_API bool cancel(const TaskRef& ref);

// Waiter parks one task until another task wakes it; streams are built on it.
class COS_API Waiter {
 public:
  void wait();    // parks the calling task until notify(); other tasks run
  void notify();  // makes the parked task ready; nothing when none is parked
  bool waiting() const { return rec_ != nullptr; }

 private:
  TaskRecord* rec_ = nullptr;
};

struct ReleaseGuard {
  const JoinedTask& joined;
  ~ReleaseGuard() { release(joined); }
};

}  // namespace coop::detail
