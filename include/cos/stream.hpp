// stream.hpp: Stream<R>, the results of a dispatch as they arrive.
#pragma once

#include <cmath>
#include <cstddef>
#include <deque>
#include <iterator>
#include <optional>
#include <string>

#include <cos/detail/core.hpp>
#include <cos/errors.hpp>
#include <cos/ids.hpp>
#include <cos/job.hpp>
#include <cos/outcome.hpp>
#include <cos/timing.hpp>

namespace coop {

// Result<R> is one finished job (one attempt of it), as a collector receives it.
template <class R> struct Result {
  std::size_t index = 0;         // the job's position in the job list
  int attempt = 1;               // 1 for its first run, one more for each Stream::retry
  Outcome<R> value{};            // value.get() returns it or rethrows the job's exception
  std::optional<HostId> host{};  // where it ran; nullopt for a local run
  Timing timing{};
  std::string output{};          // what it printed, where the backend captures it
  bool replayed = false;         // read back from DispatchOptions::journal, not run in this dispatch
};

// DispatchStats are IPython parallel's figures for one dispatch.
struct DispatchStats {
  std::size_t submitted = 0;  // runs started, retries included
  std::size_t done = 0;     // results delivered, failures and retried ones included
  std::size_t failed = 0;   // results that hold an exception
  std::size_t retried = 0;  // results the collector ran again with Stream::retry
  std::size_t replayed = 0;  // results read back from the journal (counted in done, not run)
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
  // progress() is the share of jobs with a final result, (done - retried) /
  // total, or NaN when the total is unknown.
  double progress() const {
    return total && *total ? static_cast<double>(done - retried) / static_cast<double>(*total) : std::nan("");
  }
};

namespace detail {
template <class R> class Dispatcher;
}

// Stream<R> is the collector's input: a range over the results of a dispatch
// in completion order. Advancing it yields the collector until the next
// result arrives; it ends when every started job has been delivered and the
// collector has moved past the last result without retrying it. The
// collector sees each result as soon as it is back in the stream: the
// dispatcher lets it run before it starts the next job.
//
// Failures: Spawn::retries (DispatchOptions::spawn) runs a job again only
// after coop::WorkerLost, inside the scheduler; any other failure (an
// exception of the job, coop::Timeout, a lost worker past its retries) is
// delivered, and it is the collector's to run again with retry().
//
// Every member is for the tasks of the dispatch's scheduler only (the
// collector and the tasks it spawns); none blocks the thread, and only the
// iteration yields.
//
// Example:
//   coop::dispatch(jobs, [](coop::Stream<double>& results) {
//     for (auto& r : results) {
//       if (!r.value.ok() && r.attempt < 3 && results.retry(r)) continue;  // arrives again later
//       std::cout << r.index << " " << r.value.get() << "\n";
//     }
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

  // stop() starts no more jobs from the job list; those already started
  // still arrive, and retry() still runs one of them again. Never yields;
  // any task of the dispatch's scheduler may call it.
  void stop() { stopped_ = true; }
  bool stopped() const { return stopped_; }

  // retry(r) runs the job of `r` again (the same Job, the same index): its
  // next result arrives later with r.attempt + 1. `r` must be the result the
  // collector holds now (retry it before advancing the stream: once the
  // collector moves past a result, it is final and its job is dropped).
  // Honoured after stop(); a retried job waits for a free place like any
  // other, before the jobs not yet started. Returns false, and runs nothing,
  // when `r` was already retried, or after cancel(). Throws coop::Error when `r` is not the
  // current result. Never yields.
  bool retry(const Result<R>& r) {
    if (!current_ || current_->index != r.index || current_->attempt != r.attempt) {
      throw Error("coop::Stream::retry: only the result the collector holds now can be retried "
                  "(call it before advancing the stream)");
    }
    if (!current_job_ || cancelled_) return false;
    reruns_.push_back(Rerun{r.index, r.attempt + 1, std::move(*current_job_)});
    current_job_.reset();
    ++stats_.retried;
    wake_dispatcher();
    return true;
  }

  // cancel() stops the dispatch now: stop(), then every running job is
  // cancelled and arrives as a result holding coop::Cancelled (jobs that
  // run locally, without a VM, cannot be cancelled and run to their end);
  // retries not yet started are dropped. Any task of the dispatch's
  // scheduler may call it (a ticker the collector spawned, say): the
  // dispatcher, their parent, does the cancelling. Never yields.
  void cancel() {
    stop();
    if (cancelled_) return;
    cancelled_ = true;
    stats_.retried -= reruns_.size();
    reruns_.clear();
    wake_dispatcher();
  }
  bool cancelled() const { return cancelled_; }

  // stats() are the dispatch's figures so far.
  const DispatchStats& stats() const { return stats_; }

 private:
  friend class detail::Dispatcher<R>;

  // A delivered result and, until it is final, its job.
  struct Delivery {
    Result<R> result;
    std::optional<Job<R>> job;
  };
  // A job to start again.
  struct Rerun {
    std::size_t index;
    int attempt;
    Job<R> job;
  };

  void advance() {
    current_.reset();
    current_job_.reset();
    while (pending_.empty() && !closed_) {
      idle_.notify();  // a dispatcher with nothing in flight may end now
      waiter_.wait();
    }
    if (!pending_.empty()) {
      current_.emplace(std::move(pending_.front().result));
      current_job_ = std::move(pending_.front().job);
      pending_.pop_front();
    }
  }
  void push(Result<R>&& r, std::optional<Job<R>> job) {
    pending_.push_back(Delivery{std::move(r), std::move(job)});
    waiter_.notify();
  }
  void close() {
    closed_ = true;
    waiter_.notify();
  }
  // collector_idle() says whether the collector waits in the stream with
  // every result taken, or has returned: then it can retry nothing more.
  bool collector_idle() const { return collector_returned_ || (waiter_.waiting() && pending_.empty()); }
  void collector_returned() {
    collector_returned_ = true;
    wake_dispatcher();
  }
  // The dispatcher waits either in idle_ (nothing in flight) or in
  // arrival_ (until a job ends).
  void wake_dispatcher() {
    idle_.notify();
    arrival_.notify();
  }

  std::deque<Delivery> pending_;
  std::optional<Result<R>> current_;
  std::optional<Job<R>> current_job_;
  std::deque<Rerun> reruns_;
  bool closed_ = false;
  bool stopped_ = false;
  bool cancelled_ = false;
  bool collector_returned_ = false;
  DispatchStats stats_;
  detail::Waiter waiter_;  // the collector, waiting for a result
  detail::Waiter idle_;    // the dispatcher, waiting for the collector with nothing in flight
  detail::Waiter arrival_;  // the dispatcher, waiting for a job in flight to end
};

}  // namespace coop
