// scheduler.cpp: coop::Scheduler, the local core and the remote pool of one
// thread, and the entry points that the public templates call.
#include <cos/scheduler.hpp>

#include <cstdio>
#include <exception>

#include <cos/errors.hpp>
#include <cos/remote.hpp>
#include <cos/spawn.hpp>
#include <cos/vm.hpp>

#include "core/engine.hpp"
#include "remote/pool.hpp"
#include "remote/storage.hpp"

namespace coop {
namespace {
thread_local Scheduler* tls_scheduler = nullptr;
}

struct Scheduler::Impl {
  detail::Engine engine;
  detail::RemotePool pool{engine};
  detail::SpawnerMirrors mirrors;  // after the engine, which refuses a second scheduler on this thread
  explicit Impl(Options options) : engine(options), mirrors(options.mirrors) {
    if (options.vm) pool.set_vm(std::move(options.vm));
  }
};

Scheduler::Scheduler(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->engine.set_events(impl_->pool.vm() ? &impl_->pool : nullptr);
  impl_->pool.make_current(true);
  tls_scheduler = this;
}

Scheduler::~Scheduler() {
  try {
    impl_->engine.drain();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cos: the scheduler could not finish its tasks: %s\n", e.what());
  }
  try {
    if (impl_->pool.vm()) impl_->pool.vm()->finalize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cos: the scheduler's VM could not be finalized: %s\n", e.what());
  }
  impl_->pool.make_current(false);
  tls_scheduler = nullptr;
}

Scheduler& Scheduler::current() {
  if (!tls_scheduler) throw Error("coop::Scheduler::current: this thread has no scheduler");
  return *tls_scheduler;
}

Scheduler* Scheduler::current_or_null() noexcept { return tls_scheduler; }

void Scheduler::set_vm(std::shared_ptr<VM> vm) {
  impl_->pool.set_vm(std::move(vm));
  impl_->engine.set_events(impl_->pool.vm() ? &impl_->pool : nullptr);
}
const std::shared_ptr<VM>& Scheduler::vm() const { return impl_->pool.vm(); }
int Scheduler::slots() const { return impl_->pool.slots(); }
int Scheduler::free_slots() const { return impl_->pool.free_slots(); }
std::size_t Scheduler::task_count() const { return impl_->engine.task_count(); }
std::size_t Scheduler::remote_task_count() const { return impl_->pool.task_count(); }
std::size_t Scheduler::local_task_count() const { return task_count() - remote_task_count(); }
std::size_t Scheduler::finished_unjoined() const { return impl_->engine.finished_unjoined(); }
void Scheduler::drain() { impl_->engine.drain(); }

Tid current_tid() { return detail::Engine::current_checked("coop::current_tid").current_tid(); }

namespace detail {

LocalSpawn prepare_local(std::size_t size, std::size_t align, RunFn run) {
  return Engine::current_checked("coop::spawn").prepare_local(size, align, run);
}
TaskRef start_local(const LocalSpawn& spawn) { return spawn.engine->start_local(spawn.rec); }
void abandon_local(const LocalSpawn& spawn) noexcept { spawn.engine->abandon_local(spawn); }
void start_detached(const LocalSpawn& spawn, bool now) { spawn.engine->start_detached(spawn.rec, now); }
void on_done(const TaskRef& ref, DoneHook* hook) {
  Engine* e = Engine::current();
  if (!e) {
    delete hook;
    throw Error("Task::on_done called outside a scheduler (make a coop::Scheduler or use coop::run)");
  }
  e->on_done(ref, hook);
}

TaskInfo info_of(const TaskRef& ref) {
  Engine* e = Engine::current();
  if (!e) return TaskInfo{.done = true};
  return e->info_of(ref);
}
JoinedTask join_task(const TaskRef& ref) {
  Engine& e = Engine::current_checked("Task::join");
  TaskRecord* rec = e.join_task(ref);
  return {&e, rec, &rec->value, rec->external != nullptr};
}
void release(const JoinedTask& joined) noexcept { joined.engine->release(joined.rec); }
std::unique_ptr<TaskInfo> remote_info(const JoinedTask& joined) {
  return std::make_unique<TaskInfo>(joined.engine->record_info(joined.rec));
}
int wait_any(const TaskRef* refs, std::size_t n, const clock::time_point* deadline) {
  return Engine::current_checked("coop::wait").wait_any(refs, n, deadline);
}
bool cancel(const TaskRef& ref) { return Engine::current_checked("Task::cancel").cancel(ref); }

bool has_vm() {
  RemotePool* p = RemotePool::current();
  return p && p->vm();
}
TaskRef spawn_remote(const Spawn& options, Call&& call, DecodeFn decode) {
  Engine::current_checked("coop::spawn");
  return RemotePool::current()->spawn(options, std::move(call), decode);
}
void not_remotable() {
  throw Error(
      "coop::spawn: a lambda or function object cannot run remotely (it cannot travel to another "
      "process); register a function with COS_REMOTE, or spawn with Spawn{.remote = false}");
}

void Waiter::wait() {
  Engine& e = Engine::current_checked("coop: waiting on a stream");
  rec_ = e.running();
  struct Clear {
    TaskRecord*& r;
    ~Clear() { r = nullptr; }
  } clear{rec_};
  e.park();
}

void Waiter::notify() {
  if (rec_) Engine::current()->unpark(std::exchange(rec_, nullptr));
}

void yield_now() { Engine::current_checked("coop::yield").yield(); }
void sleep_until(clock::time_point deadline) {
  Engine::current_checked("coop::sleep_for").sleep_until(deadline);
}

}  // namespace detail
}  // namespace coop
