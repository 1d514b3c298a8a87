// stream.hpp: Stream<R>, the results of a dispatch as they arrive.
#pragma once

#include <cmath>
#include <cstddef>
#include <deque>
#include <iterator>
#include <optional>
#include <string>

#include <cos/detail/core.hpp>
#include <cos/ids.hpp>
#include <cos/outcome.hpp>
#include <cos/timing.hpp>

namespace coop {

// Result<R> is one finished job, as a collector receives it.
template <class R> struct Result {
  std::size_t index = 0;         // the job's position in the job list
  Outcome<R> value{};            // value.get() returns it or rethrows the job's exception
  std::optional<HostId> host{};  // where it ran; nullopt for a local run
  Timing timing{};
  std::string output{};          // what it printed, where the backend captures it
};

// DispatchStats are IPython parallel's figures for one dispatch.
struct DispatchStats {
  std::size_t submitted = 0;
  std::size_t done = 0;     // results delivered, failures included
  std::size_t failed = 0;
  std::optional<std::size_t> total{};  // known when the jobs are a sized range
  clock::time_point first_submitted{};
  clock::time_point last_received{};
  clock::duration serial_time{};  // the sum of the jobs' run times
  bool finished = false;

  // elapsed() is the time since the first job was submitted (to the end, once finished).
  clock::duration elapsed() const {
    if (submitted == 0) return {};
    return (finished ? last_received : clock::now()) - first_submitted;
  }
  // wall_time() is the time from the first submission to the last result.
  clock::duration wall_time() const { return done ? last_received - first_submitted : clock::duration{}; }
  // speedup() is serial_time / wall_time (0 before the first result).
  double speedup() const {
    auto wall = wall_time().count();
    return wall > 0 ? static_cast<double>(serial_time.count()) / static_cast<double>(wall) : 0.0;
  }
  // progress() is done / total, or NaN when the total is unknown.
  double progress() const {
    return total && *total ? static_cast<double>(done) / static_cast<double>(*total) : std::nan("");
  }
};

namespace detail {
template <class R> class Dispatcher;
}

// Stream<R> is the collector's input: a range over the results of a dispatch
// in completion order. Advancing it yields the collector until the next
// result arrives; it ends when every started job has been delivered.
//
// Example:
//   coop::dispatch(jobs, [](coop::Stream<double>& results) {
//     for (auto& r : results) std::cout << r.index << " " << r.value.get() << "\n";
//     std::cout << "speedup " << results.stats().speedup() << "\n";  // post-processing
//   });
template <class R> class Stream {
 public:
  class iterator {
   public:
    using value_type = Result<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Stream* s) : s_(s) {}
    Result<R>& operator*() const { return *s_->current_; }
    Result<R>* operator->() const { return &*s_->current_; }
    iterator& operator++() {
      s_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool at_end() const { return !s_->current_; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    Stream* s_ = nullptr;
  };

  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // begin() waits (yielding) for the first result.
  iterator begin() {
    if (!current_) advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const { return {}; }

  // stop() starts no more jobs; those already started still arrive.
  void stop() { stopped_ = true; }
  bool stopped() const { return stopped_; }
  // stats() are the dispatch's figures so far.
  const DispatchStats& stats() const { return stats_; }

 private:
  friend class detail::Dispatcher<R>;

  void advance() {
    current_.reset();
    while (pending_.empty() && !closed_) waiter_.wait();
    if (!pending_.empty()) {
      current_.emplace(std::move(pending_.front()));
      pending_.pop_front();
    }
  }
  void push(Result<R>&& r) {
    pending_.push_back(std::move(r));
    waiter_.notify();
  }
  void close() {
    closed_ = true;
    waiter_.notify();
  }

  std::deque<Result<R>> pending_;
  std::optional<Result<R>> current_;
  bool closed_ = false;
  bool stopped_ = false;
  DispatchStats stats_;
  detail::Waiter waiter_;
};

}  // namespace coop
