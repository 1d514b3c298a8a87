#include "sweep.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unordered_map>

#include <cos/dispatch.hpp>
#include <cos/errors.hpp>
#include <cos/progress.hpp>
#include <cos/scheduler.hpp>
#include <cos/storage.hpp>
#include <cos/vm.hpp>

#include "output.hpp"
#include "params.hpp"
#include "posix/text.hpp"
#include "run_command.hpp"
#include "run_record.hpp"
#include "slot_paths.hpp"
#include "trace.hpp"
#include "units.hpp"
#include "usage.hpp"
#include "vm_factory.hpp"

namespace coop::tool {
namespace {

using namespace std::chrono_literals;

// The signal that asked the sweep to stop (SIGINT, SIGTERM), or 0.
volatile std::sig_atomic_t stop_signal = 0;

void on_stop_signal(int sig) { stop_signal = sig; }

// Ctrl-C (or SIGTERM) once stops the sweep cleanly; the handler resets
// itself, so a second one ends the tool at once (its workers die with it,
// and their commands with them).
void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// find_program() says whether execvp would find `name`.
bool find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return is_executable_file(name);
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t pos = 0;
  for (;;) {
    std::size_t colon = dirs.find(':', pos);
    std::string dir = dirs.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    if (is_executable_file((dir.empty() ? "." : dir) + "/" + name)) return true;
    if (colon == std::string::npos) return false;
    pos = colon + 1;
  }
}

double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Sweep runs one `cos sweep` once its options have been checked: a
// coop::dispatch of run_command over the points still to run, on whatever
// VM make_vm() gives, with a collector that writes each row as it arrives.
class Sweep {
 public:
  Sweep(const SweepOptions& opt, Points points, CommandTemplate command, nlohmann::ordered_json identity)
      : opt_(opt), points_(std::move(points)), command_(std::move(command)), identity_(std::move(identity)) {}
  int run();

 private:
  void prepare();
  void warn(const std::string& message);
  std::optional<Job<CommandRun>> next_job();
  void collect(Stream<CommandRun>& results);
  void finished(Stream<CommandRun>& results, Result<CommandRun>& r);
  Row row_of(Result<CommandRun>& r, std::size_t point, bool& cancelled) const;
  void summary(int slots);

  const SweepOptions& opt_;
  Points points_;
  CommandTemplate command_;
  nlohmann::ordered_json identity_;  // which sweep this is, for the record beside --out
  std::unique_ptr<RunRecord> record_;
  Format format_ = Format::csv;
  std::optional<std::chrono::nanoseconds> timeout_;

  std::vector<bool> done_;              // by point number: done before, not to run
  std::size_t to_run_count_ = 0;        // the points not done before
  std::size_t next_ = 0;                // the next point number to consider for a job
  std::size_t jobs_ = 0;                // the jobs made so far; a job's index is its place among them
  std::unordered_map<std::size_t, std::size_t> point_of_job_;  // the point of each job not yet finished
  std::size_t already_done_ = 0;
  std::unique_ptr<ResultsWriter> writer_;
  std::unique_ptr<ProgressBar> progress_;

  bool stopping_ = false;  // a stop signal cancelled the dispatch
  std::size_t ok_ = 0, failed_ = 0, interrupted_ = 0;
  clock::time_point start_{};
  clock::time_point last_end_{};
  clock::duration serial_{};
  std::vector<TraceEvent> trace_;
};

void Sweep::warn(const std::string& message) {
  if (progress_) progress_->clear();
  std::fprintf(stderr, "cos sweep: warning: %s\n", message.c_str());
}

// prepare() checks everything that does not need a worker, so that bad input
// fails before any process starts.
// remove_local_copies() removes the mirrors' copies that this sweep's slots
// made on this machine (those of ProcessVM's hosts; an MPI rank's copies on
// another node stay there).
void remove_local_copies(const std::string& prefix, const std::vector<HostId>& hosts) {
  std::filesystem::path base = "/tmp";
  for (const char* var : {"COS_SCRATCH", "TMPDIR"}) {
    if (const char* d = std::getenv(var); d && *d) {
      base = d;
      break;
    }
  }
  for (const HostId& h : hosts) {
    std::error_code ec;
    std::filesystem::remove_all(base / (prefix + h.name()), ec);
  }
}

void Sweep::prepare() {
  format_ = format_of(opt_.out);
  if (!opt_.timeout.empty()) timeout_ = parse_duration(opt_.timeout, "--timeout");
  if (opt_.retries < 0) throw UsageError("--retries " + std::to_string(opt_.retries) + ": must be 0 or more");
  check_vm_options(opt_);
  for (const std::string& dir : opt_.mirrors) {
    struct stat st {};
    if (dir.empty() || ::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      throw UsageError("--mirror " + dir + ": not a directory");
    }
  }
  if (command_.program_is_fixed() && !find_program(command_.args().front())) {
    throw UsageError("COMMAND: cannot run '" + command_.args().front() + "': " +
                     (command_.args().front().find('/') != std::string::npos ? "no such executable file"
                                                                             : "not found in PATH"));
  }
  bool to_file = !opt_.out.empty() && opt_.out != "-";
  if (opt_.resume && !to_file) throw UsageError("--resume needs --out FILE, the results file to complete");
  if (!opt_.trace.empty()) {
    std::ofstream probe(opt_.trace, std::ios::app);
    if (!probe)
      throw UsageError("--trace " + opt_.trace + ": cannot write it (" + std::strerror(errno) + ")");
  }

  if (to_file) {
    struct stat out_st {};
    if (::stat(opt_.out.c_str(), &out_st) == 0 && !S_ISREG(out_st.st_mode)) {
      throw UsageError("--out " + opt_.out + ": it is " +
                       (S_ISDIR(out_st.st_mode) ? "a directory" : "not a regular file") +
                       ", not a results file; give a FILE.csv or FILE.jsonl");
    }
    record_ = std::make_unique<RunRecord>(opt_.out);
    struct stat st {};
    bool has_results = ::stat(opt_.out.c_str(), &st) == 0 && st.st_size > 0;
    if (opt_.resume && has_results) {
      if (record_->recorded().is_null()) {
        warn(opt_.out + " has no record of its sweep (" + record_path(opt_.out) +
             "): its rows are checked point by point");
      }
      std::string command_changed = record_->check_same_sweep(identity_);
      if (!command_changed.empty()) warn(command_changed);
    }
  }
  Previous previous;
  if (opt_.resume) {
    previous = read_previous(opt_.out, format_, points_.names(),
                             PointOf{points_.size(), [this](std::size_t p) { return points_.row(p); }});
  }
  if (record_) record_->write(identity_);
  done_ = std::move(previous.done);
  done_.resize(points_.size());
  already_done_ = previous.done_count;
  to_run_count_ = points_.size() - already_done_;
  for (const auto& name : command_.unused())
    warn("COMMAND does not use the parameter " + name + " ({" + name + "})");

  bool progress_on = opt_.progress.value_or(ProgressBar::stderr_is_terminal());
  progress_ = std::make_unique<ProgressBar>(progress_on, to_run_count_);
  ProgressBar* progress = progress_.get();
  writer_ = ResultsWriter::open(
      opt_.out, format_, points_.names(), opt_.resume ? &previous : nullptr, [progress] { progress->clear(); },
      [this](const std::string& m) { warn(m); });
  if (opt_.resume && previous.exists && (previous.failed_rows || previous.partial_bytes)) {
    std::string what;
    if (previous.failed_rows) what = std::to_string(previous.failed_rows) + " failed rows (run again)";
    if (previous.partial_bytes) what += std::string(what.empty() ? "" : " and ") + "a row cut short";
    std::fprintf(stderr, "cos sweep: resuming %s: dropped %s\n", opt_.out.c_str(), what.c_str());
  }
}

std::optional<Job<CommandRun>> Sweep::next_job() {
  while (next_ < done_.size() && done_[next_]) ++next_;
  if (next_ == done_.size()) return std::nullopt;
  std::size_t point = next_++;
  point_of_job_[jobs_++] = point;
  std::vector<std::string> args = command_.substitute(points_.row(point));
  if (!opt_.mirrors.empty()) mark_mirrors(args, opt_.mirrors);
  return coop::job(run_command, std::move(args));
}

// collect() is the dispatch's collector. A ticker beside it redraws the
// progress bar and, once a stop signal arrives, cancels the dispatch: the
// collector itself may be waiting for a result that a hanging point would
// not give for a long time.
void Sweep::collect(Stream<CommandRun>& results) {
  bool done = false;
  auto running = [&results] { return results.stats().submitted - results.stats().done; };
  Task<void> ticker = coop::spawn([&] {
    while (!done) {
      if (stop_signal && !stopping_) {
        stopping_ = true;
        progress_->clear();
        std::fprintf(stderr, "cos sweep: %s: stopping the running points (again to quit at once)\n",
                     stop_signal == SIGINT ? "interrupted" : "terminated");
        results.cancel();
      }
      progress_->update(ok_, failed_, running());
      coop::sleep_for(50ms);
    }
  });
  try {
    for (auto& r : results) {
      finished(results, r);
      progress_->update(ok_, failed_, running());
    }
  } catch (...) {
    results.cancel();  // the running points are not worth waiting for
    done = true;
    ticker.join();
    throw;
  }
  done = true;
  ticker.join();
}

Row Sweep::row_of(Result<CommandRun>& r, std::size_t point, bool& cancelled) const {
  Row row;
  row.point = point;
  row.values = points_.row(point);
  row.host = r.host ? r.host->name() : std::string();
  row.attempts = r.attempt;
  try {
    const CommandRun& run = r.value.get();
    row.duration = static_cast<double>(run.run_ns) / 1e9;
    std::string detail = posix::last_line(run.stderr_tail, 200);
    if (detail.empty()) detail = posix::last_line(run.stdout_tail, 200);
    if (run.end == CommandRun::exited && run.code == 0) {
      row.status = "ok";
      row.exit = 0;
      row.result = result_fields(run.last_line, points_.names());
    } else if (run.end == CommandRun::exited) {
      row.status = "failed";
      row.exit = run.code;
      row.error = "exit status " + std::to_string(run.code) + (detail.empty() ? "" : ": " + detail);
    } else if (run.end == CommandRun::signaled) {
      row.status = "crashed";
      row.signal = posix::signal_name(run.code);
      row.error = "killed by signal " + std::to_string(run.code) + " (" + row.signal + ")" +
                  (detail.empty() ? "" : ": " + detail);
    } else {
      row.status = "error";
      row.error = run.error;
    }
  } catch (const Timeout&) {
    row.status = "timeout";
    row.error = "timed out after " + opt_.timeout + " (its process group was killed)";
  } catch (const WorkerLost& e) {
    row.status = "lost";
    row.error = e.what();
  } catch (const Cancelled& e) {
    cancelled = true;
    row.status = "lost";
    row.error = e.what();
  } catch (const RemoteError& e) {
    row.status = "error";
    row.error = e.type() + ": " + e.message();
  } catch (const std::exception& e) {
    row.status = "error";
    row.error = e.what();
  }
  return row;
}

// finished() takes one attempt at one point: its trace event, then a retry
// or its row.
void Sweep::finished(Stream<CommandRun>& results, Result<CommandRun>& r) {
  std::size_t point = point_of_job_.at(r.index);
  // A task that timed out or was cancelled ended when it was received, not on its slot.
  const Timing& t = r.timing;
  clock::time_point received = t.received != clock::time_point{} ? t.received : clock::now();
  clock::time_point begin = t.started != clock::time_point{} ? t.started : t.submitted;
  clock::time_point end = t.completed > begin ? t.completed : received;
  if (end < begin) end = begin;
  serial_ += end - begin;
  last_end_ = std::max(last_end_, received);

  bool cancelled = false;
  Row row = row_of(r, point, cancelled);
  if (!r.value.ok() && row.duration == 0) row.duration = seconds(end - begin);
  bool interrupted = cancelled && stopping_;
  if (!opt_.trace.empty())
    trace_.push_back(TraceEvent{point, r.attempt, row.host, begin, end, interrupted ? "interrupted" : row.status,
                              row.values});
  if (interrupted) {
    ++interrupted_;
    point_of_job_.erase(r.index);
    return;
  }
  if (row.status != "ok" && r.attempt <= opt_.retries && !stopping_ && results.retry(r)) return;
  point_of_job_.erase(r.index);
  (row.status == "ok" ? ok_ : failed_)++;
  writer_->write(row);
}

void Sweep::summary(int slots) {
  progress_->clear();
  double wall = last_end_ > start_ ? seconds(last_end_ - start_) : 0.0;
  double serial = seconds(serial_);
  std::size_t total = points_.size();
  std::string text = "cos sweep: " + std::string(stop_signal ? "interrupted: " : "") + std::to_string(total) +
                     (total == 1 ? " point: " : " points: ") + std::to_string(ok_ + already_done_) +
                     " done, " + std::to_string(failed_) + " failed";
  std::size_t not_run = total - ok_ - already_done_ - failed_;
  if (not_run) text += ", " + std::to_string(not_run) + " not run";
  if (interrupted_) text += " (" + std::to_string(interrupted_) + " stopped while running)";
  if (already_done_) text += " (" + std::to_string(already_done_) + " done before)";
  char figures[200];
  std::snprintf(figures, sizeof figures, "; wall %s, serial %s, speedup %.2f on %d slot%s",
                format_seconds(wall).c_str(), format_seconds(serial).c_str(), wall > 0 ? serial / wall : 0.0,
                slots, slots == 1 ? "" : "s");
  if (slots > 0) text += figures;
  std::fprintf(stderr, "%s\n", text.c_str());
}

int Sweep::run() {
  prepare();
  install_stop_handlers();
  int slots = 0;
  clock::time_point origin = clock::now();
  if (to_run_count_) {
    std::shared_ptr<VM> vm = make_vm(opt_, to_run_count_);
    slots = vm->slots();
    start_ = origin = clock::now();
    std::exception_ptr error;
    if (!stop_signal) {
      DispatchOptions options{.max_in_flight = slots, .spawn = Spawn{.remote = true, .timeout = timeout_}};
      // Each --mirror DIR goes to cos-sweep-PID-HOST/N under the slot's
      // $COS_SCRATCH or $TMPDIR: its own copy per host and per sweep.
      Options sched{.vm = vm};
      std::string copies = "cos-sweep-" + std::to_string(::getpid()) + "-";
      for (std::size_t i = 0; i < opt_.mirrors.size(); ++i) {
        sched.mirrors.push_back(Mirror{opt_.mirrors[i], copies + "{host}/" + std::to_string(i)});
      }
      try {
        coop::run(
            [&] {
              coop::dispatch([this] { return next_job(); },
                             [this](Stream<CommandRun>& results) { collect(results); }, options);
            },
            std::move(sched));
      } catch (...) {
        error = std::current_exception();
      }
      if (!opt_.mirrors.empty()) remove_local_copies(copies, vm->hosts());
    }
    vm.reset();
    writer_->finish();
    if (!opt_.trace.empty()) write_trace(opt_.trace, points_.names(), trace_, origin, command_.args());
    if (error) std::rethrow_exception(error);
  } else {
    writer_->finish();
    if (!opt_.trace.empty()) write_trace(opt_.trace, points_.names(), trace_, origin, command_.args());
  }
  summary(slots);
  if (stop_signal) return 128 + stop_signal;
  return failed_ ? 1 : 0;
}

}  // namespace

int run_sweep(const SweepOptions& opt) {
  try {
    std::vector<Parameter> params;
    for (const auto& spec : opt.params) params.push_back(parse_param(spec));
    std::optional<PointsFile> file;
    if (!opt.points_file.empty()) file = read_points_file(opt.points_file);
    if (opt.command.empty()) {
      throw UsageError(
          "no COMMAND: put the command to run after --, as in: cos sweep --param x=1,2 -- ./sim --x {x}");
    }
    Points points = make_points(params, opt.zip, file);
    CommandTemplate command(opt.command, points.names());
    nlohmann::ordered_json identity =
        sweep_identity(opt.params, params, opt.zip, opt.points_file, file, points.names(), opt.command);
    Sweep sweep(opt, std::move(points), std::move(command), std::move(identity));
    return sweep.run();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "cos sweep: %s\nRun with --help for more information.\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cos sweep: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace coop::tool
