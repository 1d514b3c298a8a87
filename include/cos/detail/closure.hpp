// closure.hpp: a task's callable and its arguments, stored in the child's
// stack, and spawn_detached() for callbacks. Private to cos.
#pragma once

#include <cstddef>
#include <new>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cos/detail/core.hpp>
#include <cos/detail/value_box.hpp>

namespace coop::detail {

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

// The result of a task running f(args...): a value, never a reference into
// a stack that is gone.
template <class F, class... A>
using task_result_t = std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>>;

// prepare_closure() reserves a task for f(args...) and builds its closure
// there; the caller starts it.
template <class F, class... A> LocalSpawn prepare_closure(F&& f, A&&... args) {
  using C = Closure<task_result_t<F, A...>, std::decay_t<F>, std::decay_t<A>...>;
  LocalSpawn s = prepare_local(sizeof(C), alignof(C), &C::run);
  try {
    ::new (s.closure) C(std::forward<F>(f), std::forward<A>(args)...);
  } catch (...) {
    abandon_local(s);
    throw;
  }
  return s;
}

// spawn_detached(now, f, args...) starts f(args...) as a local task that
// nobody joins (see start_detached).
template <class F, class... A> void spawn_detached(bool now, F&& f, A&&... args) {
  start_detached(prepare_closure(std::forward<F>(f), std::forward<A>(args)...), now);
}

}  // namespace coop::detail
