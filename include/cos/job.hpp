// job.hpp: Job<R>, one call for dispatch() to run.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cos/remote.hpp>
#include <cos/spawn.hpp>
#include <cos/spawn_options.hpp>
#include <cos/task.hpp>
#include <cos/timing.hpp>

namespace coop {

template <class R> class Job;

namespace detail {
template <class R> class Dispatcher;

// JobAccess is the one door into a Job: job() builds one, the dispatcher
// starts it.
struct JobAccess {
  template <class R, class Start, class Describe> static Job<R> make(Start&& start, Describe&& describe) {
    return Job<R>(std::forward<Start>(start), std::forward<Describe>(describe));
  }
  template <class R> static Task<R> start(const Job<R>& j, const Spawn& opt, Timing* timing) {
    return j.start_(opt, timing);
  }
  // describe() is the job's serialized call (for a journal's digest), or
  // nullopt when its function is not registered or its arguments cannot be
  // serialized.
  template <class R> static std::optional<Call> describe(const Job<R>& j) { return j.describe_(); }
};
}  // namespace detail

// Job<R> is a function and its arguments, started by dispatch() as a remote
// task (or a local one without a VM). coop::job(f, args...) makes one; it is
// copyable, and a dispatch may start the same job again (Stream::retry).
template <class R> class Job {
 private:
  friend struct detail::JobAccess;
  // start_ spawns the job as a child of the calling task; a local run records
  // when it started and completed in *timing (the scheduler does not time
  // microthreads), which the dispatcher keeps alive until the run ends.
  using Start = std::function<Task<R>(const Spawn&, Timing*)>;
  using Describe = std::function<std::optional<Call>()>;
  Job(Start start, Describe describe) : start_(std::move(start)), describe_(std::move(describe)) {}
  Start start_;
  Describe describe_;
};

// job(f, args...) makes a Job of the function f (registered with COS_REMOTE
// to run remotely) with its arguments, converted to f's parameter types now.
// Runs nothing and never yields: any code may make jobs, on any thread.
template <class F, class... A> auto job(F f, A&&... args) {
  static_assert(std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>,
                "coop::job(f, ...): f must be a function registered with COS_REMOTE");
  using T = detail::FnTraits<F>;
  using R = typename T::result;
  using Args = typename T::args;
  static_assert(std::is_constructible_v<Args, A&&...>,
                "coop::job: the arguments do not match the function's parameters");
  auto args_ptr = std::make_shared<const Args>(std::forward<A>(args)...);
  auto describe = [f, args_ptr]() -> std::optional<Call> {
    if constexpr (detail::AllSerializable<Args>::value) {
      const std::string* name = detail::remote_name(reinterpret_cast<const void*>(f));
      if (name) return Call{*name, detail::to_bytes(*args_ptr)};
    }
    return std::nullopt;
  };
  auto start = [f, args_ptr](const Spawn& opt, Timing* timing) -> Task<R> {
    // Each start copies the arguments, so that the job can start again.
    if (opt.remote && detail::has_vm()) {
      return std::apply([&](const auto&... a) { return coop::spawn(opt, f, a...); }, *args_ptr);
    }
    return coop::spawn(
        [f, timing](Args a) -> R {
          timing->started = clock::now();
          struct Stamp {
            Timing* t;
            ~Stamp() { t->completed = clock::now(); }
          } stamp{timing};
          return std::apply(f, std::move(a));
        },
        Args(*args_ptr));
  };
  return detail::JobAccess::make<R>(std::move(start), std::move(describe));
}

}  // namespace coop
