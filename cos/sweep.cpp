#include "sweep.hpp"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <thread>
#include <unordered_map>

#include <CLI/CLI.hpp>

#include <cos/cos.hpp>
#include <cos/process_vm.hpp>

#include "output.hpp"
#include "params.hpp"
#include "progress.hpp"
#include "run_command.hpp"
#include "trace.hpp"
#include "units.hpp"
#include "usage.hpp"

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

int default_slots() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
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

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// last_line_of() is the last non-empty line of `text`, shortened for a message.
std::string last_line_of(const std::string& text) {
  std::size_t end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return {};
  std::size_t begin = text.rfind('\n', end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  std::string line = text.substr(begin, end + 1 - begin);
  if (line.size() > 200) line = line.substr(0, 197) + "...";
  return line;
}

double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }

// reap_orphans() waits for what is left below the tool once its workers are
// gone: the guards of killed workers (the tool is their subreaper) and what
// they killed. So when the tool exits, no process of a point is left. A
// process that left its point's process group (setsid) and outlives a grace
// period is killed; returns how many were.
int reap_orphans() {
  auto deadline = clock::now() + 2s;
  int killed = -1;
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) continue;
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) return std::max(killed, 0);  // ECHILD: nothing left
    if (clock::now() > deadline) {
      if (killed >= 0) return killed;
      killed = 0;
      deadline = clock::now() + 1s;
      // The kernel lists the children of each thread of the tool.
      if (DIR* tasks = ::opendir("/proc/self/task")) {
        while (dirent* t = ::readdir(tasks)) {
          if (t->d_name[0] == '.') continue;
          std::ifstream in(std::string("/proc/self/task/") + t->d_name + "/children");
          long child = 0;
          while (in >> child) killed += ::kill(static_cast<pid_t>(child), SIGKILL) == 0;
        }
        ::closedir(tasks);
      }
    }
    std::this_thread::sleep_for(2ms);
  }
}

// reap_ended_orphans() reaps the orphans of killed workers that have ended,
// during the sweep, so that a long sweep with many timeouts does not pile up
// zombies. A child that is one of the VM's workers is left to the VM, which
// waits for its own.
void reap_ended_orphans(const ProcessVM& vm) {
  for (int i = 0; i < 64; ++i) {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    std::vector<int> workers = vm.worker_pids();
    if (std::find(workers.begin(), workers.end(), info.si_pid) != workers.end()) return;
    ::waitpid(info.si_pid, nullptr, WNOHANG);
  }
}

// A point in flight: which point, which attempt, its task.
struct InFlight {
  std::size_t point = 0;
  int attempt = 1;
  Task<CommandRun> task;
};

// Sweep runs one `cos sweep` once its options have been checked.
class Sweep {
 public:
  Sweep(const SweepOptions& opt, Points points, CommandTemplate command)
      : opt_(opt), points_(std::move(points)), command_(std::move(command)) {}
  int run();

 private:
  void prepare();
  void warn(const std::string& message);
  void loop(const ProcessVM& vm);
  void start(std::size_t point);
  void finished(Joined& joined);
  void stop_all();
  void summary(int slots);

  const SweepOptions& opt_;
  Points points_;
  CommandTemplate command_;
  Format format_ = Format::csv;
  std::optional<std::chrono::nanoseconds> timeout_;
  std::map<std::string, int> hosts_;
  int slots_ = 0;

  std::vector<std::size_t> to_run_;
  std::size_t already_done_ = 0;
  std::unique_ptr<ResultsWriter> writer_;
  std::unique_ptr<Progress> progress_;

  std::deque<std::size_t> queue_;
  std::unordered_map<Tid, InFlight> in_flight_;
  std::vector<int> attempts_;
  bool stopping_ = false;
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
void Sweep::prepare() {
  format_ = format_of(opt_.out);
  if (!opt_.timeout.empty()) timeout_ = parse_duration(opt_.timeout, "--timeout");
  if (opt_.retries < 0) throw UsageError("--retries " + std::to_string(opt_.retries) + ": must be 0 or more");
  if (!opt_.hosts.empty()) {
    hosts_ = parse_hosts(opt_.hosts);
  } else {
    slots_ = opt_.slots ? *opt_.slots : default_slots();
    if (slots_ <= 0) {
      throw UsageError("--slots " + std::to_string(slots_) +
                       ": the number of worker processes must be positive");
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

  Previous previous;
  if (opt_.resume) previous = read_previous(opt_.out, format_, points_.names);
  for (std::size_t i = 0; i < points_.rows.size(); ++i) {
    std::vector<std::string> key;
    for (const auto& v : points_.rows[i]) key.push_back(canonical_value(v));
    auto it = previous.done.find(key);
    if (it != previous.done.end()) {
      previous.done.erase(it);
      ++already_done_;
    } else {
      to_run_.push_back(i);
    }
  }
  if (opt_.resume && previous.exists && !previous.done.empty()) {
    warn(opt_.out + " has " + std::to_string(previous.done.size()) +
         " successful rows for points that are not in this sweep; they are kept");
  }
  for (const auto& name : command_.unused())
    warn("COMMAND does not use the parameter " + name + " ({" + name + "})");

  bool progress_on = opt_.progress.value_or(::isatty(STDERR_FILENO) == 1);
  progress_ = std::make_unique<Progress>(progress_on, to_run_.size());
  Progress* progress = progress_.get();
  writer_ = ResultsWriter::open(
      opt_.out, format_, points_.names, opt_.resume ? &previous : nullptr, [progress] { progress->clear(); },
      [this](const std::string& m) { warn(m); });
  if (opt_.resume && previous.exists && (previous.failed_rows || previous.partial_bytes)) {
    std::string what;
    if (previous.failed_rows) what = std::to_string(previous.failed_rows) + " failed rows (run again)";
    if (previous.partial_bytes) what += std::string(what.empty() ? "" : " and ") + "a row cut short";
    std::fprintf(stderr, "cos sweep: resuming %s: dropped %s\n", opt_.out.c_str(), what.c_str());
  }
}

void Sweep::start(std::size_t point) {
  int attempt = ++attempts_[point];
  Spawn spawn{.remote = true, .block = false, .enqueue = true, .timeout = timeout_};
  Task<CommandRun> task = coop::spawn(spawn, run_command, command_.substitute(points_.rows[point]));
  Tid tid = task.tid();
  in_flight_.emplace(tid, InFlight{point, attempt, std::move(task)});
}

void Sweep::stop_all() {
  for (auto& [tid, f] : in_flight_) f.task.cancel();
}

void Sweep::finished(Joined& joined) {
  auto it = in_flight_.find(joined.tid);
  InFlight f = std::move(it->second);
  in_flight_.erase(it);

  // A task that timed out or was cancelled ended here and now, not on its slot.
  const Timing& t = joined.timing;
  clock::time_point received = t.received != clock::time_point{} ? t.received : clock::now();
  clock::time_point begin = t.started != clock::time_point{} ? t.started : t.submitted;
  clock::time_point end = t.completed > begin ? t.completed : received;
  if (end < begin) end = begin;
  serial_ += end - begin;
  last_end_ = std::max(last_end_, received);

  Row row;
  row.point = f.point;
  row.values = points_.rows[f.point];
  row.host = joined.host ? joined.host->name() : std::string();
  row.attempts = f.attempt;
  row.duration = seconds(end - begin);
  bool interrupted = false;
  try {
    CommandRun run = joined.get<CommandRun>();
    row.duration = static_cast<double>(run.run_ns) / 1e9;
    std::string detail = last_line_of(run.stderr_tail);
    if (detail.empty()) detail = last_line_of(run.stdout_tail);
    if (run.end == CommandRun::exited && run.code == 0) {
      row.status = "ok";
      row.exit = 0;
      row.result = result_fields(run.last_line, points_.names);
    } else if (run.end == CommandRun::exited) {
      row.status = "failed";
      row.exit = run.code;
      row.error = "exit status " + std::to_string(run.code) + (detail.empty() ? "" : ": " + detail);
    } else if (run.end == CommandRun::signaled) {
      row.status = "crashed";
      row.signal = signal_name(run.code);
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
    interrupted = stopping_;
    row.status = "lost";
    row.error = e.what();
  } catch (const RemoteError& e) {
    row.status = "error";
    row.error = e.type() + ": " + e.message();
  } catch (const std::exception& e) {
    row.status = "error";
    row.error = e.what();
  }
  trace_.push_back(TraceEvent{f.point, f.attempt, row.host, begin, end,
                              interrupted ? "interrupted" : row.status, row.values});
  if (interrupted) {
    ++interrupted_;
    return;
  }
  if (row.status != "ok" && f.attempt <= opt_.retries && !stopping_) {
    queue_.push_front(f.point);
    return;
  }
  (row.status == "ok" ? ok_ : failed_)++;
  writer_->write(row);
}

void Sweep::loop(const ProcessVM& vm) {
  bool done = false;
  // The ticker redraws the progress line and ends as soon as a stop signal
  // arrives, which wakes the main task from its join: only the parent may
  // cancel its children.
  Tid ticker = coop::spawn([this, &done, &vm] {
                 while (!done && !stop_signal) {
                   coop::sleep_for(50ms);
                   progress_->update(ok_, failed_, in_flight_.size());
                   reap_ended_orphans(vm);
                 }
               }).tid();
  bool ticker_alive = true;
  try {
    for (;;) {
      while (!stopping_ && !queue_.empty() && static_cast<int>(in_flight_.size()) < vm.slots()) {
        std::size_t point = queue_.front();
        queue_.pop_front();
        start(point);
      }
      progress_->update(ok_, failed_, in_flight_.size());
      if (in_flight_.empty()) {
        if (!stopping_ && !queue_.empty()) {
          throw std::runtime_error("no worker process is left to run the " + std::to_string(queue_.size()) +
                                   " remaining points");
        }
        break;
      }
      std::vector<Tid> among;
      among.reserve(in_flight_.size() + 1);
      for (const auto& [tid, f] : in_flight_) among.push_back(tid);
      if (ticker_alive) among.push_back(ticker);
      std::optional<Joined> joined = coop::join(among, Wait::block);
      if (joined->tid == ticker) {
        ticker_alive = false;
        if (stop_signal && !stopping_) {
          stopping_ = true;
          progress_->clear();
          std::fprintf(stderr, "cos sweep: %s: stopping the running points (again to quit at once)\n",
                       stop_signal == SIGINT ? "interrupted" : "terminated");
          stop_all();
        }
        continue;
      }
      finished(*joined);
    }
  } catch (...) {
    stopping_ = true;
    stop_all();
    while (!in_flight_.empty()) {
      std::vector<Tid> among;
      for (const auto& [tid, f] : in_flight_) among.push_back(tid);
      if (auto j = coop::join(among, Wait::block)) in_flight_.erase(j->tid);
    }
    done = true;
    if (ticker_alive) coop::join({ticker});
    throw;
  }
  done = true;
  if (ticker_alive) coop::join({ticker});
}

void Sweep::summary(int slots) {
  progress_->clear();
  double wall = last_end_ > start_ ? seconds(last_end_ - start_) : 0.0;
  double serial = seconds(serial_);
  std::size_t total = points_.rows.size();
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
  attempts_.assign(points_.rows.size(), 0);
  queue_.assign(to_run_.begin(), to_run_.end());
  install_stop_handlers();
  int slots = 0;
  if (!to_run_.empty()) {
    // Orphans of killed workers (the guards of their commands) come to the
    // tool, which waits for them before it exits.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    std::shared_ptr<ProcessVM> vm;
    try {
      if (hosts_.empty()) {
        vm = std::make_shared<ProcessVM>(static_cast<int>(std::min<std::size_t>(slots_, to_run_.size())));
      } else {
        vm = std::make_shared<ProcessVM>(hosts_);
      }
    } catch (const Error& e) {
      throw std::runtime_error(std::string("cannot start the worker processes: ") + e.what());
    }
    slots = vm->slots();
    start_ = clock::now();
    std::exception_ptr error;
    if (!stop_signal) {
      try {
        coop::run([&] { loop(*vm); }, Options{.vm = vm});
      } catch (...) {
        error = std::current_exception();
      }
    }
    vm.reset();
    if (int n = reap_orphans()) {
      warn(std::to_string(n) + " process" + (n == 1 ? "" : "es") +
           " that left the process group of its point (setsid) had to be killed");
    }
    writer_->finish();
    if (!opt_.trace.empty()) write_trace(opt_.trace, points_.names, trace_, start_, command_.args());
    if (error) std::rethrow_exception(error);
  } else {
    writer_->finish();
    if (!opt_.trace.empty()) write_trace(opt_.trace, points_.names, trace_, clock::now(), command_.args());
  }
  summary(slots);
  if (stop_signal) return 128 + stop_signal;
  return failed_ ? 1 : 0;
}

}  // namespace

namespace {

// SweepFormatter shows where COMMAND goes in the usage line.
class SweepFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App*, std::string name) const override {
    return "Usage: " + name + " [OPTIONS] -- COMMAND [ARG...]\n";
  }
};

}  // namespace

CLI::App* add_sweep_command(CLI::App& app, SweepOptions& o) {
  CLI::App* sub = app.add_subcommand("sweep", "Run a command over a grid of parameters on worker processes");
  sub->formatter(std::make_shared<SweepFormatter>());
  sub->get_formatter()->column_width(32);
  sub->add_option("--param", o.params,
                  "A parameter and its values, either a list:\n"
                  "  NAME=V1,V2,...\n"
                  "or a numeric range, STOP included when it falls\n"
                  "on a step (0:1:0.25 is 0, 0.25, 0.5, 0.75, 1):\n"
                  "  NAME=START:STOP:STEP\n"
                  "Repeat it: the sweep runs the grid of them all,\n"
                  "the first parameter varying slowest")
      ->type_name("NAME=VALUES")
      ->allow_extra_args(false);
  sub->add_option("--points", o.points_file,
                  "Explicit points: a CSV file whose header names\n"
                  "the parameters, one point per row (with --param:\n"
                  "each row crossed with their grid)")
      ->type_name("FILE.csv");
  sub->add_flag("--zip", o.zip, "Pair the --param lists element-wise instead of\nrunning their full grid");
  sub->add_option("--out", o.out,
                  "Where the rows go, as FILE.csv or FILE.jsonl (by\n"
                  "extension); default: CSV on stdout. A row is\n"
                  "written as soon as its point finishes")
      ->type_name("FILE");
  auto* slots =
      sub->add_option("--slots", o.slots, "Worker processes (default: the number of cores)")->type_name("N");
  auto* hosts = sub->add_option("--hosts", o.hosts,
                                "Named hosts with their worker processes, so one\n"
                                "machine stands in for several (a=2,b=4)")
                    ->type_name("NAME=N,...");
  slots->excludes(hosts);
  hosts->excludes(slots);
  sub->add_option("--timeout", o.timeout,
                  "Stop a point that runs longer than this (30s,\n"
                  "500ms, 2m, 1h; a bare number is seconds): its\n"
                  "process group is killed, its status is timeout")
      ->type_name("DURATION");
  sub->add_option("--retries", o.retries,
                  "Run a point that did not succeed (non-zero exit,\n"
                  "signal, timeout, lost worker) up to N more times;\n"
                  "its row is that of the last attempt")
      ->type_name("N");
  sub->add_flag("--resume", o.resume,
                "Complete the --out file of an earlier run of this\n"
                "sweep (killed, interrupted or with failures): keep\n"
                "its successful rows, run every other point");
  sub->add_option("--trace", o.trace,
                  "Write a timeline of every attempt: Chrome trace\n"
                  "JSON, for https://ui.perfetto.dev")
      ->type_name("FILE.json");
  sub->add_flag_callback(
      "--progress", [&o] { o.progress = true; },
      "Show a progress bar on stderr: done, failed,\nrunning and ETA (default: if stderr is a terminal)");
  sub->add_flag_callback(
      "--no-progress", [&o] { o.progress = false; }, "Do not show the progress bar");
  sub->add_option("command", o.command, "The command to run for each point, after --")->type_name("COMMAND");
  sub->footer(R"(How it runs:
  Each point runs COMMAND with every {name} replaced by the point's value of
  that parameter ({{name}} stays a literal {name}), in a worker process of
  its own process group: a command that crashes or hangs costs one point, and
  a point that ends, fails, times out or is interrupted leaves no process.

Results, one row per point, as soon as it finishes:
  point, the parameters, status (ok, failed, crashed, timeout, lost, error),
  exit (its exit status), signal (SIGSEGV, ...), duration (seconds), host,
  attempts, the command's result, error (why it failed).
  The result is the last line of the command's stdout: a JSON object gives
  its fields, a number a `value` column, other text an `output` column.
  CSV takes its result columns from the first successful point (failed rows
  before it wait for it); JSON lines keep every field of every row.

Stopping and resuming:
  Rows are whole lines, so a sweep killed at any moment (kill -9 too) leaves
  only whole rows. Ctrl-C stops the running points and keeps the finished
  rows (Ctrl-C again quits at once). --resume completes the --out file: its
  successful points are not run again, failed and missing ones are.

At the end, a summary on stderr: points done and failed, wall time, serial
time (the sum of the points' run times) and speedup.

Exit status: 0 every point succeeded, 1 some failed, 2 bad input, 130 after
Ctrl-C.

Examples:
  cos sweep --param k=1:4:1 --param c=0.1,0.5 -- ./oscillator --k {k} --c {c}
  cos sweep --zip --param x=0:1:0.5 --param y=a,b,c --out runs.jsonl -- sh -c 'echo {x}{y}'
  cos sweep --points points.csv --slots 8 --timeout 30s --retries 1 --out r.csv -- ./sim {a} {b}
  cos sweep --resume --points points.csv --out r.csv -- ./sim {a} {b})");
  return sub;
}

int run_sweep(const SweepOptions& opt) {
  try {
    std::vector<Parameter> params;
    for (const auto& spec : opt.params) params.push_back(parse_param(spec));
    std::optional<Points> file;
    if (!opt.points_file.empty()) file = read_points_file(opt.points_file);
    if (opt.command.empty()) {
      throw UsageError(
          "no COMMAND: put the command to run after --, as in: cos sweep --param x=1,2 -- ./sim --x {x}");
    }
    Points points = make_points(params, opt.zip, file);
    CommandTemplate command(opt.command, points.names);
    Sweep sweep(opt, std::move(points), std::move(command));
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
