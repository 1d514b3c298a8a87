// vm.hpp: the backend interface that runs remote tasks on slots, and the
// whole contract a backend keeps.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/timing.hpp>

namespace coop {

// Call is a remote call, serialized: the registered name of the function and
// its arguments in cereal's binary format. Any process of the same program
// can run it (the remote layer's execute(), which a backend's slot calls).
struct Call {
  std::string function;
  std::string args;
  // The spawner's mirrors (Options::mirrors) as the storage layer encodes
  // them, so that the slot can copy and resolve them; empty without mirrors.
  // A backend carries it like `args`, unread.
  std::string mirrors{};
  template <class Archive> void serialize(Archive& ar) { ar(function, args, mirrors); }
};

// Message is what a VM reports about a remote task.
struct Message {
  enum class Kind {
    started,      // a slot began to run the task (optional: a VM may skip it); frees nothing
    result,       // the task returned or threw; its slot is free when this is received
                  // (unless calls are queued on it, VM::queue: the next one starts)
    exit,         // the task ended without a result (it was cancelled); its slot is free
    worker_lost,  // the slot died while running the task; its slot is free (replaced)
    post,         // the running task sent `payload` to the spawner (remote objects,
                  // spawner calls); frees nothing. A task's posts arrive in the
                  // order sent, and before its ending message.
    withdrawn,    // a queued call (VM::queue) was taken back before it began: it
                  // never ran and has no other message; the caller may start it
                  // again. Comes after withdraw(), and for each call queued on a
                  // slot whose worker was lost or killed (a cancel, a timeout).
  };
  // How a `result` ended, so that the layers above never match strings.
  enum class Failure : std::uint8_t {
    none,            // it returned: `payload` is the serialized value
    exception,       // it threw: error_type is the exception's type, payload its what()
    not_registered,  // the slot has no function of that name: payload is the name
  };
  Kind kind = Kind::result;
  TaskId task{};
  HostId host{};
  // For result: `ok` is `failure == Failure::none`, kept for readers that
  // only ask whether it succeeded.
  bool ok = false;
  Failure failure = Failure::exception;
  std::string payload{};
  std::string error_type{};
  // When the slot started and finished the task (on the slot's clock).
  clock::time_point started{};
  clock::time_point completed{};
  // What the task wrote to stdout and stderr, for backends that capture it.
  std::string output{};
  // For worker_lost and exit: how the slot ended (for example "killed by signal 9").
  std::string reason{};
};

// VM is a backend that runs remote tasks: ThreadVM, ProcessVM, MpiVM. A VM
// knows nothing of microthreads; the scheduler's remote layer drives it from
// the scheduler's one loop. Not thread-safe: every method is called from the
// scheduler's thread only, and none may yield (a VM has no tasks).
//
// The contract every backend keeps:
// - A slot is busy from the start() that gave it a task until receive()
//   returns the one message that ends that task (`result`, `exit` or
//   `worker_lost`); from then on the slot counts in free_slots() again.
//   Exactly one ending message comes for every task start() accepted, unless
//   finalize() ran first. `started` messages are optional and free nothing.
// - A slot may be out of service for a while without a task (a worker being
//   replaced after a crash, a timeout or a cancel). When such a slot comes
//   back without a message to deliver, receive() returns nullopt early, so
//   that the caller can start queued work on it.
// - receive(timeout) with timeout < 0 waits until a message arrives or a
//   slot comes back, but returns nullopt at once when nothing could arrive
//   (no task runs and no slot is coming back).
// - cancel() never blocks for long (it may kill a process and start another,
//   not wait for a task to finish); finalize() may block for a bounded time,
//   stated by each backend.
// - A running task talks with the spawner (remote objects and spawner calls,
//   object.hpp and spawner.hpp): the backend runs each call with
//   detail::execute(call, channel) (src/remote/channel.hpp), and its
//   channel's post(bytes) becomes a `post` message of that task (in order,
//   before the task's ending message); send(task, bytes) reaches that
//   channel's receive(), in order. receive() in the slot must return nullopt
//   (never block for ever) once nothing can come: the task was cancelled, or
//   the VM finalized, or the spawner is gone. A backend gives the channel the
//   slot's host and the task's TaskId (coop::this_host(), this_task_id()).
class COS_API VM {
 public:
  virtual ~VM();
  // slots() counts the slots in service; free_slots() those that can take a
  // task now. Never block.
  virtual int slots() const = 0;
  virtual int free_slots() const = 0;
  // hosts() are every host's id, in a stable order; hosts_with_free_slots()
  // those that have a free slot now. Never block.
  virtual std::vector<HostId> hosts() const = 0;
  virtual std::vector<HostId> hosts_with_free_slots() const = 0;
  // start() runs `call` on a free slot (of `host`, if given) and returns its
  // TaskId, or nullopt when no such slot is free. Never blocks: a backend
  // that must send the call somewhere buffers what it cannot send at once.
  // Throws coop::Error for an unknown host or after finalize().
  virtual std::optional<TaskId> start(const Call& call, const std::optional<HostId>& host) = 0;
  // receive() returns the next message, waiting at most `timeout` for one
  // (a negative timeout: see the contract above; zero only polls). Blocks
  // the thread up to `timeout`.
  virtual std::optional<Message> receive(std::chrono::nanoseconds timeout) = 0;
  // host_of() is the host a task was started on; throws coop::Error for an
  // id this VM never gave out.
  virtual HostId host_of(const TaskId& task) const = 0;
  // cancel() stops a running task where the backend can (a process is
  // killed and replaced; a thread cannot be stopped and runs on). An `exit`
  // message follows once the slot is free again. Does nothing for a task
  // that has already ended.
  virtual void cancel(const TaskId& task) = 0;
  // send() delivers `payload` to a running task's channel, after whatever
  // was sent to it before; never blocks (a backend buffers what it cannot
  // hand over at once). Bytes for a task that has ended (or that this VM
  // never started) are dropped silently: the task's ending message, or its
  // absence, tells the caller why.
  virtual void send(const TaskId& task, std::string payload) = 0;
  // Queues (pipelining). A backend may let a busy slot hold calls that start
  // when its running task ends, so that the slot does not wait a round trip
  // for its next call. queue_capacity() is how many calls it can hold so in
  // all (0, the default: it queues none), queue_room() how many more it would
  // take now, hosts_with_queue_room() the hosts that have room. Never block.
  virtual int queue_capacity() const { return 0; }
  virtual int queue_room() const { return 0; }
  virtual std::vector<HostId> hosts_with_queue_room() const { return {}; }
  // queue() puts `call` behind the running task of a busy slot (of `host`,
  // if given) and returns its TaskId, or nullopt when no such slot has room.
  // A queued call is not running: a `started` message (required here) says
  // when it begins, and comes before its ending message; until then,
  // withdraw() may take it back, and a `withdrawn` message then says that it
  // never ran. A call queued on a slot that is lost or killed before it
  // begins is withdrawn too. cancel() of a queued call ends it with an
  // `exit` message (without running it where the backend can tell in time).
  // send() to a queued call: dropped (it is not running yet).
  virtual std::optional<TaskId> queue(const Call& call, const std::optional<HostId>& host) {
    (void)call, (void)host;
    return std::nullopt;
  }
  // runs_long() says that a running `task` may run for as long as the
  // program does (a remote object's server): the VM queues nothing behind
  // it, since a queued call would wait for its end.
  virtual void runs_long(const TaskId& task) { (void)task; }
  // withdraw() asks for a queued call back; it may have begun already (its
  // `started` message is on its way), and then runs as if never asked. Does
  // nothing for a task that is not queued.
  virtual void withdraw(const TaskId& task) { (void)task; }
  // finalize() stops every slot; messages not yet received are dropped.
  // Idempotent; afterwards slots() is 0 and start() throws. The scheduler
  // calls it when it ends.
  virtual void finalize() = 0;
};

}  // namespace coop
