#include <cos/scheduler.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include <cos/errors.hpp>
#include <cos/spawn.hpp>
#include <cos/vm.hpp>

#include "detail/engine.hpp"

namespace coop {
namespace {
thread_local Scheduler* tls_scheduler = nullptr;
}

Scheduler::Scheduler(Options options) : engine_(std::make_unique<detail::Engine>(std::move(options))) {
  tls_scheduler = this;
}

Scheduler::~Scheduler() {
  try {
    engine_->drain();
    if (engine_->vm()) engine_->vm()->finalize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cos: the scheduler could not finish its tasks: %s\n", e.what());
    std::abort();
  }
  tls_scheduler = nullptr;
}

Scheduler& Scheduler::current() {
  if (!tls_scheduler) throw Error("coop::Scheduler::current: this thread has no scheduler");
  return *tls_scheduler;
}

Scheduler* Scheduler::current_or_null() noexcept { return tls_scheduler; }

void Scheduler::set_vm(std::shared_ptr<VM> vm) { engine_->set_vm(std::move(vm)); }
const std::shared_ptr<VM>& Scheduler::vm() const { return engine_->vm(); }
int Scheduler::slots() const { return engine_->slots(); }
int Scheduler::free_slots() const { return engine_->free_slots(); }
std::size_t Scheduler::task_count() const { return engine_->task_count(); }
std::size_t Scheduler::remote_task_count() const { return engine_->remote_task_count(); }
std::size_t Scheduler::local_task_count() const {
  return engine_->task_count() - engine_->remote_task_count();
}
std::size_t Scheduler::finished_unjoined() const { return engine_->finished_unjoined(); }
void Scheduler::drain() { engine_->drain(); }

Tid current_tid() { return detail::Engine::current_checked("coop::current_tid").current_tid(); }

namespace detail {

LocalSpawn prepare_local(std::size_t size, std::size_t align, RunFn run) {
  return Engine::current_checked("coop::spawn").prepare_local(size, align, run);
}
TaskRef start_local(const LocalSpawn& spawn) { return spawn.engine->start_local(spawn.rec); }
void abandon_local(const LocalSpawn& spawn) noexcept { spawn.engine->abandon_local(spawn); }

TaskInfo info_of(const TaskRef& ref) {
  Engine* e = Engine::current();
  if (!e) return TaskInfo{.done = true};
  return e->info_of(ref);
}
JoinedTask join_task(const TaskRef& ref) {
  Engine& e = Engine::current_checked("Task::join");
  TaskRecord* rec = e.join_task(ref);
  return {&e, rec, &rec->value, rec->remote};
}
void release(const JoinedTask& joined) noexcept { joined.engine->release(joined.rec); }
std::unique_ptr<TaskInfo> remote_info(const JoinedTask& joined) {
  return std::make_unique<TaskInfo>(record_info(joined.rec));
}

bool has_vm() {
  Engine* e = Engine::current();
  return e && e->has_vm();
}
TaskRef spawn_remote(const Spawn& options, Call&& call, DecodeFn decode) {
  return Engine::current_checked("coop::spawn").spawn_remote(options, std::move(call), decode);
}
bool cancel(const TaskRef& ref) { return Engine::current_checked("Task::cancel").cancel(ref); }

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
