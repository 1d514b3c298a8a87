// external.hpp: the seam between the local core and the layer that runs
// tasks elsewhere (the remote layer). The core knows a remote task only as a
// record with an External attached; the remote layer knows the core only
// through Engine's seam (make a record, wake a task, end a task with a value
// or an error, add a timer) and drives the loop through an EventSource.
#pragma once

#include <chrono>
#include <cstdint>

#include <cos/detail/core.hpp>

namespace coop::detail {

struct TaskRecord;

// External is what the core keeps of a task that runs outside it. It lives
// as long as its record (the core deletes it when the record is recycled),
// so that a joined task still reports where and when it ran.
class External {
 public:
  virtual ~External() = default;
  // describe() fills in where the task runs and how long it took.
  virtual void describe(TaskInfo& info) const = 0;
  // cancel() stops the task (queued or running) and ends its record with
  // coop::Cancelled; the core calls it only for a record that has not ended.
  virtual void cancel(TaskRecord* rec) = 0;
};

// EventSource is what the loop polls between ready tasks and waits on when
// none is ready: the remote layer's VM.
class EventSource {
 public:
  virtual ~EventSource() = default;
  // busy() says whether an event may still come (a message, a slot coming back).
  virtual bool busy() const = 0;
  // wait() takes the next event, waiting at most `timeout` (negative:
  // until one comes; zero: only a poll). Blocks the thread.
  virtual void wait(std::chrono::nanoseconds timeout) = 0;
  // stalled() runs when no task is ready and busy() is false: it ends the
  // external tasks that can never run now; false when it ended none.
  virtual bool stalled() = 0;
  // draining() runs while the main task drains the scheduler, when it
  // starts and whenever a task ends, with the count of tasks still live
  // other than the main task.
  virtual void draining(std::size_t live) { (void)live; }
};

// TimerFn is called when a timer added with Engine::add_timer is due, with
// the record, tid and token given there (a record may have been reused for
// another task since: compare the tid).
using TimerFn = void (*)(void* context, TaskRecord* rec, Tid tid, std::uint64_t token);

}  // namespace coop::detail
