// channel.hpp: the slot's side of a running remote task's conversation with
// its spawner (remote objects, spawner calls), the one thing a backend gives
// the task it runs beyond the call itself (vm.hpp states the rules).
#pragma once

#include <optional>
#include <string>

#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/vm.hpp>

namespace coop::detail {

// TaskChannel is what a backend's slot offers the task it runs. It is used
// only by the thread that runs the task, while the task runs.
class TaskChannel {
 public:
  TaskChannel(HostId host, TaskId task) : host_(std::move(host)), task_(task) {}
  virtual ~TaskChannel() = default;
  TaskChannel(const TaskChannel&) = delete;
  TaskChannel& operator=(const TaskChannel&) = delete;

  // post() sends bytes to the spawner: they arrive as a `post` message of
  // this task, in the order posted, before its ending message. Blocks at
  // most while the bytes are written; a spawner that is gone loses them.
  virtual void post(std::string payload) = 0;
  // receive() blocks until the spawner's next send() to this task, and
  // returns nullopt once none can come (the task was cancelled, the VM
  // finalized, the spawner is gone).
  virtual std::optional<std::string> receive() = 0;

  const HostId& host() const { return host_; }
  const TaskId& task() const { return task_; }

 private:
  HostId host_;
  TaskId task_;
};

// execute() runs `call` as execute(call) does, with `channel` as the running
// task's channel: coop::this_host(), this_task_id(), spawner calls and
// remote objects inside the call use it.
COS_API Message execute(const Call& call, TaskChannel& channel);

}  // namespace coop::detail
