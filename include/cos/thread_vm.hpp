// thread_vm.hpp: ThreadVM, slots that are threads of this process.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <cos/export.hpp>
#include <cos/vm.hpp>

namespace coop {

// ThreadVM runs remote tasks on worker threads of this process. Calls take
// the same path as on worker processes and MPI ranks (registered by name,
// arguments and results serialized with cereal), so code tested on a ThreadVM
// behaves the same elsewhere; it is the test mode of cos, like Ray's local
// mode.
//
// A thread cannot be killed: cancel() and timeouts end the task for the
// scheduler at once, but the slot stays busy until the function returns;
// then its `exit` message frees it.
//
// Not thread-safe: every method is called from the scheduler's thread only
// (the slots' threads talk to it through the VM's own locks).
//
// Example:
//   coop::run(main_task, {.vm = std::make_shared<coop::ThreadVM>(4)});
class COS_API ThreadVM : public VM {
 public:
  // n slots on one host named after this machine; n <= 0 is a coop::Error.
  // Starts n threads; blocks only while they are created.
  explicit ThreadVM(int n);
  // Named hosts with their slot counts, standing in for several machines.
  // Throws coop::Error for an empty map or a count <= 0, and for a bad
  // COS_FINALIZE_TIMEOUT (see finalize()).
  explicit ThreadVM(const std::map<std::string, int>& slots_per_host);
  // The destructor finalizes.
  ~ThreadVM() override;
  ThreadVM(const ThreadVM&) = delete;
  ThreadVM& operator=(const ThreadVM&) = delete;

  // Never block.
  int slots() const override;
  int free_slots() const override;
  std::vector<HostId> hosts() const override;
  std::vector<HostId> hosts_with_free_slots() const override;
  // start() hands the call to a free slot's thread and returns at once
  // (never blocks: the thread copies nothing from the caller afterwards).
  std::optional<TaskId> start(const Call& call, const std::optional<HostId>& host) override;
  // receive() blocks the thread up to `timeout` for a slot's message (zero
  // only polls; negative waits while any task runs, and returns nullopt at
  // once when none does).
  std::optional<Message> receive(std::chrono::nanoseconds timeout) override;
  HostId host_of(const TaskId& task) const override;
  // cancel() marks the task cancelled and returns at once; the thread runs
  // the function to its end, and its result becomes an `exit` message.
  void cancel(const TaskId& task) override;
  // send() queues the bytes for the task's thread and returns at once.
  void send(const TaskId& task, std::string payload) override;
  // finalize() stops the threads: idle ones at once, busy ones when their
  // function returns. It waits at most 2 s for them (the environment
  // variable COS_FINALIZE_TIMEOUT sets other seconds, read when the VM is
  // made). A thread still running then is named on stderr (its task id and
  // function) and detached, so that the scheduler can end: it runs on until
  // its function returns (its result is dropped) or the process exits.
  void finalize() override;

 private:
  struct Impl;
  // Shared with the slots' threads, so that a detached thread never outlives
  // what it touches (see finalize()).
  std::shared_ptr<Impl> impl_;
};

}  // namespace coop
