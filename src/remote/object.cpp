// The spawner's side of a remote object: the detached remote task that
// serves it (started through the pool), one record per method call that
// ends when that call's result comes back, and the object's end (closed,
// or its worker lost) failing whatever is still pending.
#include <map>
#include <memory>

#include <cos/errors.hpp>
#include <cos/object.hpp>

#include "core/engine.hpp"
#include "remote/pool.hpp"
#include "remote/wire.hpp"

namespace coop::detail {
namespace {

using wire::Envelope;
using wire::Tag;

// ObjectCall is one method call as the core keeps it: where it runs (the
// object's slot) and when.
struct ObjectCall final : External {
  DecodeFn decode = nullptr;
  std::optional<HostId> host;
  std::optional<TaskId> task_id;
  Timing timing;

  void describe(TaskInfo& info) const override {
    info.host = host;
    info.task_id = task_id;
    info.timing = timing;
  }
  void cancel(TaskRecord*) override {
    throw Error("Task::cancel: a call on a remote object cannot be cancelled (it runs in turn with the "
                "object's other calls; close the object instead)");
  }
};

}  // namespace

class ObjectState final : public ObjectSink {
 public:
  ObjectState(Engine& engine, RemotePool& pool, std::string name)
      : engine_(engine), pool_(pool), name_(std::move(name)) {}

  void on_started(const TaskId& task, const HostId& host) override {
    task_ = task;
    host_ = host;
  }

  void on_post(Envelope&& e) override {
    if (e.tag == Tag::built) {
      built_ = true;
      builder_.notify();
      return;
    }
    auto it = pending_.find(e.seq);
    if (it == pending_.end()) return;
    TaskRecord* rec = it->second;
    pending_.erase(it);
    auto& call = *static_cast<ObjectCall*>(rec->external);
    call.timing.started = e.started;
    call.timing.completed = e.completed;
    call.timing.received = clock::now();
    switch (e.failure) {
      case Message::Failure::none:
        try {
          call.decode(e.body, rec->value);
          engine_.end_external(rec, nullptr);
        } catch (const std::exception& ex) {
          engine_.end_external(rec, std::make_exception_ptr(Error("coop: cannot decode the result of a call on " +
                                                                  what() + ": " + ex.what())));
        }
        return;
      case Message::Failure::not_registered:
        engine_.end_external(rec, std::make_exception_ptr(NotRegistered("method " + e.body + " of " + name_)));
        return;
      case Message::Failure::exception:
        engine_.end_external(rec, std::make_exception_ptr(RemoteError(e.error_type, e.body, host_)));
        return;
    }
  }

  void on_end(std::exception_ptr& error) override {
    ended_ = true;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const WorkerLost& lost) {
        failure_ = std::make_exception_ptr(WorkerLost("coop: " + what() + " lost its worker; its state is gone, so "
                                                      "its pending and later calls fail (" + lost.what() + ")"));
      } catch (...) {
        failure_ = error;
      }
    } else {
      failure_ = std::make_exception_ptr(Error("coop: " + what() + " is closed"));
    }
    bool handed_on = !pending_.empty() || !built_;  // make_object rethrows it
    std::map<std::uint64_t, TaskRecord*> pending;
    pending.swap(pending_);
    for (auto& [seq, rec] : pending) {
      static_cast<ObjectCall*>(rec->external)->timing.received = clock::now();
      engine_.end_external(rec, failure_);
    }
    builder_.notify();
    if (handed_on) error = nullptr;
  }

  void close() noexcept override {
    if (closed_ || ended_ || !task_) return;
    closed_ = true;
    try {
      pool_.vm()->send(*task_, wire::encode(Envelope{.tag = Tag::close}));
    } catch (...) {
      // The VM failed: its tasks end with that error, this one too.
    }
  }

  bool idle() const override { return built_ && !ended_ && !closed_ && pending_.empty(); }

  // wait_built() yields until the object is built, or rethrows why not.
  void wait_built() {
    while (!built_ && !ended_) builder_.wait();
    if (!built_) std::rethrow_exception(failure_);
  }

  TaskRef call(const std::string& method, std::string&& args, DecodeFn decode) {
    Engine& e = Engine::current_checked("Remote::call");
    if (&e != &engine_) throw Error("Remote::call: the object belongs to another scheduler");
    if (closed_) throw Error("Remote::call: " + what() + " is closed");
    auto c = std::make_unique<ObjectCall>();
    c->decode = decode;
    c->host = host_;
    c->task_id = task_;
    c->timing.submitted = clock::now();
    TaskRecord* rec = engine_.add_external(c.release());
    TaskRef ref{rec, rec->tid, engine_.serial()};
    if (ended_) {
      engine_.end_external(rec, failure_);
      return ref;
    }
    Envelope m{.tag = Tag::method, .seq = ++next_seq_, .name = method, .body = std::move(args)};
    pending_.emplace(m.seq, rec);
    pool_.vm()->send(*task_, wire::encode(m));
    return ref;
  }

  void set_tid(Tid tid) { tid_ = tid; }
  const std::optional<HostId>& host() const { return host_; }

 private:
  std::string what() const { return "remote object " + name_ + " (task " + std::to_string(tid_) + ")"; }

  Engine& engine_;
  RemotePool& pool_;
  std::string name_;
  Tid tid_ = invalid_tid;
  std::optional<TaskId> task_;
  std::optional<HostId> host_;
  bool built_ = false;
  bool closed_ = false;
  bool ended_ = false;
  std::exception_ptr failure_;
  Waiter builder_;
  std::uint64_t next_seq_ = 0;
  std::map<std::uint64_t, TaskRecord*> pending_;  // calls sent, by sequence number
};

std::shared_ptr<ObjectState> make_object(const Spawn& where, Call&& ctor) {
  Engine& e = Engine::current_checked("coop::make_remote");
  RemotePool* pool = RemotePool::current();
  if (!pool || !pool->vm()) throw Error("coop::make_remote: the scheduler has no VM");
  if (!where.block) {
    throw Error("coop::make_remote: block = false is not supported (an object waits for its slot and its "
                "constructor)");
  }
  if (where.timeout) throw Error("coop::make_remote: a remote object cannot have a timeout");
  if (where.retries != 0) {
    throw Error("coop::make_remote: a remote object cannot be retried (a fresh instance would lack the lost "
                "state)");
  }
  auto state = std::make_shared<ObjectState>(e, *pool, ctor.function);
  TaskRef server = pool->spawn(where, std::move(ctor), &decode<void>, state);
  state->set_tid(server.tid);
  state->wait_built();
  return state;
}

TaskRef call_object(ObjectState& object, const std::string& method, std::string&& args, DecodeFn decode) {
  return object.call(method, std::move(args), decode);
}

std::optional<HostId> object_host(const ObjectState& object) { return object.host(); }

void close_object(ObjectState& object) noexcept { object.close(); }

}  // namespace coop::detail
