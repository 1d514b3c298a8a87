// workers.cpp: a ProcessVM slot's worker process, from fork + exec to
// reaping: starting one, replacing a dead one, giving up a slot whose
// workers keep failing to start, and stopping them all at the end.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cos/errors.hpp>

#include "backends/env_seconds.hpp"
#include "backends/process/impl.hpp"
#include "backends/process/launcher.hpp"
#include "backends/process/worker.hpp"
#include "posix/fd.hpp"
#include "posix/text.hpp"

extern char** environ;

namespace coop {
namespace {

using namespace std::chrono_literals;
using detail::FrameError;
using detail::FrameReader;
using detail::process::KeeperLauncher;
using detail::process::Slot;
using detail::process::Source;
using detail::process::State;
using detail::process::max_failed_starts;
using detail::process::stop_grace;
using posix::close_fd;
using posix::errno_text;

// Moves fd above 0..2 (CLOEXEC), so that the child's dup2 onto stdin,
// stdout and stderr cannot clobber it when the spawner runs without them.
int above_stdio(int fd) {
  if (fd > 2) return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  if (moved < 0) throw Error(errno_text("coop::ProcessVM: fcntl"));
  return moved;
}

using detail::process::wait_keeper;

}  // namespace

namespace detail::process {

std::chrono::nanoseconds start_timeout_from_env() {
  return seconds_from_env("COS_WORKER_START_TIMEOUT", default_start_timeout, "coop::ProcessVM");
}

int open_devnull() {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(errno_text("coop::ProcessVM: cannot open /dev/null"));
  return above_stdio(fd);
}

}  // namespace detail::process

// spawn() forks and execs a worker for `s`. Everything the child needs is
// prepared before fork: between fork and exec a multithreaded program may
// only make async-signal-safe calls.
void ProcessVM::Impl::spawn(Slot& s) {
  s.generation++;
  s.state = State::starting;
  s.reader = FrameReader{};
  s.task = 0;
  s.runs_long = false;
  s.held_result.reset();
  s.forget_output();
  s.taken[0] = s.taken[1] = 0;
  s.deadline = clock::now() + start_timeout;

  // The calls go down a pipe (a Unix socket costs about 2 us more per
  // call, measured with bench/process): sv[0] is the spawner's write end,
  // sv[1] the worker's read end, of which the spawner keeps a copy
  // (Slot::call_reader) so that a write never meets a pipe without a reader:
  // no SIGPIPE, with no signal mask to set around each call.
  int sv[2], outp[2], errp[2];
  {
    int callp[2];
    if (::pipe2(callp, O_CLOEXEC) != 0) throw Error(errno_text("coop::ProcessVM: pipe"));
    sv[0] = callp[1];
    sv[1] = callp[0];
  }
  int resp[2];
  if (::pipe2(resp, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(sv[0]), ::close(sv[1]);
    errno = e;
    throw Error(errno_text("coop::ProcessVM: pipe"));
  }
  if (::pipe2(outp, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(sv[0]), ::close(sv[1]), ::close(resp[0]), ::close(resp[1]);
    errno = e;
    throw Error(errno_text("coop::ProcessVM: pipe"));
  }
  if (::pipe2(errp, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(sv[0]), ::close(sv[1]), ::close(resp[0]), ::close(resp[1]), ::close(outp[0]), ::close(outp[1]);
    errno = e;
    throw Error(errno_text("coop::ProcessVM: pipe"));
  }
  int child_calls = -1, child_results = -1, child_out = -1, child_err = -1, child_counts = -1;
  try {
    child_calls = above_stdio(sv[1]);
    child_results = above_stdio(resp[1]);
    child_out = above_stdio(outp[1]);
    child_err = above_stdio(errp[1]);
    child_counts = above_stdio(detail::process::open_output_counts(&s.counts));
  } catch (...) {
    for (int fd : {sv[0], resp[0], outp[0], errp[0], child_calls, child_results, child_out, child_err}) {
      if (fd >= 0) ::close(fd);
    }
    detail::process::close_output_counts(s.counts);
    throw;
  }
  // Every descriptor the spawner keeps is non-blocking: the scheduler's
  // thread must never wait for one worker (DESIGN.md section 5: start()
  // never blocks; receive() waits in poll).
  s.calls = sv[0];
  s.results = resp[0];
  ::fcntl(s.calls, F_SETFL, O_NONBLOCK);
  ::fcntl(s.results, F_SETFL, O_NONBLOCK);
  s.out = outp[0];
  s.err = errp[0];
  ::fcntl(s.out, F_SETFL, O_NONBLOCK);
  ::fcntl(s.err, F_SETFL, O_NONBLOCK);

  if (KeeperLauncher* the_launcher = detail::process::keeper_launcher()) {
    // Started elsewhere (an MPI rank's fork server), from the same fds.
    const int fds[6] = {devnull, child_out, child_err, child_calls, child_results, child_counts};
    pid_t pid = -1;
    try {
      pid = the_launcher->launch(fds);
    } catch (...) {
      for (int fd : {child_calls, child_results, child_out, child_err, child_counts}) ::close(fd);
      close_fd(s.calls), close_fd(s.results), close_fd(s.out), close_fd(s.err);
      detail::process::close_output_counts(s.counts);
      throw;
    }
    for (int fd : {child_results, child_out, child_err, child_counts}) ::close(fd);
    s.call_reader = child_calls;
    s.pid = pid;
    s.pidfd = posix::open_pidfd(pid);
    watch_or_reap(s);
    return;
  }
  pid_t parent = ::getpid();
  std::vector<std::string> args = detail::command_line();
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string mark = std::string(detail::worker_env) + "=" + std::to_string(child_calls) + ":" +
                     std::to_string(child_results) + ":" + std::to_string(parent) + ":" +
                     std::to_string(child_counts);
  std::string prefix = std::string(detail::worker_env) + "=";
  // COS_HOST names the slot's host in the worker (its mirrors' {host}).
  std::string host = "COS_HOST=" + hosts[s.host].name();
  std::vector<char*> envp;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0 && std::strncmp(*e, "COS_HOST=", 9) != 0) {
      envp.push_back(*e);
    }
  }
  envp.push_back(mark.data());
  envp.push_back(host.data());
  envp.push_back(nullptr);
  const char* exe = "/proc/self/exe";

  // Signals stay blocked across fork so that no handler of the spawner runs
  // in the child; the child resets handlers (as exec would) and unblocks
  // signals just before exec.
  sigset_t all, old, none;
  sigfillset(&all);
  sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(devnull, 0);
    ::dup2(child_out, 1);
    ::dup2(child_err, 2);
    ::fcntl(child_calls, F_SETFD, 0);
    ::fcntl(child_results, F_SETFD, 0);
    ::fcntl(child_counts, F_SETFD, 0);
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction sa {};
      if (::sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN) {
        sa.sa_handler = SIG_DFL;
        sa.sa_flags = 0;
        ::sigaction(sig, &sa, nullptr);
      }
    }
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(exe, argv.data(), envp.data());
    ::_exit(127);
  }
  int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  s.call_reader = child_calls;
  ::close(child_results);
  ::close(child_out);
  ::close(child_err);
  ::close(child_counts);
  if (pid < 0) {
    close_fd(s.call_reader);
    close_fd(s.calls);
    close_fd(s.results);
    close_fd(s.out);
    close_fd(s.err);
    detail::process::close_output_counts(s.counts);
    errno = fork_errno;
    throw Error(errno_text("coop::ProcessVM: fork"));
  }
  s.pid = pid;
  s.pidfd = posix::open_pidfd(pid);
  watch_or_reap(s);
}

// watch_or_reap() adds the new worker's descriptors to the epoll set; if
// that fails, the worker is ended and its descriptors closed before the
// error goes on (a slot must not keep a process or descriptors it cannot
// watch).
void ProcessVM::Impl::watch_or_reap(Slot& s) {
  try {
    watch(s);
  } catch (...) {
    reap(s);
    throw;
  }
}

// reap() ends the worker of `s` (if it still runs) with every process below
// its keeper, waits for the keeper, closes its descriptors and says how the
// worker ended. A keeper that has not ended yet gets `grace` to do so on its
// own (it ends the tree itself when its worker died), then the whole tree is
// frozen and killed (posix::kill_tree). Only this path walks /proc: a task
// that returns costs nothing of it.
std::string ProcessVM::Impl::reap(Slot& s, std::chrono::milliseconds grace) {
  std::string how = "ended";
  if (s.pid > 0) {
    int status = 0;
    pid_t r = wait_keeper(s.pid, status, false);
    if (r == 0 && grace > 0ms && s.pidfd >= 0) {
      pollfd p{s.pidfd, POLLIN, 0};
      while (::poll(&p, 1, static_cast<int>(grace.count())) < 0 && errno == EINTR) {
      }
      r = wait_keeper(s.pid, status, false);
    }
    if (r == 0) {
      posix::kill_tree(s.pid, true);
      r = wait_keeper(s.pid, status, true);
    }
    how = r == s.pid ? posix::describe_status(status) : "ended (its exit status is unknown)";
  }
  s.pid = -1;
  s.worker = -1;
  close_watched(s.calls);
  s.calls_watched = false;
  close_fd(s.call_reader);
  close_watched(s.results);
  close_watched(s.out);
  close_watched(s.err);
  close_watched(s.pidfd);
  detail::process::close_output_counts(s.counts);
  s.reader = FrameReader{};
  s.unsent.clear();
  s.unsent_from = 0;
  s.held = false;
  return how;
}

void ProcessVM::Impl::replace(Slot& s) {
  try {
    spawn(s);
  } catch (const Error& e) {
    start_failed(s, e.what());
  }
}

// start_failed() handles a worker that ended or hung before its hello: in the
// constructor that is an error for the caller; later the slot is retried a
// few times, then taken out of service.
void ProcessVM::Impl::start_failed(Slot& s, const std::string& why) {
  s.state = State::down;
  if (constructing) {
    if (startup_error.empty()) startup_error = why;
    return;
  }
  if (++s.failed_starts < max_failed_starts) {
    replace(s);
    return;
  }
  std::string msg = "coop::ProcessVM: a slot of host '" + hosts[s.host].name() +
                    "' is out of service: its worker failed to start " +
                    std::to_string(max_failed_starts) + " times (" + why + ")\n";
  posix::write_all(2, msg);
  if (s.pending) {
    s.pending->reason += "; its replacement failed to start: " + why;
    ready.push_back(std::move(*s.pending));
    s.pending.reset();
  }
}

// lose() handles a worker that died or broke the protocol: what it had
// already sent is taken in, then it is reaped, its task reported lost, and
// a replacement started.
void ProcessVM::Impl::lose(Slot& s, std::string why) {
  if (why.empty() && s.results >= 0) {
    // A result sent just before the end still counts.
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(s.results, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      s.reader.feed(buf, static_cast<std::size_t>(n));
    }
    try {
      while (auto f = s.reader.next_view()) {
        if (!handle_frame(s, *f)) return;  // handled as a corrupt frame already
      }
    } catch (const FrameError& e) {
      why = std::string("the worker sent a corrupt frame: ") + e.what();
    }
  }
  drain(s, Source::out, true);
  drain(s, Source::err, true);
  flush_partial_lines(s);
  release_held(s, nullptr);  // a result with nothing begun after it
  pid_t pid = s.worker > 0 ? s.worker : s.pid;
  // A worker that ended on its own: its keeper ends the tree below and then
  // itself, with the worker's status; give it a moment to.
  std::string how = reap(s, why.empty() ? 200ms : 0ms);
  std::string reason = why.empty() ? "worker " + std::to_string(pid) + " " + how
                                   : why + " (worker " + std::to_string(pid) + " killed)";
  switch (s.state) {
    case State::busy: {
      withdraw_all(s);
      if (s.task == 0) {  // between a result and its next queued call
        replace(s);
        break;
      }
      Message m;
      m.kind = Message::Kind::worker_lost;
      m.task = TaskId(s.task);
      m.host = hosts[s.host];
      m.reason = std::move(reason);
      m.output = claim_output(s, nullptr);
      m.completed = clock::now();
      s.pending = std::move(m);
      replace(s);
      break;
    }
    case State::idle:
      replace(s);
      break;
    case State::starting: {
      std::string hint = why.empty() ? " before it was ready to serve (is coop::init(argc, argv) the "
                                       "first line of main? call coop::init(argc, argv) first in main)"
                                     : "";
      start_failed(s, reason + hint);
      break;
    }
    case State::down:
      break;
  }
}

// check_start_deadlines() gives up workers that did not say hello in time.
void ProcessVM::Impl::check_start_deadlines() {
  auto now = clock::now();
  for (Slot& s : slots) {
    if (s.state == State::starting && now >= s.deadline) {
      drain(s, Source::out, true);
      drain(s, Source::err, true);
      flush_partial_lines(s);
      pid_t pid = s.worker > 0 ? s.worker : s.pid;
      reap(s);
      start_failed(s, "worker " + std::to_string(pid) + " was not ready within " +
                          detail::seconds_text(start_timeout) +
                          " (is coop::init(argc, argv) the first line of main? call coop::init(argc, argv) "
                          "first in main)");
    }
  }
}

// shutdown() ends every worker: idle ones see the end of their call
// stream and exit; busy, starting and lingering ones are killed.
void ProcessVM::Impl::shutdown() {
  std::vector<Slot*> leaving;
  for (Slot& s : slots) {
    if (s.pid <= 0) continue;
    if (s.state == State::idle && s.calls >= 0) {
      close_watched(s.calls);  // the worker reads the end of its calls and exits
      s.calls_watched = false;
      leaving.push_back(&s);
    } else {
      posix::kill_tree(s.pid, true);
    }
  }
  // Wait (in poll, not spinning) for the idle ones to close their end.
  auto deadline = clock::now() + stop_grace;
  while (!leaving.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left <= 0ms) break;
    std::vector<pollfd> fds;
    for (Slot* s : leaving) fds.push_back(pollfd{s->pidfd >= 0 ? s->pidfd : s->results, POLLIN, 0});
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()) + 1);
    if (n < 0 && errno != EINTR) break;
    std::vector<Slot*> still;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      Slot* s = leaving[k];
      if (!fds[k].revents) {
        still.push_back(s);
        continue;
      }
      if (s->pidfd < 0) {
        // Without a pidfd, a readable result pipe means data or the end of it.
        char buf[4096];
        ssize_t r = ::read(s->results, buf, sizeof buf);
        if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR))) {
          still.push_back(s);
          continue;
        }
      }
      drain(*s, Source::out, true);
      drain(*s, Source::err, true);
      int status = 0;
      wait_keeper(s->pid, status, true);
      s->pid = -1;
      s->worker = -1;
    }
    leaving = std::move(still);
  }
  for (Slot& s : slots) {
    drain(s, Source::out, true);
    drain(s, Source::err, true);
    flush_partial_lines(s);
    reap(s);
    s.state = State::down;
    s.pending.reset();
    s.queued.clear();
  }
  ready.clear();
}

}  // namespace coop
