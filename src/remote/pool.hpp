// pool.hpp: the remote pool of one scheduler: the VM, the spawns waiting for
// a slot (per host and for any host, by priority), the tasks running on
// slots, their timeouts, retries and cancels, and the VM's messages turned
// into task outcomes. It knows the VM interface and the core's seam
// (core/external.hpp), never a pipe or a microthread's stack.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <memory_resource>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <cos/remote.hpp>
#include <cos/vm.hpp>

#include "core/engine.hpp"
#include "remote/wire.hpp"

namespace coop::detail {

class RemotePool;

// ObjectSink is what the pool tells the spawner's side of a remote object
// (object.cpp) about the task that serves it: where it started, what it
// posted (built, method results), and how it ended.
class ObjectSink {
 public:
  virtual ~ObjectSink() = default;
  virtual void on_started(const TaskId& task, const HostId& host) = 0;
  virtual void on_post(wire::Envelope&& e) = 0;
  // on_end() may take the error (clear it) when it has handed it on, so
  // that it is not also reported at shutdown.
  virtual void on_end(std::exception_ptr& error) = 0;
  // close() asks the object to end after its pending calls.
  virtual void close() noexcept = 0;
  // idle() says whether its server waits for a call that only a task of
  // this scheduler could make (built, no call pending, not closing).
  virtual bool idle() const = 0;
};

// RemoteTask is a remote task as the pool keeps it: the call (kept to start
// it again after a lost worker), how to decode its value, its spawn options,
// and where and when it ran. The core owns it with the task's record.
struct RemoteTask final : External {
  RemotePool* pool = nullptr;
  Call call;
  DecodeFn decode = nullptr;
  std::optional<HostId> bound_host;
  int priority = 0;
  std::optional<std::chrono::nanoseconds> timeout;
  int retries = 0;
  int attempts = 0;
  TaskRecord* spawner = nullptr;  // parked in a blocking spawn until this starts
  bool queued = false;      // waits in the pool's queues
  bool vm_queued = false;   // queued on a busy slot of the VM (VM::queue), not begun
  bool withdrawing = false; // asked back from the VM (VM::withdraw) for a better task
  bool ended = false;
  std::pair<int, std::uint64_t> queue_key{};  // (-priority, FIFO sequence)
  std::shared_ptr<ObjectSink> object;          // set when this task serves a remote object

  std::string output;
  std::optional<HostId> host;
  std::optional<TaskId> task_id;
  Timing timing;

  void describe(TaskInfo& info) const override;
  void cancel(TaskRecord* rec) override;
};

class RemotePool final : public EventSource {
 public:
  explicit RemotePool(Engine& engine) : engine_(engine) {}
  RemotePool(const RemotePool&) = delete;
  RemotePool& operator=(const RemotePool&) = delete;

  static RemotePool* current() noexcept;  // the calling thread's scheduler's pool
  void make_current(bool on) noexcept;

  const std::shared_ptr<VM>& vm() const { return vm_; }
  void set_vm(std::shared_ptr<VM> vm);  // throws coop::Error while remote tasks run
  int slots() const { return vm_ ? vm_->slots() : -1; }
  int free_slots() const { return vm_ ? vm_->free_slots() : -1; }
  std::size_t task_count() const { return live_; }

  // spawn() starts or queues a remote task; with `object`, a detached one
  // (no task joins it) that serves that remote object.
  TaskRef spawn(const Spawn& options, Call&& call, DecodeFn decode, std::shared_ptr<ObjectSink> object = {});
  void cancel(RemoteTask& task, TaskRecord* rec);

  // EventSource: the loop's view of the VM.
  bool busy() const override {
    // A message may still come while a task runs or is being stopped; and
    // while a slot is out (a worker being replaced, vm.hpp), queued spawns
    // wait for it to come back. An idle remote object's server sends nothing
    // until a task calls it, so it counts as neither.
    std::size_t idle = idle_objects();
    return running_.size() > idle || !abandoned_.empty() ||
           (queued_ > 0 && static_cast<std::size_t>(vm_->free_slots()) + idle < static_cast<std::size_t>(vm_->slots()));
  }
  void wait(std::chrono::nanoseconds timeout) override;
  bool stalled() override;
  // draining(): once the remote objects' servers are all that still runs,
  // nobody can call them any more: close them, so that the scheduler ends.
  void draining(std::size_t live) override;

 private:
  using QueueKey = std::pair<int, std::uint64_t>;
  using Queue = std::pmr::map<QueueKey, TaskRecord*>;
  static RemoteTask& task_of(TaskRecord* rec) { return *static_cast<RemoteTask*>(rec->external); }
  std::size_t idle_objects() const {
    std::size_t n = 0;
    for (const ObjectSink* o : objects_) n += o->idle();
    return n;
  }

  bool start_on_vm(TaskRecord* rec);
  bool queue_on_vm(TaskRecord* rec);
  void taken(TaskRecord* rec, const TaskId& id);
  void arm_timeout(TaskRecord* rec, clock::time_point from);
  TaskRecord* next_queued(const std::vector<HostId>& hosts) const;
  void make_room_for(TaskRecord* rec);
  void forget_vm_queued(TaskRecord* rec);
  void on_withdrawn(TaskRecord* rec);
  void enqueue(TaskRecord* rec, bool keep_key = false);
  void dequeue(TaskRecord* rec);
  void start_queued();
  void on_message(Message&& m);
  // posts.cpp: a running task's post (an object's news, or a spawner call).
  void on_post(TaskRecord* rec, Message&& m);
  void run_spawner_call(const TaskId& task, Tid tid, wire::Envelope&& e);
  void end(TaskRecord* rec, std::exception_ptr error);
  void abandon_running(TaskRecord* rec);
  static void on_timer(void* self, TaskRecord* rec, Tid tid, std::uint64_t attempt);
  void time_out(TaskRecord* rec);
  void fail_all(std::exception_ptr error);

  Engine& engine_;
  std::shared_ptr<VM> vm_;
  std::size_t live_ = 0;
  // The nodes of the maps below, which take in and let go of a node or
  // two per remote task: from a pool of this pool's own, not malloc (three
  // of the ten allocations of an empty remote task were theirs). Declared
  // before them, so that it outlives them.
  std::pmr::unsynchronized_pool_resource nodes_;
  std::pmr::unordered_map<TaskId, TaskRecord*> running_{&nodes_};  // remote tasks on a slot
  std::unordered_set<TaskId> abandoned_;                           // cancelled or timed out, slot not yet free
  Queue any_host_queue_{&nodes_};
  std::pmr::map<HostId, Queue> host_queues_{&nodes_};
  std::uint64_t queue_seq_ = 0;
  std::size_t queued_ = 0;
  // The last start_queued() left spawns queued (no free slot, no queue
  // room): until the VM is asked for messages again, another round would
  // find none either (only what receive() takes in frees a slot or a place
  // in a queue, or brings a new worker), so wait() skips the one before
  // its receive().
  bool room_spent_ = false;
  std::unordered_set<ObjectSink*> objects_;  // remote objects whose server has not ended
  // Tasks queued on the VM's busy slots (pipelining), by their queue key
  // (make_room_for() asks back those worse than a task that waits).
  std::pmr::map<std::pair<QueueKey, Tid>, TaskRecord*> vm_queued_{&nodes_};
};

}  // namespace coop::detail
