// spawner.hpp: spawner calls (PyOPUS's spawnerCall), a running remote task
// calling a registered function in the spawner, and where a task runs
// (PyOPUS's hostID() / taskID()).
#pragma once

#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/remote.hpp>

namespace coop {

// this_host() is the host of the slot that runs the calling remote task (a
// local task of a scheduler inside that task included); nullopt in the
// spawner, without a VM, and in local tasks. Never blocks.
COS_API std::optional<HostId> this_host();
// this_task_id() is the calling remote task's TaskId, as Task::task_id()
// reports it in the spawner; nullopt where this_host() is.
COS_API std::optional<TaskId> this_task_id();

namespace detail {

// in_remote_task() says whether the calling thread runs a remote task that
// can talk to its spawner.
COS_API bool in_remote_task() noexcept;
// spawner_call_bytes() posts `call` to the spawner and blocks the slot until
// its reply: the serialized value, or it throws coop::RemoteError (f threw in
// the spawner), coop::NotRegistered, or coop::Error (the spawner can no
// longer answer: it ended, or this task was cancelled).
COS_API std::string spawner_call_bytes(Call&& call);
// spawner_post_bytes() posts `call` without waiting for anything.
COS_API void spawner_post_bytes(Call&& call);

template <class F, class... A> Call spawner_request(F f, A&&... args) {
  using T = FnTraits<F>;
  static_assert(std::is_constructible_v<typename T::args, A&&...>,
                "coop::spawner_call: the arguments do not convert to the function's parameter types");
  static_assert(AllSerializable<typename T::args>::value && serializable<typename T::result>,
                "coop::spawner_call: the parameter and return types of f must be serializable by cereal");
  const std::string* name = remote_name(reinterpret_cast<const void*>(f));
  if (!name) unregistered(reinterpret_cast<const void*>(f), typeid(F));
  return Call{*name, to_bytes(typename T::args(std::forward<A>(args)...))};
}

}  // namespace detail

// spawner_call(f, args...) runs f(args...) in the spawner, as a local task of
// the spawner's scheduler (so f may touch the spawner's state without
// locks), and blocks the calling remote task until it returns: its value,
// or coop::RemoteError when f threw there. f is a function registered with
// COS_REMOTE (coop::NotRegistered otherwise, thrown in the task); arguments
// and result travel as in a remote spawn. In the spawner or without a VM it
// calls f directly. A spawner that can no longer answer (its scheduler
// ended, the task was cancelled) is a coop::Error in the task, never a hang.
//
// Example (a search reporting its best point so far):
//   double report(double best);   COS_REMOTE(report);
//   double global_best = coop::spawner_call(report, my_best);
template <class F, class... A> auto spawner_call(F f, A&&... args) {
  static_assert(std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>,
                "coop::spawner_call: f must be a function registered with COS_REMOTE (not a lambda)");
  using R = typename detail::FnTraits<F>::result;
  if (!detail::in_remote_task()) {
    if constexpr (std::is_void_v<R>) {
      f(std::forward<A>(args)...);
      return;
    } else {
      return R(f(std::forward<A>(args)...));
    }
  }
  std::string bytes = detail::spawner_call_bytes(detail::spawner_request(f, std::forward<A>(args)...));
  if constexpr (!std::is_void_v<R>) {
    R value{};
    detail::from_bytes(bytes, value);
    return value;
  }
}

// spawner_post(f, args...) is spawner_call without waiting: f(args...) runs
// in the spawner later, its value is dropped, and an exception it throws is
// reported on the spawner's stderr when its scheduler ends (like any task's
// that nobody joined). Posts from one task run in the order posted. In the
// spawner or without a VM it calls f directly (and an exception propagates).
template <class F, class... A> void spawner_post(F f, A&&... args) {
  static_assert(std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>,
                "coop::spawner_post: f must be a function registered with COS_REMOTE (not a lambda)");
  if (!detail::in_remote_task()) {
    f(std::forward<A>(args)...);
    return;
  }
  detail::spawner_post_bytes(detail::spawner_request(f, std::forward<A>(args)...));
}

}  // namespace coop
