// spawn.hpp: spawn() of a local child, yield(), sleep_for(), current_tid().
// Local only: no cereal and no VM reach here (spawns with coop::Spawn
// options, remote ones among them, are in remote.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <new>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cos/detail/closure.hpp>
#include <cos/detail/core.hpp>
#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/task.hpp>

namespace coop {

namespace detail {

template <class F, class... A> auto spawn_local(F&& f, A&&... args) {
  using R = task_result_t<F, A...>;
  return Task<R>(start_local(prepare_closure(std::forward<F>(f), std::forward<A>(args)...)));
}

COS_API void yield_now();
COS_API void sleep_until(clock::time_point deadline);

}  // namespace detail

// spawn(f, args...) starts f(args...) as a local child microthread and
// switches to it at once (child first); the caller resumes when the child
// first yields, blocks or ends. Arguments are decayed and moved, as by
// std::thread (pass std::ref for a reference). Only tasks of a scheduler may
// call it; returns the child's Task<R>.
template <class F, class... A> auto spawn(F&& f, A&&... args) {
  static_assert(std::is_invocable_v<std::decay_t<F>, std::decay_t<A>...>,
                "coop::spawn: the function cannot be called with these arguments");
  return detail::spawn_local(std::forward<F>(f), std::forward<A>(args)...);
}

// yield() moves the calling task behind every task that is ready now and runs
// them; it returns at once when no other task is ready. Only tasks of a
// scheduler may call it (coop::Error otherwise).
inline void yield() { detail::yield_now(); }

// sleep_for() suspends the calling task for at least `d` (it yields; other
// tasks run; the thread blocks only when no task is ready). Only tasks of a
// scheduler may call it.
template <class Rep, class Per> void sleep_for(std::chrono::duration<Rep, Per> d) {
  detail::sleep_until(clock::now() + std::chrono::ceil<clock::duration>(d));
}

// current_tid() is the tid of the calling task; never yields; throws
// coop::Error outside a scheduler.
COS_API Tid current_tid();

}  // namespace coop
