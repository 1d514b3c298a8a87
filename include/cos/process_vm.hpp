// process_vm.hpp: ProcessVM, slots that are worker processes of this program.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <cos/export.hpp>
#include <cos/vm.hpp>

namespace coop {

// ProcessOptions tune a ProcessVM.
struct ProcessOptions {
  // queue: calls a busy worker may hold behind the one it runs (VM::queue),
  // so that it starts the next one without waiting a round trip to the
  // spawner; 0 turns pipelining off. At most this many, and fewer for
  // longer tasks: about queue_under of work by the recent run times (at
  // least one call). The scheduler queues only when more remote tasks wait
  // than slots are free. (Empty tasks on ProcessVM(2): 9.9 us per task with
  // 2, 7.8 with 4, 6.5 with 8, 6.1 with 16: a shallow queue runs dry while
  // the spawner handles the other worker's results.)
  int queue = 16;
  // queue_under: pipelining applies only while the VM's recent tasks took
  // less than this (a moving average of their run times): for short tasks
  // the round trip is what costs, while a call queued behind a long task
  // would wait for it even if another worker became free meanwhile (a
  // worker takes a queued call back only between its tasks).
  std::chrono::nanoseconds queue_under = std::chrono::milliseconds(1);
};

// ProcessVM runs remote tasks in worker processes of this same program, one
// task per worker at a time. Workers are started by fork + exec of the
// program's own executable, so they share none of the spawner's threads or
// locks; the program must call coop::init(argc, argv) first in main.
//
// Faults cost one worker, never the spawner: a worker that dies mid-task
// (crash, _Exit, killed from outside) gives a `worker_lost` message for its
// task, a cancelled task's worker is killed and gives an `exit` message;
// either way the worker is reaped and replaced, and the message arrives once
// the replacement is ready, so the slot is free when it is received. Workers
// exit when the VM is finalized or destroyed, and when the spawner dies
// (they get SIGKILL from the kernel); they survive SIGINT (Ctrl-C is the
// spawner's to handle; programs that a task runs get it as usual).
//
// Processes that a task starts (fork, system(), popen, also ones that start
// a session of their own or double-fork) end with its worker: the process
// the spawner starts for a slot is a small keeper, a child subreaper
// (PR_SET_CHILD_SUBREAPER) whose one child is the worker that serves, so
// every descendant of a task stays below it, orphans included. A timeout, a
// cancel, finalize() or a lost worker freezes that whole tree (SIGSTOP, so
// nothing forks away) and kills it (SIGKILL); a worker that crashes or is
// killed from outside is noticed by its keeper, which kills and reaps the
// tree and only then ends, with the worker's status; when the spawner dies
// the keeper gets SIGTERM and does the same. Programs a task leaves running
// after it returns go on while the worker serves, and end with it. The
// worker reaps the children a task did not wait for once the task returns
// and its result is sent (never while it runs). Only a process that leaves the tree by other
// means (asks a daemon such as systemd or at to start it, or whose keeper
// is SIGKILLed from outside) escapes. Nothing of this costs a task that
// returns: the tree is walked (in /proc) only when a worker is ended.
//
// What a worker writes to stdout and stderr goes to the spawner's, a
// line at a time, and is kept per task in Message::output.
//
// Calls go to a worker on a pipe, results come back on another; the
// spawner's ends are non-blocking, so no call, however large, and no worker,
// however stuck (even stopped), makes the scheduler's thread wait in write().
// The spawner also holds the read end of each call pipe, so a call to a
// worker that is gone never raises SIGPIPE (the worker's end shows on its
// result pipe); the program's SIGPIPE disposition and masks are its own.
//
// Not thread-safe: use it from one thread (the scheduler's). Workers are
// tied to the thread that started them: they are killed when it exits.
//
// Example:
//   int main(int argc, char** argv) {
//     coop::init(argc, argv);
//     auto vm = std::make_shared<coop::ProcessVM>(4);
//     coop::run([] { ... }, coop::Options{.vm = vm});
//   }
class COS_API ProcessVM final : public VM {
 public:
  // ProcessVM(n) starts n workers on one host named after this machine
  // (gethostname). Blocks the thread until every worker is ready, at most
  // the start timeout (10 s; see below); throws coop::Error for
  // n <= 0, when a worker cannot start, or when one does not reach
  // coop::init (the program's main must call it first) within 10 s (the
  // environment variable COS_WORKER_START_TIMEOUT sets other seconds).
  explicit ProcessVM(int n, ProcessOptions options = {});
  // ProcessVM(slots_per_host) starts count workers for each named host, so
  // one machine can stand in for several (host-bound spawns, tests). Blocks
  // as ProcessVM(n) does. Throws coop::Error for an empty map, an empty name
  // or a count <= 0.
  explicit ProcessVM(std::map<std::string, int> slots_per_host, ProcessOptions options = {});
  // The destructor finalizes (and blocks as finalize() does).
  ~ProcessVM() override;
  ProcessVM(const ProcessVM&) = delete;
  ProcessVM& operator=(const ProcessVM&) = delete;

  // slots() counts the slots in service (all of them, unless a worker could
  // not be replaced); free_slots() those with a ready, idle worker. Never
  // block.
  int slots() const override;
  int free_slots() const override;
  // hosts() in name order; hosts_with_free_slots() those with an idle
  // worker. Never block.
  std::vector<HostId> hosts() const override;
  std::vector<HostId> hosts_with_free_slots() const override;
  // start() sends `call` to an idle worker (of `host`, if given) and returns
  // the task's id, or nullopt when none is free. Never blocks: what the
  // worker's socket does not take at once is kept and sent by receive(). A
  // worker that dies before it has the whole call gives `worker_lost`.
  // Throws coop::Error for an unknown host, a call larger than 256 MiB, or
  // after finalize().
  std::optional<TaskId> start(const Call& call, const std::optional<HostId>& host) override;
  // queue() sends `call` to a busy worker (of `host`, if given) that holds
  // fewer calls behind its task than it may (ProcessOptions::queue), the one with the
  // fewest, and returns the task's id, or nullopt when none has room. The
  // worker sends `started` with the previous result when it begins the
  // call; withdraw() sends it a request to drop the call, answered with
  // `withdrawn` (or, when it had begun, by nothing more than `started`).
  // When the worker is lost, or killed by a cancel or timeout, its queued
  // calls are withdrawn; cancel() of a queued call withdraws it and ends it
  // with `exit` (and kills the worker only if it had begun). A worker takes
  // withdraws in between its tasks, once two or fewer calls are left in its
  // queue, so the answer comes when the calls ahead have run (about
  // queue_under of work at most). Queued calls and withdraws go out at the
  // next receive(), several in one write. Throws as start() does.
  // Only behind a task that has run for less than ProcessOptions::queue_under
  // so far, and not behind one marked with runs_long().
  std::optional<TaskId> queue(const Call& call, const std::optional<HostId>& host) override;
  void runs_long(const TaskId& task) override;
  void withdraw(const TaskId& task) override;
  int queue_capacity() const override;
  int queue_room() const override;
  std::vector<HostId> hosts_with_queue_room() const override;
  // receive() blocks the thread up to `timeout` for the next message,
  // waiting on every worker at once (epoll): `result`, `exit`,
  // `worker_lost`, and for queued calls `started` and `withdrawn`. It
  // spins for up to 20 us before it sleeps only while workers hold queued
  // calls (their results then come every few microseconds).
  // Zero only polls. A negative timeout waits until a message arrives, but
  // returns nullopt at once when no task runs and no worker is starting
  // (nothing could arrive). It also returns nullopt early when a replacement
  // worker became ready without a message (a slot freed). Worker output is
  // forwarded, and unsent calls sent, while it waits.
  std::optional<Message> receive(std::chrono::nanoseconds timeout) override;
  // host_of() is the host a task was started on; throws coop::Error for an
  // id this VM never gave out. Never blocks.
  HostId host_of(const TaskId& task) const override;
  // cancel() kills the worker running `task` (SIGKILL), with every process
  // its task started, and replaces it; an
  // `exit` message follows once the new worker is ready. Blocks only until
  // the killed worker is reaped (SIGKILL acts at once, also on a stopped
  // process) and its replacement forked; it does not wait for the hello.
  // Does nothing for a task that is not running (finished, or its result
  // already arrived).
  void cancel(const TaskId& task) override;
  // send() frames the bytes for the worker running `task` on its call
  // socket; what the socket does not take at once waits in the VM and goes
  // out as the worker reads (never blocks). A worker found gone is lost.
  void send(const TaskId& task, std::string payload) override;
  // finalize() lets idle workers exit, kills busy ones, and reaps them all;
  // messages not yet received are dropped. Blocks the thread up to 1 s of
  // grace for idle workers to exit, then kills those left with SIGKILL.
  // Idempotent; afterwards the VM has no slots.
  void finalize() override;

  // worker_pids() are the process ids of the current workers (the processes
  // that run tasks; a worker still starting shows its keeper), in slot order.
  // For diagnostics and tests only (a pid changes whenever a worker is
  // replaced). Never blocks.
  std::vector<int> worker_pids() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace coop
