// job.hpp: Job<R>, one call for dispatch() to run.
#pragma once

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

// JobImpl is what a Job holds, shared by its copies (it never changes): a
// copy of a Job, which dispatch() makes of every job of a list it reads,
// costs a reference count, not the two std::function copies (allocations,
// for a function and its shared arguments) that it cost before.
template <class R> struct JobImpl {
  virtual ~JobImpl() = default;
  // start() spawns the job as a child of the calling task; a local run
  // records when it started and completed in *timing (the scheduler does
  // not time microthreads), which the dispatcher keeps alive until the run
  // ends.
  virtual Task<R> start(const Spawn& opt, Timing* timing) const = 0;
  // describe() is the job's serialized call (for a journal's digest), or
  // nullopt when its function is not registered or its arguments cannot be
  // serialized.
  virtual std::optional<Call> describe() const = 0;
};

// JobAccess is the one door into a Job: job() builds one, the dispatcher
// starts it.
struct JobAccess {
  template <class R> static Job<R> make(std::shared_ptr<const JobImpl<R>> impl) { return Job<R>(std::move(impl)); }
  template <class R> static Task<R> start(const Job<R>& j, const Spawn& opt, Timing* timing) {
    return j.impl_->start(opt, timing);
  }
  template <class R> static std::optional<Call> describe(const Job<R>& j) { return j.impl_->describe(); }
};

// FnJob is the job of a function pointer and its arguments (coop::job()).
template <class F, class R, class Args> struct FnJob final : JobImpl<R> {
  template <class... A> explicit FnJob(F fn, A&&... a) : f(fn), args(std::forward<A>(a)...) {}
  F f;
  Args args;

  Task<R> start(const Spawn& opt, Timing* timing) const override {
    // Each start copies the arguments, so that the job can start again.
    if (opt.remote && has_vm()) {
      return std::apply([&](const auto&... a) { return coop::spawn(opt, f, a...); }, args);
    }
    return coop::spawn(
        [fn = f, timing](Args a) -> R {
          timing->started = clock::now();
          struct Stamp {
            Timing* t;
            ~Stamp() { t->completed = clock::now(); }
          } stamp{timing};
          return std::apply(fn, std::move(a));
        },
        Args(args));
  }
  std::optional<Call> describe() const override {
    if constexpr (AllSerializable<Args>::value) {
      const std::string* name = remote_name(reinterpret_cast<const void*>(f));
      if (name) return Call{*name, to_bytes(args)};
    }
    return std::nullopt;
  }
};
}  // namespace detail

// Job<R> is a function and its arguments, started by dispatch() as a remote
// task (or a local one without a VM). coop::job(f, args...) makes one; it is
// copyable (its copies share one immutable call), and a dispatch may start
// the same job again (Stream::retry).
template <class R> class Job {
 private:
  friend struct detail::JobAccess;
  explicit Job(std::shared_ptr<const detail::JobImpl<R>> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const detail::JobImpl<R>> impl_;
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
  return detail::JobAccess::make<R>(std::make_shared<const detail::FnJob<F, R, Args>>(f, std::forward<A>(args)...));
}

}  // namespace coop
