// vm.hpp: the backend interface that runs remote tasks on slots.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/timing.hpp>

namespace coop {

// Call is a remote call, serialized: the registered name of the function and
// its arguments in cereal's binary format. Any process of the same program
// can run it with detail::execute().
struct Call {
  std::string function;
  std::string args;
  template <class Archive> void serialize(Archive& ar) { ar(function, args); }
};

// Message is what a VM reports about a remote task.
struct Message {
  enum class Kind {
    started,      // a slot began to run the task (optional: a VM may skip it)
    result,       // the task returned or threw; its slot is free again
    exit,         // the task ended without a result (it was cancelled); its slot is free
    worker_lost,  // the slot died while running the task; the VM replaces it
  };
  Kind kind = Kind::result;
  TaskId task{};
  HostId host{};
  // For result: `ok` says whether `payload` is the serialized value or the
  // task threw, in which case error_type and payload (the what()) describe it.
  bool ok = false;
  std::string payload{};
  std::string error_type{};
  // When the slot started and finished the task (on the slot's clock).
  clock::time_point started{};
  clock::time_point completed{};
  // What the task wrote to stdout and stderr, for backends that capture it.
  std::string output{};
  // For worker_lost: how the slot died (for example "killed by signal 9").
  std::string reason{};
};

// VM is a backend that runs remote tasks: ThreadVM, ProcessVM, MpiVM. A VM
// knows nothing of microthreads; the scheduler drives it from its one loop.
// Every method is called from the scheduler's thread only.
class COS_API VM {
 public:
  virtual ~VM();
  virtual int slots() const = 0;
  virtual int free_slots() const = 0;
  virtual std::vector<HostId> hosts() const = 0;
  virtual std::vector<HostId> hosts_with_free_slots() const = 0;
  // start() runs `call` on a free slot (of `host`, if given) and returns its
  // TaskId, or nullopt when no such slot is free. Never blocks.
  virtual std::optional<TaskId> start(const Call& call, const std::optional<HostId>& host) = 0;
  // receive() returns the next message, waiting at most `timeout` for one
  // (a negative timeout waits until one arrives; zero only polls).
  virtual std::optional<Message> receive(std::chrono::nanoseconds timeout) = 0;
  virtual HostId host_of(const TaskId& task) const = 0;
  // cancel() stops a running task where the backend can (a process is
  // killed and replaced). It reports an `exit` message once the slot is free.
  virtual void cancel(const TaskId& task) = 0;
  // finalize() stops every slot; the scheduler calls it when it ends.
  virtual void finalize() = 0;
};

}  // namespace coop
