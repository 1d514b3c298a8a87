// dispatch_journal.hpp: what a dispatch does with DispatchOptions::journal
// (the file itself is journal.hpp): check the journal against the job list,
// turn its records back into results, record each success.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <cos/detail/journal.hpp>
#include <cos/errors.hpp>
#include <cos/job.hpp>
#include <cos/outcome.hpp>
#include <cos/remote.hpp>
#include <cos/stream.hpp>

namespace coop::detail {

// DispatchJournal<R> is the journal of one dispatch of jobs of type Job<R>.
// Used by the dispatcher's task only; every member blocks the thread for
// its file access and none yields.
template <class R> class DispatchJournal {
 public:
  // Opens the journal (throws what Journal throws). R is serializable:
  // coop::job() only makes jobs that can go remote.
  explicit DispatchJournal(const std::filesystem::path& path) : file_(path) {}

  // digest() is the journal's digest of a job's call; throws coop::Error for
  // a job whose function is not registered or whose arguments cannot be
  // serialized.
  static std::uint64_t digest(const Job<R>& j) {
    std::optional<Call> call = JobAccess::describe(j);
    if (!call) {
      throw Error("coop::dispatch: a journal needs jobs of functions registered with COS_REMOTE, "
                  "with serializable arguments");
    }
    return call_digest(*call);
  }

  // replay() checks that every job the journal records is the same job of
  // this job list, reading the jobs from `source` up to the last recorded
  // index (the unrecorded ones among them go to `held`, to start first, and
  // `next_index` moves past them), and returns the recorded results in job
  // order. Throws coop::Error for a journal of another job list.
  template <class Source>
  std::vector<Result<R>> replay(Source& source, std::deque<std::pair<std::size_t, Job<R>>>& held,
                                std::size_t& next_index) {
    std::vector<Result<R>> out;
    auto& records = file_.records();
    if (records.empty()) return out;
    std::size_t last = records.rbegin()->first;
    for (std::size_t i = 0; i <= last; ++i) {
      std::optional<Job<R>> j = source.next();
      if (!j) {
        throw Error("coop::dispatch: the journal '" + file_.path().string() + "' records job " +
                    std::to_string(last) + ", but this job list has only " + std::to_string(i) +
                    " jobs: it is the journal of another job list");
      }
      auto it = records.find(i);
      if (it == records.end()) {
        held.emplace_back(i, std::move(*j));
      } else if (it->second.digest != digest(*j)) {
        throw Error("coop::dispatch: job " + std::to_string(i) + " is not the job that the journal '" +
                    file_.path().string() + "' records under that index: it is the journal of "
                    "another job list (use a new journal, or delete this one)");
      }
    }
    next_index = last + 1;
    out.reserve(records.size());
    for (auto& [index, rec] : records) out.push_back(result_of(rec));
    records.clear();
    return out;
  }

  // record() appends a successful result, before anyone sees it.
  void record(const Result<R>& r, std::uint64_t job_digest) {
    JournalRecord rec;
    rec.index = r.index;
    rec.digest = job_digest;
    rec.run_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(r.timing.run_time()).count();
    if (r.host) rec.host = r.host->name();
    if constexpr (!std::is_void_v<R>) rec.value = to_bytes(r.value.get());
    file_.append(rec);
  }

 private:
  // result_of() is a recorded result as if it had just arrived: its value,
  // host and run time, marked replayed (it cannot be retried: its job is
  // not kept).
  static Result<R> result_of(JournalRecord& rec) {
    Result<R> r;
    r.index = rec.index;
    r.replayed = true;
    if (!rec.host.empty()) r.host = HostId(rec.host);
    auto now = clock::now();
    r.timing.received = r.timing.completed = now;
    r.timing.submitted = r.timing.started = now - std::chrono::nanoseconds(rec.run_ns);
    if constexpr (std::is_void_v<R>) {
      r.value = Outcome<R>::value();
    } else {
      R value{};
      from_bytes(rec.value, value);
      r.value = Outcome<R>::value(std::move(value));
    }
    return r;
  }

  Journal file_;
};

}  // namespace coop::detail
