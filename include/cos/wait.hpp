// wait.hpp: waiting for several children without joining them: wait_all,
// wait_all_for, wait_any and as_completed (OMUSE's request pools, IPython's
// AsyncResult over many tasks). Local: no cereal, no VM.
#pragma once

#include <chrono>
#include <cstddef>
#include <iterator>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <cos/detail/core.hpp>
#include <cos/task.hpp>
#include <cos/timing.hpp>

namespace coop {

namespace detail {

// TaskAccess reads a handle's reference for the functions below.
struct TaskAccess {
  template <class R> static const TaskRef& ref(const Task<R>& t) { return t.ref_; }
  template <class R> static bool joined(const Task<R>& t) { return t.joined_; }
};

template <class T> struct IsTask : std::false_type {};
template <class R> struct IsTask<Task<R>> : std::true_type {};

template <class R> void wait_one(Task<R>& t) {
  if (!TaskAccess::joined(t)) detail::wait_any(&TaskAccess::ref(t), 1, nullptr);
}

template <class Range> std::vector<TaskRef> refs_of(Range& tasks) {
  std::vector<TaskRef> refs;
  for (auto& t : tasks) refs.push_back(TaskAccess::ref(t));  // a joined one reads as ended
  return refs;
}

}  // namespace detail

// wait_all(tasks...) yields until every task given has ended, without
// joining them: any mix of Task<R>& of any R, or ranges of Task<R>. Only
// their parent may call it.
//
// Example:
//   auto a = coop::spawn(f);  auto b = coop::spawn(g);
//   coop::wait_all(a, b);     // both ended; a.join() and b.join() do not wait
template <class... T> void wait_all(T&... tasks) {
  auto one = [](auto& t) {
    using U = std::remove_cvref_t<decltype(t)>;
    if constexpr (detail::IsTask<U>::value) {
      detail::wait_one(t);
    } else {
      for (auto& each : t) detail::wait_one(each);
    }
  };
  (one(tasks), ...);
}

// wait_all_for(tasks, d) yields until every task of the range has ended
// (true) or `d` has passed (false); the tasks keep running either way.
template <class Range> bool wait_all_for(Range& tasks, std::chrono::nanoseconds d) {
  auto deadline = clock::now() + std::chrono::ceil<clock::duration>(d);
  for (auto& t : tasks) {
    if (!t.wait_until(deadline)) return false;
  }
  return true;
}

// wait_any(tasks, d) yields until a task of the range has ended, or `d`
// passes: the index of the oldest (lowest tid) ended task, or nullopt on
// timeout or for an empty range. An ended task stays ended: call join() on
// it, or leave it out of the next wait_any.
template <class Range>
std::optional<std::size_t> wait_any(Range& tasks, std::optional<std::chrono::nanoseconds> d = {}) {
  std::vector<detail::TaskRef> refs = detail::refs_of(tasks);
  std::optional<clock::time_point> deadline;
  if (d) deadline = clock::now() + std::chrono::ceil<clock::duration>(*d);
  int i = detail::wait_any(refs.data(), refs.size(), deadline ? &*deadline : nullptr);
  if (i < 0) return std::nullopt;
  return static_cast<std::size_t>(i);
}

// AsCompleted<R> is the range as_completed() returns: it yields each task of
// a span once, in the order they end (oldest tid first among those that
// ended together). Advancing it yields until the next task ends.
template <class R> class AsCompleted {
 public:
  class iterator {
   public:
    using value_type = Task<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* a) : a_(a) {}
    Task<R>& operator*() const { return a_->tasks_[a_->current_]; }
    Task<R>* operator->() const { return &a_->tasks_[a_->current_]; }
    iterator& operator++() {
      a_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool at_end() const { return a_->done_; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    AsCompleted* a_ = nullptr;
  };

  explicit AsCompleted(std::span<Task<R>> tasks) : tasks_(tasks) {
    for (std::size_t i = 0; i < tasks.size(); ++i) left_.push_back(i);
  }
  // begin() waits (yielding) for the first task to end.
  iterator begin() {
    if (!started_) {
      started_ = true;
      advance();
    }
    return iterator(this);
  }
  std::default_sentinel_t end() const { return {}; }

 private:
  void advance() {
    if (left_.empty()) {
      done_ = true;
      return;
    }
    std::vector<detail::TaskRef> refs;
    for (std::size_t i : left_) refs.push_back(detail::TaskAccess::ref(tasks_[i]));
    int k = detail::wait_any(refs.data(), refs.size(), nullptr);
    current_ = left_[static_cast<std::size_t>(k)];
    left_.erase(left_.begin() + k);
  }

  std::span<Task<R>> tasks_;
  std::vector<std::size_t> left_;
  std::size_t current_ = 0;
  bool started_ = false;
  bool done_ = false;
};

// as_completed(tasks) yields each task as it ends:
//   for (coop::Task<double>& t : coop::as_completed(std::span(ts))) use(t.join());
template <class R> AsCompleted<R> as_completed(std::span<Task<R>> tasks) { return AsCompleted<R>(tasks); }
template <class R> AsCompleted<R> as_completed(std::vector<Task<R>>& tasks) {
  return AsCompleted<R>(std::span<Task<R>>(tasks));
}

}  // namespace coop
