// job.hpp: Job<R>, one call for dispatch() to run.
#pragma once

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cos/remote.hpp>
#include <cos/spawn.hpp>
#include <cos/spawn_options.hpp>
#include <cos/task.hpp>
#include <cos/timing.hpp>

namespace coop {

// Job<R> is a function and its arguments, started by dispatch() as a remote
// task (or a local one without a VM). coop::job(f, args...) makes one.
template <class R> struct Job {
  // start() spawns the job as a child of the calling task; for a local run
  // it records when the job started and completed in *timing.
  std::function<Task<R>(const Spawn&, Timing* timing)> start;
};

// job(f, args...) makes a Job of the function f (registered with COS_REMOTE
// to run remotely) with its arguments, converted to f's parameter types now.
template <class F, class... A> auto job(F f, A&&... args) {
  static_assert(std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>,
                "coop::job(f, ...): f must be a function registered with COS_REMOTE");
  using T = detail::FnTraits<F>;
  using R = typename T::result;
  using Args = typename T::args;
  static_assert(std::is_constructible_v<Args, A&&...>,
                "coop::job: the arguments do not match the function's parameters");
  auto args_ptr = std::make_shared<Args>(std::forward<A>(args)...);
  return Job<R>{[f, args_ptr](const Spawn& opt, Timing* timing) -> Task<R> {
    if (opt.remote && detail::has_vm()) {
      return std::apply([&](auto&... a) { return coop::spawn(opt, f, std::move(a)...); }, *args_ptr);
    }
    // A local run times itself: the scheduler does not time microthreads.
    return coop::spawn(
        [f, timing](Args a) -> R {
          timing->started = clock::now();
          struct Stamp {
            Timing* t;
            ~Stamp() { t->completed = clock::now(); }
          } stamp{timing};
          return std::apply(f, std::move(a));
        },
        std::move(*args_ptr));
  }};
}

}  // namespace coop
