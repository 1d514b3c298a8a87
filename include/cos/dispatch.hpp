// dispatch.hpp: dispatch(), fan a job list out over the slots and stream the
// results into a collector, as PyOPUS's dispatch() does.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <functional>
#include <iterator>
#include <memory>
#include <memory_resource>
#include <optional>
#include <ranges>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cos/detail/arrivals.hpp>
#include <cos/detail/dispatch_journal.hpp>
#include <cos/export.hpp>
#include <cos/job.hpp>
#include <cos/join.hpp>
#include <cos/outcome.hpp>
#include <cos/progress.hpp>
#include <cos/scheduler.hpp>
#include <cos/spawn.hpp>
#include <cos/stream.hpp>
#include <cos/wait.hpp>

namespace coop {

struct DispatchOptions {
  bool remote = true;                  // run jobs on the VM's slots (locally without a VM)
  std::optional<bool> keep_results{};  // return the values in job order (default: when there is no collector)
  int max_in_flight = 0;               // 0: one per slot of the VM and what it can queue (VM::queue_capacity), one at a time without a VM
  bool progress = false;               // a coop::ProgressBar on stderr, when it is a terminal
  Spawn spawn{};                       // options of every job's spawn (host, priority, timeout, retries)
  // journal: a file where each job that succeeds is recorded (its index, a
  // digest of its call, its value) as it arrives, before the collector sees
  // it. A dispatch of the same job list with the same journal runs only the
  // jobs not recorded there: the recorded results reach the collector (and
  // the returned values) first, marked Result::replayed, then the rest run.
  // Failed jobs are not recorded, so they run again. A journal of another
  // job list is a coop::Error before anything runs; a record cut short by a
  // kill is ignored. Needs jobs of COS_REMOTE functions (coop::Error
  // otherwise).
  std::optional<std::filesystem::path> journal{};
};

// Dispatched<R> is what dispatch() returns: the values in job order (a
// std::vector<R>, empty unless results are kept) and the dispatch's figures.
//
// Example:
//   auto v = coop::dispatch(jobs);  // v[0], v.size(), v == std::vector<double>{...}
//   double s = v.stats.speedup();
template <class R> struct Dispatched : std::vector<R> {
  Dispatched() = default;
  Dispatched(std::vector<R> values, DispatchStats s) : std::vector<R>(std::move(values)), stats(std::move(s)) {}
  DispatchStats stats{};
};
template <> struct Dispatched<void> {
  DispatchStats stats{};
};

namespace detail {

// The job type of a source: a range of Job<R>, or a callable returning
// std::optional<Job<R>>.
template <class Jobs, class = void> struct JobsTraits;
template <class Jobs>
struct JobsTraits<Jobs, std::enable_if_t<std::ranges::input_range<Jobs>>> {
  using job = std::remove_cvref_t<std::ranges::range_value_t<Jobs>>;
};
template <class Jobs>
struct JobsTraits<Jobs, std::enable_if_t<!std::ranges::input_range<Jobs> && std::is_invocable_v<Jobs&>>> {
  using job = typename std::invoke_result_t<Jobs&>::value_type;
};
template <class J> struct JobResult;
template <class R> struct JobResult<Job<R>> {
  using type = R;
};
template <class Jobs> using dispatch_result_t = typename JobResult<typename JobsTraits<Jobs>::job>::type;

// JobSource reads jobs one at a time from either kind of source.
template <class Jobs, class R> class JobSource {
 public:
  explicit JobSource(Jobs& jobs) : jobs_(jobs) {
    if constexpr (std::ranges::input_range<Jobs>) {
      it_.emplace(std::ranges::begin(jobs_));
      if constexpr (std::ranges::sized_range<Jobs>) total_ = static_cast<std::size_t>(std::ranges::size(jobs_));
    }
  }
  std::optional<Job<R>> next() {
    if constexpr (std::ranges::input_range<Jobs>) {
      if (*it_ == std::ranges::end(jobs_)) return std::nullopt;
      Job<R> j = **it_;
      ++*it_;
      return j;
    } else {
      return std::invoke(jobs_);
    }
  }
  std::optional<std::size_t> total() const { return total_; }

 private:
  template <class J, bool = std::ranges::input_range<J>> struct IterOf {
    using type = int;
  };
  template <class J> struct IterOf<J, true> {
    using type = std::ranges::iterator_t<J>;
  };
  using Iter = typename IterOf<Jobs>::type;
  Jobs& jobs_;
  std::optional<Iter> it_;
  std::optional<std::size_t> total_;
};

COS_API int default_in_flight(bool remote);

// Dispatcher runs one dispatch in the calling task, the parent of every job.
//
// It waits in one of two places: with jobs in flight, in the stream's
// arrival_ waiter until a job ends (its Arrivals queue says which, and the
// dispatcher joins that one job), or, with nothing in flight, in the stream's
// idle_ waiter until the collector is back in the stream (it may still retry
// the result it holds). What the collector or another task asks from outside
// (retry, cancel) wakes it from either; the loop then sees why. Nothing
// polls, and nothing per job looks at the other jobs in flight. A job that
// has ended is delivered before another starts, whatever max_in_flight is.
template <class R> class Dispatcher {
 public:
  Dispatcher(const DispatchOptions& opt, bool keep, bool streaming, Stream<R>& stream)
      : opt_(opt), keep_(keep), streaming_(streaming), arrivals_(stream.arrival_) {}

  template <class Source> void run(Source& source, Stream<R>& stream) {
    DispatchStats& st = stream.stats_;
    st.total = source.total();
    if (opt_.progress && ProgressBar::stderr_is_terminal()) bar_.emplace(true, st.total);
    std::size_t max = static_cast<std::size_t>(opt_.max_in_flight > 0 ? opt_.max_in_flight
                                                                      : default_in_flight(opt_.remote));
    if (opt_.journal) {
      // Recorded results first, before any job starts.
      journal_ = std::make_unique<DispatchJournal<R>>(*opt_.journal);
      for (Result<R>& r : journal_->replay(source, held_, next_index_)) {
        ++st.done;
        ++st.replayed;
        deliver(std::move(r), std::nullopt, stream, st);
      }
    }
    bool exhausted = false;
    bool broken = false;       // a job could not start: start nothing more
    std::exception_ptr error;  // and rethrow it once the started jobs have arrived
    for (;;) {
      cancel_if_asked(stream);
      // A job that has ended is delivered before the next one starts, so
      // that the collector streams even when max_in_flight is far above
      // the slots (a remote start then waits for a slot, while jobs end).
      while (!broken && !stream.collector_returned_ && in_flight_.size() < max && arrivals_.empty()) {
        try {
          if (!stream.reruns_.empty()) {
            auto rerun = std::move(stream.reruns_.front());
            stream.reruns_.pop_front();
            start(std::move(rerun.job), rerun.index, rerun.attempt, st);
            continue;
          }
          if (stream.stopped()) break;
          if (!held_.empty()) {  // jobs read ahead of the journal's replay
            auto [index, job] = std::move(held_.front());
            held_.pop_front();
            start(std::move(job), index, 1, st);
            continue;
          }
          if (exhausted) break;
          std::optional<Job<R>> j = source.next();
          if (!j) {
            exhausted = true;
            break;
          }
          start(std::move(*j), next_index_++, 1, st);
        } catch (...) {
          error = std::current_exception();
          broken = true;
        }
      }
      cancel_if_asked(stream);
      if (in_flight_.empty()) {
        if (!streaming_ || stream.collector_idle() || broken) break;
        stream.idle_.wait();  // the collector may still retry what it holds
        continue;
      }
      if (arrivals_.empty()) {
        stream.arrival_.wait();  // a job ends, or a retry or cancel: the loop sees which
        continue;
      }
      collect(arrivals_.pop(), stream, st);
    }
    st.finished = true;
    if (bar_) bar_->finish();
    if (error) std::rethrow_exception(error);
  }

  std::vector<std::optional<Outcome<R>>>& kept() { return kept_; }
  static void close(Stream<R>& stream) { stream.close(); }
  static void collector_returned(Stream<R>& stream) { stream.collector_returned(); }

 private:
  struct Running {
    std::size_t index;
    int attempt;
    std::optional<Job<R>> job;  // kept for a retry while a collector may ask for one
    Task<R> task;
    std::unique_ptr<Timing> local_timing;  // a local run writes its times here
    bool cancelled = false;
    std::uint64_t digest = 0;  // of its call, when there is a journal
  };

  void start(Job<R>&& j, std::size_t index, int attempt, DispatchStats& st) {
    Spawn s = opt_.spawn;
    s.remote = opt_.remote;
    s.block = true;
    std::unique_ptr<Timing> timing;
    if (spare_timings_.empty()) {
      timing = std::make_unique<Timing>();
    } else {
      timing = std::move(spare_timings_.back());
      spare_timings_.pop_back();
      *timing = Timing{};
    }
    timing->submitted = clock::now();
    if (st.submitted == 0) st.first_submitted = timing->submitted;
    // The digest first: a job that cannot be journaled is an error before
    // it runs, never a task that runs with nobody to collect it.
    std::uint64_t job_digest = journal_ ? DispatchJournal<R>::digest(j) : 0;
    Task<R> t = JobAccess::start(j, s, timing.get());
    ++st.submitted;
    Tid tid = t.tid();
    std::optional<Job<R>> kept_job;
    if (streaming_) kept_job.emplace(std::move(j));
    auto [it, added] = in_flight_.emplace(tid, Running{index, attempt, std::move(kept_job), std::move(t),
                                                       std::move(timing), false, job_digest});
    // After the emplace: a job that has already ended (a local one runs
    // first) is queued at once, and collect() finds it in in_flight_.
    arrivals_.watch(TaskAccess::ref(it->second.task), in_flight_.size());
  }

  // cancel_if_asked() cancels every remote job in flight once the stream is
  // cancelled (a local one runs on). Once is enough: after a cancel no job
  // starts, so the jobs in flight are never looked at again per job.
  void cancel_if_asked(Stream<R>& stream) {
    if (!stream.cancelled_ || cancelled_all_) return;
    cancelled_all_ = true;
    for (auto& [tid, running] : in_flight_) {
      if (running.cancelled || !running.task.remote()) continue;
      running.cancelled = true;
      running.task.cancel();
    }
  }

  // collect() joins the job `tid`, which has ended, and delivers its result.
  // Its hook fired as it ended, before the core made it joinable, and the
  // dispatcher runs only after that: the poll always finds it.
  void collect(Tid tid, Stream<R>& stream, DispatchStats& st) {
    std::optional<Joined> joined = coop::join({tid}, Wait::poll);
    auto it = in_flight_.find(tid);
    Running running = std::move(it->second);
    in_flight_.erase(it);

    Result<R> r;
    r.index = running.index;
    r.attempt = running.attempt;
    r.host = joined->host;
    r.output = std::move(joined->output);
    if (joined->host) {
      r.timing = joined->timing;
    } else {
      r.timing = *running.local_timing;
      r.timing.received = clock::now();
    }
    try {
      if constexpr (std::is_void_v<R>) {
        joined->get<void>();
        r.value = Outcome<R>::value();
      } else {
        r.value = Outcome<R>::value(joined->get<R>());
      }
    } catch (...) {
      r.value = Outcome<R>::failure(std::current_exception());
      ++st.failed;
    }
    ++st.done;
    st.last_received = r.timing.received;
    if (r.timing.completed > r.timing.started) st.serial_time += r.timing.completed - r.timing.started;
    // The job has been joined: nothing writes its Timing any more.
    spare_timings_.push_back(std::move(running.local_timing));
    if (journal_ && r.value.ok()) journal_->record(r, running.digest);
    deliver(std::move(r), std::move(running.job), stream, st);
  }

  // deliver() keeps a result for the returned values and hands it to the collector.
  void deliver(Result<R>&& r, std::optional<Job<R>> job, Stream<R>& stream, DispatchStats& st) {
    if (keep_ && kept_.size() <= r.index) kept_.resize(r.index + 1);
    if (!streaming_) {  // no collector reads the stream
      if (keep_) kept_[r.index] = std::move(r.value);
      show_progress(st);
      return;
    }
    if constexpr (std::is_copy_constructible_v<Outcome<R>>) {
      if (keep_) kept_[r.index] = r.value;
    }
    // A collector waiting for this result sees it before the next job starts.
    bool collector_waits = stream.waiter_.waiting();
    stream.push(std::move(r), std::move(job));
    show_progress(st);
    if (collector_waits) coop::yield();
  }

  void show_progress(const DispatchStats& st) {
    if (!bar_) return;
    std::size_t failed = st.failed - std::min(st.failed, st.retried);
    bar_->update(st.done - st.failed, failed, in_flight_.size());
  }

  DispatchOptions opt_;
  bool keep_;
  bool streaming_;
  std::optional<ProgressBar> bar_;
  std::size_t next_index_ = 0;
  bool cancelled_all_ = false;
  std::unique_ptr<DispatchJournal<R>> journal_;
  std::deque<std::pair<std::size_t, Job<R>>> held_;
  // The jobs in flight: nodes from a pool that hands back the one freed
  // last, so that a dispatch with many in flight reuses warm memory.
  std::pmr::unsynchronized_pool_resource nodes_;
  std::pmr::unordered_map<Tid, Running> in_flight_{&nodes_};
  std::vector<std::unique_ptr<Timing>> spare_timings_;  // of jobs collected, for the next ones
  Arrivals arrivals_;
  std::vector<std::optional<Outcome<R>>> kept_;
};

// to_values() turns kept outcomes into the values in job order, rethrowing
// the first failure (in job order) when a job failed.
template <class R> std::vector<R> to_values(std::vector<std::optional<Outcome<R>>>& kept) {
  std::vector<R> out;
  out.reserve(kept.size());
  for (auto& o : kept) out.push_back(std::move(*o).get());
  return out;
}

template <class R, class Jobs, class Collector>
Dispatched<R> run_dispatch(Jobs& jobs, Collector* collect, const DispatchOptions& opt) {
  bool keep = opt.keep_results.value_or(collect == nullptr);
  if constexpr (!std::is_copy_constructible_v<Outcome<R>>) {
    if (keep && collect) {
      throw Error("coop::dispatch: keep_results with a collector needs a copyable result type "
                  "(the collector and the returned vector would both own each value)");
    }
  }
  JobSource<Jobs, R> source(jobs);
  Stream<R> stream;
  Dispatcher<R> d(opt, keep, collect != nullptr, stream);
  std::exception_ptr error;
  if (collect) {
    // The collector is a local child: it runs until it waits for the first result.
    Task<void> collector = coop::spawn([&stream, collect] {
      struct Returned {
        Stream<R>& s;
        ~Returned() { Dispatcher<R>::collector_returned(s); }
      } returned{stream};
      (*collect)(stream);
    });
    try {
      d.run(source, stream);
    } catch (...) {
      error = std::current_exception();
    }
    Dispatcher<R>::close(stream);
    collector.join();  // rethrows what the collector threw
  } else {
    d.run(source, stream);
  }
  if (error) std::rethrow_exception(error);
  if constexpr (std::is_void_v<R>) {
    for (auto& o : d.kept()) o->get();
    return Dispatched<void>{stream.stats()};
  } else {
    return Dispatched<R>(to_values<R>(d.kept()), stream.stats());
  }
}

}  // namespace detail

// dispatch(jobs, collect, options) runs every job on the slots (one per slot
// at a time by default) and feeds each result, as it finishes, to `collect`,
// a `void(coop::Stream<R>&)` that runs as a local child task: its loop sees
// results in completion order; the code after its loop is the post-processing
// step. `jobs` is a range of Job<R> or a callable returning
// std::optional<Job<R>> (an open-ended generator; nullopt ends it).
// Returns a Dispatched<R>: the values in job order when options.keep_results
// (then the first failed job rethrows after all have ended), otherwise an
// empty vector, and the dispatch's figures in its `stats`.
// Yields; only tasks of a scheduler may call it. What the collector throws is
// rethrown once the jobs already started have ended.
template <class Jobs, class Collector>
auto dispatch(Jobs&& jobs, Collector&& collect, DispatchOptions options = {}) {
  using R = detail::dispatch_result_t<std::remove_cvref_t<Jobs>>;
  static_assert(std::is_invocable_v<Collector&, Stream<R>&>,
                "coop::dispatch: the collector must be callable as void(coop::Stream<R>&)");
  auto& collector = collect;
  return detail::run_dispatch<R>(jobs, &collector, options);
}

// dispatch(jobs, options) runs every job and returns the values in job order
// with the dispatch's figures (Dispatched<R>); a failed job's exception is
// rethrown (the first in job order) after every job has ended. Yields until
// then; only tasks of a scheduler may call it.
template <class Jobs> auto dispatch(Jobs&& jobs, DispatchOptions options = {}) {
  using R = detail::dispatch_result_t<std::remove_cvref_t<Jobs>>;
  using NoCollector = void (*)(Stream<R>&);
  return detail::run_dispatch<R, std::remove_reference_t<Jobs>, NoCollector>(jobs, nullptr, options);
}

// dispatch_single(f, args...) runs one job remotely and returns its value
// (or rethrows): PyOPUS's dispatchSingle, for moving one call to a slot.
// Yields until the job ends (locally without a VM); only tasks of a
// scheduler may call it.
template <class F, class... A> auto dispatch_single(F&& f, A&&... args) {
  return coop::spawn(Spawn{.remote = true}, std::forward<F>(f), std::forward<A>(args)...).join();
}

}  // namespace coop
