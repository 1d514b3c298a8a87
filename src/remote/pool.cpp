// The remote pool: spawning on a VM, queues of spawns waiting for a slot, and
// the messages that end remote tasks.
#include "remote/pool.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <cos/errors.hpp>

#include "posix/text.hpp"
#include "remote/storage.hpp"

namespace coop::detail {
namespace {

thread_local RemotePool* tls_pool = nullptr;

std::string describe_host(const std::optional<HostId>& host) {
  return host ? " on host " + host->name() : std::string();
}

std::string describe(Tid tid, const Call& call) {
  return "task " + std::to_string(tid) + " (" + call.function + ")";
}

std::string millis(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

std::vector<std::string> names_of(const std::vector<HostId>& hosts) {
  std::vector<std::string> names;
  for (const auto& h : hosts) names.push_back(h.name());
  return names;
}

}  // namespace

void RemoteTask::describe(TaskInfo& info) const {
  info.host = host;
  info.task_id = task_id;
  info.timing = timing;
  info.output = output;
}

void RemoteTask::cancel(TaskRecord* rec) { pool->cancel(*this, rec); }

RemotePool* RemotePool::current() noexcept { return tls_pool; }
void RemotePool::make_current(bool on) noexcept { tls_pool = on ? this : nullptr; }

void RemotePool::set_vm(std::shared_ptr<VM> vm) {
  if (live_ > 0 || (vm_ && busy())) throw Error("coop::Scheduler::set_vm: remote tasks are running");
  // Checked once here, where remote spawns become possible, not per spawn.
  if (vm) check_registry();
  vm_ = std::move(vm);
}

TaskRef RemotePool::spawn(const Spawn& opt, Call&& call, DecodeFn decode, std::shared_ptr<ObjectSink> object) {
  // Every call that leaves for a slot carries the spawner's mirrors: a
  // remote spawn's, a dispatch job's and a remote object's alike.
  call.mirrors = spawner_mirrors_blob();
  if (opt.retries < 0) throw Error("coop::spawn: retries must not be negative");
  if (opt.timeout && opt.timeout->count() <= 0) throw Error("coop::spawn: timeout must be positive");
  // No slot can ever take it (a finalized VM, or one whose workers all failed).
  if (vm_->slots() <= 0) throw Error("coop::spawn: the VM has no slots in service (was it finalized?)");
  if (opt.host) {
    auto hosts = vm_->hosts();
    if (std::find(hosts.begin(), hosts.end(), *opt.host) == hosts.end()) {
      throw Error("coop::spawn: the VM has no host '" + opt.host->name() +
                  "' (it has: " + posix::join_names(names_of(hosts)) + ")");
    }
  }
  bool slot_free = false;
  if (opt.host) {
    auto free = vm_->hosts_with_free_slots();
    slot_free = std::find(free.begin(), free.end(), *opt.host) != free.end();
  } else {
    slot_free = vm_->free_slots() > 0;
  }
  if (!slot_free && !opt.block && !opt.enqueue) return TaskRef{};

  auto task = std::make_unique<RemoteTask>();
  task->pool = this;
  task->call = std::move(call);
  task->decode = decode;
  task->bound_host = opt.host;
  task->host = opt.host;
  task->priority = opt.priority;
  task->timeout = opt.timeout;
  task->retries = opt.retries;
  task->timing.submitted = clock::now();
  const bool detached = object != nullptr;
  task->object = std::move(object);
  RemoteTask& job = *task;
  TaskRecord* rec = engine_.add_external(task.release(), detached);
  ++live_;

  TaskRef ref{rec, rec->tid, engine_.serial()};
  bool started = false;
  try {
    started = slot_free && start_on_vm(rec);
  } catch (...) {
    // The VM refused (it failed or was finalized): as if never spawned, tid included.
    --live_;
    engine_.remove_external(rec);
    throw;
  }
  if (!started) {
    enqueue(rec);
    make_room_for(rec);
    if (opt.block) {
      job.spawner = engine_.running();
      engine_.park();
    }
  }
  return ref;
}

bool RemotePool::start_on_vm(TaskRecord* rec) {
  RemoteTask& job = task_of(rec);
  std::optional<TaskId> id = vm_->start(job.call, job.bound_host);
  if (!id) return false;
  taken(rec, *id);
  job.timing.started = clock::now();
  if (job.object) {
    vm_->runs_long(*id);  // it serves until the object closes: nothing may queue behind it
    objects_.insert(job.object.get());
    job.object->on_started(*id, *job.host);
  }
  arm_timeout(rec, job.timing.started);
  if (job.spawner) engine_.unpark(std::exchange(job.spawner, nullptr));
  return true;
}

// taken() records that the VM took `rec` as task `id`, to run now or queued.
void RemotePool::taken(TaskRecord* rec, const TaskId& id) {
  RemoteTask& job = task_of(rec);
  ++job.attempts;
  job.task_id = id;
  job.host = vm_->host_of(id);
  running_.emplace(id, rec);
}

// arm_timeout() starts the timeout of the attempt of `rec` that began at
// `from`, if it has one.
void RemotePool::arm_timeout(TaskRecord* rec, clock::time_point from) {
  RemoteTask& job = task_of(rec);
  if (!job.timeout) return;
  engine_.add_timer(from + std::chrono::ceil<clock::duration>(*job.timeout), &on_timer, this, rec,
                    static_cast<std::uint64_t>(job.attempts));
}

// queue_on_vm() queues a task behind a busy slot's running task (VM::queue):
// it counts as on the VM (its blocking spawner goes on), but its timeout
// counts from its `started` message.
bool RemotePool::queue_on_vm(TaskRecord* rec) {
  RemoteTask& job = task_of(rec);
  std::optional<TaskId> id = vm_->queue(job.call, job.bound_host);
  if (!id) return false;
  taken(rec, *id);
  job.vm_queued = true;
  vm_queued_.emplace(std::pair{job.queue_key, rec->tid}, rec);
  if (job.spawner) engine_.unpark(std::exchange(job.spawner, nullptr));
  return true;
}

void RemotePool::forget_vm_queued(TaskRecord* rec) {
  RemoteTask& job = task_of(rec);
  if (!job.vm_queued) return;
  vm_queued_.erase(std::pair{job.queue_key, rec->tid});
  job.vm_queued = false;
  job.withdrawing = false;
}

// make_room_for() keeps priorities in charge of what starts when calls are
// queued on the VM: a task that has to wait in the pool while worse ones
// wait on slots it could use asks them back (they return through
// on_withdrawn() and queue again, behind it).
void RemotePool::make_room_for(TaskRecord* rec) {
  RemoteTask& job = task_of(rec);
  // vm_queued_ is in queue order, best priority first: when the last is as
  // good as this one, none is worse (the common case, found without a scan).
  if (vm_queued_.empty() || task_of(std::prev(vm_queued_.end())->second).priority >= job.priority) return;
  // In their queue order, so that they come back (and queue again) in it.
  for (auto& [key, other_rec] : vm_queued_) {
    RemoteTask& other = task_of(other_rec);
    if (other.priority >= job.priority || other.withdrawing) continue;
    if (job.bound_host && other.host != job.bound_host) continue;
    other.withdrawing = true;
    vm_->withdraw(*other.task_id);
  }
}

// on_withdrawn(): a call queued on the VM came back unrun (asked back, or
// its slot's worker was lost): it waits again in its old place.
void RemotePool::on_withdrawn(TaskRecord* rec) {
  RemoteTask& job = task_of(rec);
  forget_vm_queued(rec);
  --job.attempts;
  job.task_id.reset();
  job.host = job.bound_host;
  enqueue(rec, true);
}

void RemotePool::enqueue(TaskRecord* rec, bool keep_key) {
  RemoteTask& job = task_of(rec);
  // A retried task goes ahead of everything else of its priority.
  std::uint64_t seq = job.attempts > 0 ? 0 : ++queue_seq_;
  if (!keep_key) job.queue_key = {-job.priority, seq};
  Queue& q = job.bound_host ? host_queues_[*job.bound_host] : any_host_queue_;
  while (q.count(job.queue_key)) ++job.queue_key.second;
  q.emplace(job.queue_key, rec);
  job.queued = true;
  ++queued_;
}

void RemotePool::dequeue(TaskRecord* rec) {
  RemoteTask& job = task_of(rec);
  Queue& q = job.bound_host ? host_queues_[*job.bound_host] : any_host_queue_;
  q.erase(job.queue_key);
  job.queued = false;
  --queued_;
}

// next_queued() is the queued spawn that a slot of one of `hosts` should
// take: first those bound to such a host, then those that take any host,
// best priority first.
TaskRecord* RemotePool::next_queued(const std::vector<HostId>& hosts) const {
  for (const HostId& h : hosts) {
    auto it = host_queues_.find(h);
    if (it != host_queues_.end() && !it->second.empty()) return it->second.begin()->second;
  }
  return any_host_queue_.empty() ? nullptr : any_host_queue_.begin()->second;
}

// start_queued() gives free slots to queued spawns, then queues more on the
// VM's busy slots while it has room (pipelining); a remote object's server
// is never queued so (calls reach it only while it runs).
void RemotePool::start_queued() {
  struct Spent {
    RemotePool& pool;
    ~Spent() { pool.room_spent_ = pool.queued_ > 0; }
  } spent{*this};
  // The VM's lists of hosts matter only to spawns bound to a host.
  const bool bound = queued_ > any_host_queue_.size();
  while (queued_ > 0 && vm_->free_slots() > 0) {
    TaskRecord* next = next_queued(bound ? vm_->hosts_with_free_slots() : std::vector<HostId>{});
    if (!next) return;
    dequeue(next);
    if (!start_on_vm(next)) {
      enqueue(next, true);
      return;
    }
  }
  // The room is asked once (it reads the clock, and each call queued takes
  // one place of it); a queue() that finds none after all ends the round.
  for (int room = queued_ > 0 ? vm_->queue_room() : 0; queued_ > 0 && room > 0; --room) {
    TaskRecord* next = next_queued(bound ? vm_->hosts_with_queue_room() : std::vector<HostId>{});
    if (!next || task_of(next).object) return;
    dequeue(next);
    if (!queue_on_vm(next)) {
      enqueue(next, true);
      return;
    }
  }
}

// wait() takes one message: the loop comes back for the next after the task
// it woke has run (asking again at once would cost a poll for nothing).
void RemotePool::wait(std::chrono::nanoseconds timeout) {
  try {
    // Spawns queued since the last wait may go to a busy slot's queue now,
    // while its task is young (ProcessVM queues only behind short ones).
    if (queued_ > 0 && !room_spent_) start_queued();
    room_spent_ = false;
    if (std::optional<Message> m = vm_->receive(timeout)) on_message(std::move(*m));
    start_queued();
  } catch (...) {
    fail_all(std::current_exception());
  }
}

// stalled(): nothing runs and no slot is coming back, so the queued spawns
// can never start.
bool RemotePool::stalled() {
  std::vector<TaskRecord*> stuck;
  for (auto& [key, rec] : any_host_queue_) stuck.push_back(rec);
  for (auto& [host, q] : host_queues_) {
    for (auto& [key, rec] : q) stuck.push_back(rec);
  }
  for (TaskRecord* rec : stuck) {
    dequeue(rec);
    std::string why = objects_.empty() ? " waits for a slot that no longer runs anything"
                                       : " waits for a slot, but the slots are held by remote objects that "
                                         "nothing will close now (close one first)";
    end(rec, std::make_exception_ptr(Error("coop: task " + std::to_string(rec->tid) + why)));
  }
  return !stuck.empty();
}

void RemotePool::on_message(Message&& m) {
  auto it = running_.find(m.task);
  if (it == running_.end()) {
    // The late end of a cancelled or timed-out task (its posts go nowhere).
    if (m.kind != Message::Kind::started && m.kind != Message::Kind::post) abandoned_.erase(m.task);
    return;
  }
  TaskRecord* rec = it->second;
  RemoteTask& job = task_of(rec);
  if (m.kind == Message::Kind::started) {
    job.timing.started = m.started;
    if (job.vm_queued) {  // it begins now: its timeout counts from here
      forget_vm_queued(rec);
      if (job.timeout) arm_timeout(rec, clock::now());
    }
    return;
  }
  if (m.kind == Message::Kind::withdrawn) {
    running_.erase(it);
    on_withdrawn(rec);
    return;
  }
  if (m.kind == Message::Kind::post) {
    on_post(rec, std::move(m));
    return;
  }
  running_.erase(it);
  forget_vm_queued(rec);
  job.timing.received = clock::now();
  job.output += m.output;
  switch (m.kind) {
    case Message::Kind::result:
      job.timing.started = m.started;
      job.timing.completed = m.completed;
      switch (m.failure) {
        case Message::Failure::none:
          try {
            job.decode(m.payload, rec->value);
            end(rec, nullptr);
          } catch (const std::exception& e) {
            end(rec, std::make_exception_ptr(Error("coop: cannot decode the result of " +
                                                   describe(rec->tid, job.call) + ": " + e.what())));
          }
          return;
        case Message::Failure::not_registered:
          end(rec, std::make_exception_ptr(NotRegistered(m.payload)));
          return;
        case Message::Failure::exception:
          end(rec, std::make_exception_ptr(RemoteError(m.error_type, m.payload, m.host)));
          return;
      }
      return;
    case Message::Kind::worker_lost:
      if (job.attempts <= job.retries) {
        if (!start_on_vm(rec)) {
          enqueue(rec);
          make_room_for(rec);
        }
        return;
      }
      end(rec, std::make_exception_ptr(WorkerLost(
                   "coop: " + describe(rec->tid, job.call) + " lost its worker" + describe_host(m.host) +
                   (m.reason.empty() ? "" : " (" + m.reason + ")") +
                   (job.attempts > 1 ? " on each of " + std::to_string(job.attempts) + " attempts" : ""))));
      return;
    case Message::Kind::exit:
      end(rec, std::make_exception_ptr(Cancelled("coop: " + describe(rec->tid, job.call) +
                                                 " ended without a result" + describe_host(m.host))));
      return;
    case Message::Kind::started:
    case Message::Kind::post:
    case Message::Kind::withdrawn:
      return;
  }
}

void RemotePool::end(TaskRecord* rec, std::exception_ptr error) {
  RemoteTask& job = task_of(rec);
  // A task that timed out, was cancelled or failed with its VM is received now.
  if (job.timing.received == clock::time_point{}) job.timing.received = clock::now();
  job.ended = true;
  --live_;
  if (job.spawner) engine_.unpark(std::exchange(job.spawner, nullptr));
  job.call = Call{};  // nothing will start it again
  if (job.object) {
    objects_.erase(job.object.get());
    job.object->on_end(error);
  }
  engine_.end_external(rec, std::move(error));
}

void RemotePool::abandon_running(TaskRecord* rec) {
  const TaskId id = *task_of(rec).task_id;
  running_.erase(id);
  forget_vm_queued(rec);
  abandoned_.insert(id);
  vm_->cancel(id);
}

void RemotePool::on_timer(void* self, TaskRecord* rec, Tid tid, std::uint64_t attempt) {
  // A timeout counts only if that very attempt still runs.
  if (rec->tid != tid || rec->state == State::finished) return;
  RemoteTask& job = task_of(rec);
  if (job.ended || job.queued || job.vm_queued || static_cast<std::uint64_t>(job.attempts) != attempt) return;
  static_cast<RemotePool*>(self)->time_out(rec);
}

void RemotePool::time_out(TaskRecord* rec) {
  RemoteTask& job = task_of(rec);
  std::string what = "coop: " + describe(rec->tid, job.call) + " ran past its timeout of " +
                     millis(*job.timeout) + describe_host(job.host);
  abandon_running(rec);
  end(rec, std::make_exception_ptr(Timeout(what)));
}

void RemotePool::cancel(RemoteTask& job, TaskRecord* rec) {
  std::string what = "coop: " + describe(rec->tid, job.call) + " was cancelled";
  if (job.queued) {
    dequeue(rec);
  } else {
    abandon_running(rec);
  }
  end(rec, std::make_exception_ptr(Cancelled(what)));
}

// fail_all() ends every remote task with `error` when the VM itself failed;
// local tasks go on.
void RemotePool::fail_all(std::exception_ptr error) {
  std::vector<TaskRecord*> recs;
  for (auto& [id, rec] : running_) recs.push_back(rec);
  for (auto& [key, rec] : any_host_queue_) recs.push_back(rec);
  for (auto& [host, q] : host_queues_) {
    for (auto& [key, rec] : q) recs.push_back(rec);
  }
  running_.clear();
  abandoned_.clear();
  vm_queued_.clear();
  any_host_queue_.clear();
  host_queues_.clear();
  queued_ = 0;
  for (TaskRecord* rec : recs) {
    task_of(rec).queued = false;
    task_of(rec).vm_queued = false;
    end(rec, error);
  }
}

}  // namespace coop::detail
