// task.hpp: Task<R>, the move-only handle of a spawned child.
#pragma once

#include <chrono>
#include <cstdio>
#include <exception>
#include <type_traits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <cos/detail/closure.hpp>
#include <cos/detail/core.hpp>
#include <cos/errors.hpp>
#include <cos/outcome.hpp>
#include <cos/ids.hpp>
#include <cos/timing.hpp>

namespace coop {

namespace detail {
struct TaskAccess;

// OnDone runs f(const Outcome<R>&) as a local task once its task ends, with
// a copy of the outcome (the value stays for join()).
template <class R, class F> struct OnDone final : DoneHook {
  F f;
  explicit OnDone(F fn) : f(std::move(fn)) {}
  void fire(const ValueBox& v, bool now) noexcept override {
    try {
      Outcome<R> o;
      if (v.has_error()) {
        o = Outcome<R>::failure(v.error());
      } else if constexpr (std::is_void_v<R>) {
        o = Outcome<R>::value();
      } else {
        o = Outcome<R>::value(*v.template peek<R>());
      }
      spawn_detached(now, [fn = std::move(f), out = std::move(o)]() mutable { fn(std::as_const(out)); });
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cos: an on_done callback could not start: %s\n", e.what());
    }
  }
};

}  // namespace detail

// Task<R> is the handle spawn() returns. Only the parent (the task that
// spawned it) may join or cancel it. Not thread-safe: use it on its
// scheduler's thread; the queries below never yield nor block. Dropping a handle does not detach the child: it
// stays joinable with coop::join(), and an exception it throws is reported
// at shutdown if nobody joins it.
//
// Example:
//   auto t = coop::spawn([] { return 6 * 7; });
//   int v = t.join();  // 42, or rethrows what the child threw
template <class R> class Task {
 public:
  Task() = default;
  explicit Task(detail::TaskRef ref) : ref_(ref) {}
  Task(Task&& o) noexcept
      : ref_(std::exchange(o.ref_, {})), joined_(o.joined_), joined_info_(std::move(o.joined_info_)) {}
  Task& operator=(Task&& o) noexcept {
    ref_ = std::exchange(o.ref_, {});
    joined_ = o.joined_;
    joined_info_ = std::move(o.joined_info_);
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // tid() is the child's tid (invalid_tid for an invalid handle).
  Tid tid() const { return ref_.tid; }
  // valid() is false when a non-blocking, non-queued remote spawn found no slot.
  bool valid() const { return ref_.tid != invalid_tid; }
  // remote() says whether the task runs (or will run) on a VM slot.
  bool remote() const { return info().remote; }
  // output() is what a remote child printed (for backends that capture it).
  std::string output() const { return info().output; }
  // timing() is when a remote child was submitted, started, completed and received.
  Timing timing() const { return info().timing; }
  // task_id() and host() say where a remote task runs; nullopt for a local
  // task. A queued task has no task_id() yet, and its host() is the host it
  // is bound to (nullopt when any host will do), as in PyOPUS.
  std::optional<TaskId> task_id() const { return info().task_id; }
  std::optional<HostId> host() const { return info().host; }
  // done() says whether the child has ended (it never yields).
  bool done() const { return joined_ || info().done; }
  // ready() is done(), bsync's name for it: never yields.
  bool ready() const { return done(); }

  // wait_until(t) yields until the child ends or `t` passes, without joining
  // it: true when it has ended. The child keeps running either way, and a
  // later join() still returns its value. Only the parent may call it
  // (coop::Error otherwise, or for an invalid handle).
  bool wait_until(clock::time_point t) {
    if (joined_) return true;
    return detail::wait_any(&ref_, 1, &t) == 0;
  }
  // on_done(f) runs f(const coop::Outcome<R>&) as a local task of this
  // scheduler as soon as the child ends (at once, before on_done returns,
  // when it already has). Several callbacks run in the order added; one that
  // throws is reported on stderr at shutdown like any task nobody joined;
  // join() still returns the value. R must be copyable (each callback gets a
  // copy). Never yields, except to run the callback of an ended child. Only
  // the parent may call it, before the join (coop::Error otherwise).
  template <class F> void on_done(F&& f) {
    static_assert(std::is_invocable_v<std::decay_t<F>&, const Outcome<R>&>,
                  "Task::on_done: the callback must be callable as f(const coop::Outcome<R>&)");
    static_assert(std::is_void_v<R> || std::is_copy_constructible_v<R>,
                  "Task::on_done: the result type must be copyable (each callback gets a copy)");
    if (joined_) throw Error("Task::on_done: task " + std::to_string(ref_.tid) + " was already joined");
    detail::on_done(ref_, new detail::OnDone<R, std::decay_t<F>>(std::forward<F>(f)));
  }

  // wait_for(d) is wait_until(now + d).
  bool wait_for(std::chrono::nanoseconds d) {
    return wait_until(clock::now() + std::chrono::ceil<clock::duration>(d));
  }

  // cancel() stops a remote child, queued or running (a worker process is
  // killed and replaced; a ThreadVM thread runs on, unseen); its join then
  // throws coop::Cancelled. Returns false when the child had already ended.
  // Never yields; the thread blocks only as long as the VM's cancel (a kill
  // and a fork). Only the parent may call it; a local child cannot be
  // cancelled (coop::Error), nor an invalid handle.
  bool cancel() {
    if (!valid()) throw Error("Task::cancel: the handle is invalid (the spawn found no slot)");
    return !joined_ && detail::cancel(ref_);
  }

  // join() yields until the child ends, then returns its value or rethrows
  // its exception (a remote one as coop::RemoteError). Only the parent may
  // call it, once; otherwise it throws coop::Error.
  R join() {
    if (!valid()) throw Error("Task::join: the handle is invalid (the spawn found no slot)");
    detail::JoinedTask j = detail::join_task(ref_);
    joined_ = true;
    detail::ReleaseGuard guard{j};
    if (j.remote) joined_info_ = detail::remote_info(j);
    return j.value->take<R>(ref_.tid);
  }

 private:
  friend struct detail::TaskAccess;
  detail::TaskInfo info() const {
    if (!joined_) return detail::info_of(ref_);
    return joined_info_ ? *joined_info_ : detail::TaskInfo{.done = true};
  }

  detail::TaskRef ref_;
  bool joined_ = false;
  std::unique_ptr<detail::TaskInfo> joined_info_;  // a joined remote task's host, ids, timing
};

}  // namespace coop
