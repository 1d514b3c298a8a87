// spawn.hpp: spawn(), yield(), sleep_for(), current_tid(), and Spawn options.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <new>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cos/detail/core.hpp>
#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/spawn_options.hpp>
#include <cos/remote.hpp>
#include <cos/task.hpp>

namespace coop {

namespace detail {

// The callable and its arguments, decayed and stored in the child's stack.
template <class R, class F, class... A> struct Closure {
  F fn;
  std::tuple<A...> args;

  template <class FF, class... AA>
  explicit Closure(FF&& f, AA&&... a) : fn(std::forward<FF>(f)), args(std::forward<AA>(a)...) {}

  static void run(void* self, ValueBox& out) noexcept {
    auto* c = static_cast<Closure*>(self);
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply(std::move(c->fn), std::move(c->args));
        out.emplace<void>();
      } else {
        out.emplace<R>(std::apply(std::move(c->fn), std::move(c->args)));
      }
    } catch (...) {
      out.set_error(std::current_exception());
    }
    c->~Closure();
  }
};

template <class F, class... A> auto spawn_local(F&& f, A&&... args) {
  // A task returns a value, never a reference into a stack that is gone.
  using R = std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>>;
  using C = Closure<R, std::decay_t<F>, std::decay_t<A>...>;
  LocalSpawn s = prepare_local(sizeof(C), alignof(C), &C::run);
  try {
    ::new (s.closure) C(std::forward<F>(f), std::forward<A>(args)...);
  } catch (...) {
    abandon_local(s);
    throw;
  }
  return Task<R>(start_local(s));
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

// spawn(opt, f, args...) spawns with options; f must be a function. With
// opt.remote and a VM, the call is serialized and runs on a slot (f must be
// registered with COS_REMOTE, or coop::NotRegistered is thrown); a blocking
// spawn yields until a slot is free. Without a VM it runs locally, as PyOPUS
// does. Only tasks of a scheduler may call it.
template <class F, class... A> auto spawn(Spawn opt, F&& f, A&&... args) {
  using Fn = std::decay_t<F>;
  static_assert(std::is_pointer_v<Fn> && std::is_function_v<std::remove_pointer_t<Fn>>,
                "coop::spawn(Spawn, f, ...): f must be a function registered with COS_REMOTE; "
                "a lambda or function object cannot travel to another process (spawn it "
                "without Spawn options to run it locally)");
  static_assert(std::is_invocable_v<Fn, A...>,
                "coop::spawn: the function cannot be called with these arguments");
  using T = detail::FnTraits<Fn>;
  using R = typename T::result;
  if (!opt.remote || !detail::has_vm()) {
    return detail::spawn_local(std::forward<F>(f), std::forward<A>(args)...);
  }
  Fn fn = f;
  const std::string* name = detail::remote_name(reinterpret_cast<const void*>(fn));
  if (!name) detail::unregistered(reinterpret_cast<const void*>(fn), typeid(Fn));
  Call call{*name, detail::to_bytes(typename T::args(std::forward<A>(args)...))};
  return Task<R>(detail::spawn_remote(opt, std::move(call), &detail::decode<R>));
}

// yield() moves the calling task behind every task that is ready now and runs
// them; it returns at once when no other task is ready.
inline void yield() { detail::yield_now(); }

// sleep_for() suspends the calling task for at least `d`; other tasks run.
template <class Rep, class Per> void sleep_for(std::chrono::duration<Rep, Per> d) {
  detail::sleep_until(clock::now() + std::chrono::ceil<clock::duration>(d));
}

// current_tid() is the tid of the calling task; throws coop::Error outside a scheduler.
COS_API Tid current_tid();

}  // namespace coop
