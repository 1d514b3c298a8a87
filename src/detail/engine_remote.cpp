// The engine's remote half: spawning on a VM, queues of spawns waiting for a
// slot, and the messages that end remote tasks.
#include <algorithm>
#include <string>

#include <cos/errors.hpp>
#include <cos/remote.hpp>

#include "detail/engine.hpp"

namespace coop::detail {
namespace {

std::string describe_host(const std::optional<HostId>& host) {
  return host ? " on host " + host->name() : std::string();
}

std::string describe(Tid tid, const Call& call) {
  return "task " + std::to_string(tid) + " (" + call.function + ")";
}

std::string millis(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

}  // namespace

int Engine::slots() const { return vm_ ? vm_->slots() : -1; }
int Engine::free_slots() const { return vm_ ? vm_->free_slots() : -1; }

TaskRef Engine::spawn_remote(const Spawn& opt, Call&& call, DecodeFn decode) {
  if (opt.retries < 0) throw Error("coop::spawn: retries must not be negative");
  if (opt.timeout && opt.timeout->count() <= 0) throw Error("coop::spawn: timeout must be positive");
  if (opt.host) {
    auto hosts = vm_->hosts();
    if (std::find(hosts.begin(), hosts.end(), *opt.host) == hosts.end()) {
      std::string known;
      for (const auto& h : hosts) known += (known.empty() ? "" : ", ") + h.name();
      throw Error("coop::spawn: the VM has no host '" + opt.host->name() + "' (it has: " + known + ")");
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

  TaskRecord* rec = new_record();
  rec->tid = next_tid_++;
  rec->remote = true;
  rec->job = std::make_unique<RemoteJob>();
  RemoteJob& job = *rec->job;
  job.call = std::move(call);
  job.decode = decode;
  job.host = opt.host;
  job.priority = opt.priority;
  job.timeout = opt.timeout;
  job.retries = opt.retries;
  rec->host = opt.host;
  rec->timing.submitted = clock::now();
  rec->parent = current_;
  ++current_->live_children;
  table_.insert(rec->tid, rec);
  ++live_;
  ++live_remote_;
  rec->state = State::blocked;  // a remote task is never on the ready queue

  TaskRef ref{rec, rec->tid, serial_};
  bool started = false;
  try {
    started = slot_free && start_on_vm(rec);
  } catch (...) {
    // The VM refused (it failed or was finalized): as if never spawned, tid included.
    table_.erase(rec->tid);
    --next_tid_;
    --current_->live_children;
    --live_;
    --live_remote_;
    recycle(rec);
    throw;
  }
  if (!started) {
    enqueue(rec);
    if (opt.block) {
      job.spawner = current_;
      block(WaitKind::slot);
    }
  }
  return ref;
}

bool Engine::start_on_vm(TaskRecord* rec) {
  RemoteJob& job = *rec->job;
  std::optional<TaskId> id = vm_->start(job.call, job.host);
  if (!id) return false;
  ++job.attempts;
  rec->task_id = id;
  rec->host = vm_->host_of(*id);
  rec->timing.started = clock::now();
  running_.emplace(*id, rec);
  if (job.timeout) {
    timers_.push(Timer{rec->timing.started + std::chrono::ceil<clock::duration>(*job.timeout),
                       timer_seq_++, rec, rec->tid, id});
  }
  if (job.spawner) wake(std::exchange(job.spawner, nullptr));
  return true;
}

void Engine::enqueue(TaskRecord* rec) {
  RemoteJob& job = *rec->job;
  // A retried task goes ahead of everything else of its priority.
  std::uint64_t seq = job.attempts > 0 ? 0 : ++queue_seq_;
  job.queue_key = {-job.priority, seq};
  Queue& q = job.host ? host_queues_[*job.host] : any_host_queue_;
  while (q.count(job.queue_key)) ++job.queue_key.second;
  q.emplace(job.queue_key, rec);
  job.queued = true;
  ++queued_;
}

void Engine::dequeue(TaskRecord* rec) {
  RemoteJob& job = *rec->job;
  Queue& q = job.host ? host_queues_[*job.host] : any_host_queue_;
  q.erase(job.queue_key);
  job.queued = false;
  --queued_;
}

// start_queued() gives free slots to queued spawns: first those bound to the
// slot's host, then those that take any host, best priority first.
void Engine::start_queued() {
  while (vm_ && vm_->free_slots() > 0) {
    TaskRecord* next = nullptr;
    for (const HostId& h : vm_->hosts_with_free_slots()) {
      auto it = host_queues_.find(h);
      if (it != host_queues_.end() && !it->second.empty()) {
        next = it->second.begin()->second;
        break;
      }
    }
    if (!next && !any_host_queue_.empty()) next = any_host_queue_.begin()->second;
    if (!next) return;
    dequeue(next);
    if (!start_on_vm(next)) {
      enqueue(next);
      return;
    }
  }
}

// receive() takes one message: the loop comes back for the next after the
// task it woke has run (asking again at once would cost a poll for nothing).
void Engine::receive(std::chrono::nanoseconds timeout) {
  try {
    if (std::optional<Message> m = vm_->receive(timeout)) on_message(std::move(*m));
    start_queued();
  } catch (...) {
    fail_all_remote(std::current_exception());
  }
}

void Engine::on_message(Message&& m) {
  auto it = running_.find(m.task);
  if (it == running_.end()) {
    abandoned_.erase(m.task);  // the late end of a cancelled or timed-out task
    return;
  }
  TaskRecord* rec = it->second;
  if (m.kind == Message::Kind::started) {
    rec->timing.started = m.started;
    return;
  }
  running_.erase(it);
  rec->timing.received = clock::now();
  rec->output += m.output;
  RemoteJob& job = *rec->job;
  switch (m.kind) {
    case Message::Kind::result: {
      rec->timing.started = m.started;
      rec->timing.completed = m.completed;
      if (m.ok) {
        try {
          job.decode(m.payload, rec->value);
          remote_ended(rec, nullptr);
        } catch (const std::exception& e) {
          remote_ended(rec, std::make_exception_ptr(Error(
                                "coop: cannot decode the result of " + describe(rec->tid, job.call) + ": " +
                                e.what())));
        }
      } else if (m.failure == Message::Failure::not_registered) {
        remote_ended(rec, std::make_exception_ptr(NotRegistered(m.payload)));
      } else {
        remote_ended(rec, std::make_exception_ptr(RemoteError(m.error_type, m.payload, m.host)));
      }
      return;
    }
    case Message::Kind::worker_lost:
      if (job.attempts <= job.retries) {
        if (!start_on_vm(rec)) enqueue(rec);
        return;
      }
      remote_ended(rec, std::make_exception_ptr(WorkerLost(
                            "coop: " + describe(rec->tid, job.call) + " lost its worker" +
                            describe_host(m.host) + (m.reason.empty() ? "" : " (" + m.reason + ")") +
                            (job.attempts > 1 ? " on each of " + std::to_string(job.attempts) + " attempts"
                                              : ""))));
      return;
    case Message::Kind::exit:
      remote_ended(rec, std::make_exception_ptr(Cancelled(
                            "coop: " + describe(rec->tid, job.call) + " ended without a result" +
                            describe_host(m.host))));
      return;
    case Message::Kind::started:
      return;
  }
}

void Engine::remote_ended(TaskRecord* rec, std::exception_ptr error) {
  if (error) rec->value.set_error(std::move(error));
  // A task that timed out, was cancelled or failed with its VM is received now.
  if (rec->timing.received == clock::time_point{}) rec->timing.received = clock::now();
  --live_remote_;
  if (rec->job->spawner) wake(std::exchange(rec->job->spawner, nullptr));
  rec->job.reset();
  ended(rec);
}

void Engine::abandon_running(TaskRecord* rec) {
  running_.erase(*rec->task_id);
  abandoned_.insert(*rec->task_id);
  vm_->cancel(*rec->task_id);
}

void Engine::time_out(TaskRecord* rec) {
  std::string what = "coop: " + describe(rec->tid, rec->job->call) + " ran past its timeout of " +
                     millis(*rec->job->timeout) + describe_host(rec->host);
  abandon_running(rec);
  remote_ended(rec, std::make_exception_ptr(Timeout(what)));
}

bool Engine::cancel(const TaskRef& ref) {
  if (ref.serial != serial_) throw Error("Task::cancel: the task belongs to another scheduler");
  TaskRecord* rec = ref.rec;
  if (rec->tid != ref.tid || rec->released) return false;  // joined: it had ended
  if (rec->parent != current_) {
    throw Error("Task::cancel: task " + std::to_string(ref.tid) + " is not a child of task " +
                std::to_string(current_->tid));
  }
  if (rec->state == State::finished) return false;
  if (!rec->remote) throw Error("Task::cancel: only remote tasks can be cancelled");
  std::string what = "coop: " + describe(rec->tid, rec->job->call) + " was cancelled";
  if (rec->job->queued) {
    dequeue(rec);
  } else {
    abandon_running(rec);
  }
  remote_ended(rec, std::make_exception_ptr(Cancelled(what)));
  return true;
}

// fail_all_remote() ends every remote task with `error` when the VM itself
// failed; local tasks go on.
void Engine::fail_all_remote(std::exception_ptr error) {
  std::vector<TaskRecord*> recs;
  for (auto& [id, rec] : running_) recs.push_back(rec);
  for (auto& [key, rec] : any_host_queue_) recs.push_back(rec);
  for (auto& [host, q] : host_queues_) {
    for (auto& [key, rec] : q) recs.push_back(rec);
  }
  running_.clear();
  abandoned_.clear();
  any_host_queue_.clear();
  host_queues_.clear();
  queued_ = 0;
  for (TaskRecord* rec : recs) {
    rec->job->queued = false;
    remote_ended(rec, error);
  }
}

}  // namespace coop::detail
