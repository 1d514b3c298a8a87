#include "core/engine.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>

#include <cos/errors.hpp>


#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

namespace coop::detail {
namespace ctx = boost::context::detail;

namespace {

thread_local Engine* tls_engine = nullptr;
std::atomic<std::uint64_t> next_serial{1};

// Closures up to this size live at the top of the child's stack; larger ones
// (rare: big arrays captured by value) go to the heap.
constexpr std::size_t max_closure_on_stack = 1024;
// A ready task runs at most this many switches before timers and the VM get a look.
constexpr int poll_interval = 64;
constexpr std::size_t loop_stack_size = 256 * 1024;
constexpr std::size_t min_stack_size = 16 * 1024;
constexpr std::size_t records_per_chunk = 256;

std::size_t round_to_pages(std::size_t n) {
  std::size_t page = StackPool::page_size();
  return (n + page - 1) / page * page;
}

}  // namespace

Engine* Engine::current() noexcept { return tls_engine; }

bool Engine::overflow_at(const void* address, std::size_t reach, long long& tid, std::size_t& size) noexcept {
  const Engine* e = tls_engine;
  if (!e || !e->current_) return false;
  const Stack& s = e->current_->stack;
  if (!s || !s.guard) return false;
  auto a = reinterpret_cast<std::uintptr_t>(address);
  auto bottom = reinterpret_cast<std::uintptr_t>(s.bottom());
  if (a >= bottom || bottom - a > s.guard + reach) return false;
  tid = e->current_->tid;
  size = s.size;
  return true;
}

Engine& Engine::current_checked(const char* what) {
  if (!tls_engine) {
    throw Error(std::string(what) + " called outside a scheduler (make a coop::Scheduler or use coop::run)");
  }
  return *tls_engine;
}

Engine::Engine(Options options)
    : options_(std::move(options)),
      serial_(next_serial.fetch_add(1)),
      stacks_(round_to_pages(options_.stack_size), options_.guard_pages),
      current_(&main_),
      eh_(eh_globals()) {
  if (options_.stack_size < min_stack_size) {
    throw Error("coop::Scheduler: stack_size " + std::to_string(options_.stack_size) +
                " is too small (at least " + std::to_string(min_stack_size) + " bytes)");
  }
  if (tls_engine) throw Error("coop::Scheduler: this thread already has a scheduler");
  if (options_.guard_pages) overflow_guard_.emplace();
  main_.tid = main_tid;
  main_.state = State::running;
  loop_.tid = scheduler_tid;
  loop_.stack = StackPool::map(loop_stack_size, true);
  loop_.ctx = ctx::make_fcontext(loop_.stack.top(), loop_.stack.size, &Engine::loop_entry);
  loop_.state = State::ready;
  tls_engine = this;
}

Engine::~Engine() {
  tls_engine = nullptr;
  StackPool::unmap(loop_.stack);
  // Records still in the table are finished children of the main task that
  // nobody joined; drain() reported their errors.
}

// ---- records -------------------------------------------------------------

TaskRecord* Engine::new_record() {
  if (!free_records_) {
    chunks_.push_back(std::make_unique<TaskRecord[]>(records_per_chunk));
    TaskRecord* chunk = chunks_.back().get();
    for (std::size_t i = 0; i < records_per_chunk; ++i) {
      chunk[i].next_free = free_records_;
      free_records_ = &chunk[i];
    }
  }
  TaskRecord* rec = free_records_;
  free_records_ = rec->next_free;
  rec->next_free = nullptr;
  return rec;
}

void Engine::recycle(TaskRecord* rec) noexcept {
  // Fields a finished task always leaves clean (ctx, among, woken_by,
  // wake_error, wait) are not touched again.
  rec->tid = invalid_tid;  // stale handles see the mismatch
  rec->state = State::created;
  rec->released = false;
  rec->detached = false;
  rec->value.clear();
  if (rec->external) delete std::exchange(rec->external, nullptr);
  rec->next_free = free_records_;
  free_records_ = rec;
}

void Engine::maybe_recycle(TaskRecord* rec) noexcept {
  if (rec->released && rec->live_children == 0 && !rec->stack && rec->state == State::finished) {
    recycle(rec);
  }
}

void Engine::drop(TaskRecord* rec) noexcept {
  if (rec->value.has_error()) {
    try {
      lost_.emplace_back(rec->tid, rec->value.error());
    } catch (...) {
    }
  }
  release(rec);
}

void Engine::release(TaskRecord* rec) noexcept {
  table_.erase(rec->tid);
  rec->released = true;
  maybe_recycle(rec);
}

// ---- spawning ------------------------------------------------------------

LocalSpawn Engine::prepare_local(std::size_t size, std::size_t align, RunFn run) {
  TaskRecord* rec = new_record();
  try {
    rec->stack = stacks_.allocate();
  } catch (...) {
    recycle(rec);
    throw;
  }
  rec->run = run;
  char* sp = rec->stack.top();
  if (size <= max_closure_on_stack && align <= 64) {
    sp = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(sp) - size) & ~(align - 1));
    rec->closure = sp;
    rec->closure_align = 0;
  } else {
    rec->closure = ::operator new(size, std::align_val_t(align));
    rec->closure_align = align;
  }
  sp = reinterpret_cast<char*>(reinterpret_cast<std::uintptr_t>(sp) & ~std::uintptr_t(63));
  rec->ctx = ctx::make_fcontext(sp, static_cast<std::size_t>(sp - rec->stack.bottom()),
                                &Engine::task_entry);
  return {this, rec, rec->closure};
}

void Engine::abandon_local(const LocalSpawn& spawn) noexcept {
  TaskRecord* rec = spawn.rec;
  if (rec->closure_align) ::operator delete(rec->closure, std::align_val_t(rec->closure_align));
  rec->closure_align = 0;
  stacks_.release(rec->stack);
  rec->stack = {};
  recycle(rec);
}

TaskRef Engine::start_local(TaskRecord* rec) {
  // The tid is taken only now: a spawn whose closure failed uses none.
  rec->tid = next_tid_++;
  TaskRef ref{rec, rec->tid, serial_};
  TaskRecord* parent = current_;
  rec->parent = parent;
  ++parent->live_children;
  table_.insert(rec->tid, rec);
  ++live_;
  // Child first: the parent waits at the head of the ready queue.
  parent->state = State::ready;
  ready_.push_front(parent);
  switch_to(rec);
  return ref;
}

void Engine::task_entry(boost_transfer_t t) {
  Engine* e = tls_engine;
  e->resumed(t.fctx, t.data);
  TaskRecord* self = e->current_;
  self->run(self->closure, self->value);
  if (self->closure_align) {
    ::operator delete(self->closure, std::align_val_t(self->closure_align));
    self->closure_align = 0;
  }
  e->finish_current();
}

void Engine::finish_current() {
  TaskRecord* self = current_;
  check_canary(self);
  ended(self);
  switch_to(next_to_run());
  std::abort();  // unreachable: nothing resumes a finished task
}

void Engine::ended(TaskRecord* rec) {
  rec->state = State::finished;
  --live_;
  // Callbacks first: they read the outcome before any join can take it.
  while (DoneHook* h = rec->done_hooks) {
    rec->done_hooks = h->next;
    h->fire(rec->value, false);
    delete h;
  }
  // Its unjoined children can never be joined now.
  while (!rec->finished.empty()) {
    auto& c = static_cast<TaskRecord&>(rec->finished.oldest());
    rec->finished.erase(c);
    drop(&c);
  }
  if (main_.wait == WaitKind::drain) {
    if (live_ == 1) {
      wake(&main_);
    } else if (events_) {
      events_->draining(live_ - 1);
    }
  }
  child_finished(rec);  // last: it may recycle an orphan's record
}

void Engine::child_finished(TaskRecord* c) {
  if (c->detached) {
    drop(c);  // nobody joins it; an exception it threw is reported at shutdown
    return;
  }
  TaskRecord* p = c->parent;
  --p->live_children;
  if (p->state == State::finished) {
    drop(c);  // an orphan: its parent ended first
    maybe_recycle(p);
    return;
  }
  // `among` is valid only while the parent waits in a join or a watch.
  auto among = [p, c] {
    return p->among_n == 0 || std::find(p->among, p->among + p->among_n, c->tid) != p->among + p->among_n;
  };
  if (p->wait == WaitKind::join && among()) {
    p->woken_by = c;
    wake(p);
  } else {
    p->finished.insert(*c);
    if (p->wait == WaitKind::watch && among()) wake(p);  // it waits without joining
  }
}

// ---- switching -----------------------------------------------------------

void Engine::wake(TaskRecord* rec) {
  rec->wait = WaitKind::none;
  rec->state = State::ready;
  ready_.push_back(rec);
}

void Engine::block(WaitKind why) {
  TaskRecord* self = current_;
  self->wait = why;
  self->state = State::blocked;
  suspend();
  if (self->wake_error) std::rethrow_exception(std::exchange(self->wake_error, nullptr));
}

TaskRecord* Engine::next_to_run() {
  if (!ready_.empty()) {
    bool pending = !timers_.empty() || events_busy();
    if (!pending || --poll_budget_ > 0) return ready_.pop_front();
  }
  return &loop_;
}

void Engine::suspend() {
  TaskRecord* next = next_to_run();
  if (next == current_) {
    current_->state = State::running;
    return;
  }
  switch_to(next);
}

void Engine::switch_to(TaskRecord* next) {
  TaskRecord* prev = current_;
  if (prev->stack && prev != &loop_) check_canary(prev);
  current_ = next;
  next->state = State::running;
  // The C++ runtime keeps the exceptions being handled per thread; each task
  // keeps its own, so a task may yield inside a catch block.
  prev->eh = *eh_;
  *eh_ = next->eh;
#if defined(__SANITIZE_ADDRESS__)
  const void* bottom = next->stack ? next->stack.bottom() : next->asan_bottom;
  std::size_t size = next->stack ? next->stack.size : next->asan_size;
  __sanitizer_start_switch_fiber(prev->state == State::finished ? nullptr : &prev->asan_fake_stack,
                                 bottom, size);
#endif
  ctx::transfer_t t = ctx::jump_fcontext(next->ctx, prev);
  resumed(t.fctx, t.data);
}

void Engine::resumed(void* from_ctx, void* from_rec) {
  auto* from = static_cast<TaskRecord*>(from_rec);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_finish_switch_fiber(current_->asan_fake_stack, &from->asan_bottom, &from->asan_size);
#endif
  if (from->state == State::finished) {
    stacks_.release(from->stack);
    from->stack = {};
    maybe_recycle(from);
  } else {
    from->ctx = from_ctx;
  }
}

void Engine::overflowed(const TaskRecord* rec) const {
  std::fprintf(stderr,
               "cos: task %lld overflowed its %zu-byte stack; memory next to it may be corrupt. "
               "Raise Options::stack_size, or set Options::guard_pages to stop at the overflow.\n",
               static_cast<long long>(rec->tid), rec->stack.size);
  std::abort();
}

// ---- the loop (tid 0) ----------------------------------------------------

void Engine::loop_entry(boost_transfer_t t) {
  Engine* e = tls_engine;
  e->resumed(t.fctx, t.data);
  e->loop();
}

void Engine::loop() {
  for (;;) {
    poll_budget_ = poll_interval;
    if (!service(ready_.empty())) wake_stalled();
    switch_to(ready_.pop_front());
  }
}

// service() fires due timers and takes the VM's messages. With may_block it
// waits, in the VM or for the next timer, until some task is ready; it
// returns false when nothing could ever make one ready.
bool Engine::service(bool may_block) {
  fire_timers();
  // Between ready tasks the VM is polled; with nothing ready it is waited on
  // at once (a poll first would cost a system call for nothing).
  if (events_busy() && !(may_block && ready_.empty())) events_->wait(std::chrono::nanoseconds(0));
  while (may_block && ready_.empty()) {
    bool vm_pending = events_busy();
    if (timers_.empty() && !vm_pending) return false;
    if (vm_pending) {
      auto wait = timers_.empty() ? std::chrono::nanoseconds(-1)
                                  : std::max(std::chrono::nanoseconds(0),
                                             std::chrono::ceil<std::chrono::nanoseconds>(
                                                 timers_.top().deadline - clock::now()));
      events_->wait(wait);
    } else {
      std::this_thread::sleep_until(timers_.top().deadline);
    }
    fire_timers();
  }
  return true;
}

void Engine::fire_timers() {
  if (timers_.empty()) return;
  clock::time_point now = clock::now();
  while (!timers_.empty() && timers_.top().deadline <= now) {
    Timer t = timers_.top();
    timers_.pop();
    fire(t);
  }
}

void Engine::fire(const Timer& t) {
  if (!t.fn) {
    // A sleep, or a watch that may have ended before its deadline.
    TaskRecord* rec = t.rec;
    if (rec->tid == t.tid && rec->state == State::blocked && rec->wait_seq == t.token &&
        (rec->wait == WaitKind::sleep || rec->wait == WaitKind::watch)) {
      wake(rec);
    }
    return;
  }
  t.fn(t.context, t.rec, t.tid, t.token);
}

void Engine::add_timer(clock::time_point deadline, TimerFn fn, void* context, TaskRecord* rec,
                       std::uint64_t token) {
  timers_.push(Timer{deadline, timer_seq_++, rec, rec->tid, fn, context, token});
}

// wake_stalled() runs when every task waits for something that can no longer
// happen. First the event source ends the external tasks that can never run
// (a queued remote task that no slot will take); if that made nothing ready,
// each blocked call throws coop::Error in its task instead of hanging.
void Engine::wake_stalled() {
  if (events_ && events_->stalled() && !ready_.empty()) return;
  std::vector<TaskRecord*> stuck;
  auto collect = [&](TaskRecord* rec) {
    if (rec->state == State::blocked && rec->wait != WaitKind::drain && !rec->external) stuck.push_back(rec);
  };
  collect(&main_);
  table_.for_each(collect);
  for (TaskRecord* rec : stuck) {
    rec->wake_error = std::make_exception_ptr(
        Error("coop: " + task_name(rec->tid) + " waits for something that can never happen (deadlock)"));
    wake(rec);
  }
  if (ready_.empty()) {
    std::fprintf(stderr, "cos: internal error: no task is ready and none can become ready\n");
    std::abort();
  }
}

// ---- system calls --------------------------------------------------------

void Engine::yield() {
  current_->state = State::ready;
  ready_.push_back(current_);
  suspend();
}

void Engine::sleep_until(clock::time_point deadline) {
  timers_.push(Timer{deadline, timer_seq_++, current_, current_->tid, nullptr, nullptr, ++current_->wait_seq});
  block(WaitKind::sleep);
}

}  // namespace coop::detail
