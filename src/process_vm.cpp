#include <cos/process_vm.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>

#include <cos/errors.hpp>
#include <cos/remote.hpp>

#include "detail/frame.hpp"
#include "detail/host_name.hpp"
#include "detail/worker.hpp"

extern char** environ;

namespace coop {
namespace {

using namespace std::chrono_literals;
using detail::Frame;
using detail::FrameError;
using detail::FrameKind;
using detail::FrameReader;

// A worker must say hello within this time of its start (a cold start of a
// large program on a loaded machine takes well under a second). The
// environment variable COS_WORKER_START_TIMEOUT (seconds) overrides it.
constexpr auto default_start_timeout = 10s;
// finalize() gives idle workers this long to exit on their own before SIGKILL.
constexpr auto stop_grace = 1s;
// A failed replacement is retried this many times before its slot is given up.
constexpr int max_failed_starts = 3;
// At most this much of one task's output is kept in its Message::output.
constexpr std::size_t max_task_output = std::size_t{16} << 20;
// A partial line longer than this is forwarded without waiting for its newline.
constexpr std::size_t max_partial_line = std::size_t{64} << 10;

std::chrono::nanoseconds start_timeout_from_env() {
  const char* text = std::getenv("COS_WORKER_START_TIMEOUT");
  if (!text || !*text) return default_start_timeout;
  char* end = nullptr;
  double seconds = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(seconds > 0) || seconds > 1e6) {
    throw Error(std::string("coop::ProcessVM: COS_WORKER_START_TIMEOUT='") + text +
                "' is not a positive number of seconds");
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

std::string seconds_text(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", std::chrono::duration<double>(d).count());
  return buf;
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Moves fd above 0..2 (CLOEXEC), so that the child's dup2 onto stdin,
// stdout and stderr cannot clobber it when the spawner runs without them.
int above_stdio(int fd) {
  if (fd > 2) return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  ::close(fd);
  if (moved < 0) throw Error(errno_text("coop::ProcessVM: fcntl"));
  return moved;
}

void write_fd(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // the spawner's stdout is gone; nothing better to do with the output
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
#else
  (void)pid;
  return -1;
#endif
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* abbrev = ::sigabbrev_np(sig);
    std::string s = "killed by signal " + std::to_string(sig);
    if (abbrev) s += std::string(" (SIG") + abbrev + ")";
    return s;
  }
  return "ended with wait status " + std::to_string(status);
}

enum class State {
  starting,  // forked; waits for the worker's hello
  idle,      // ready for a call
  busy,      // runs `task`
  down,      // out of service (could not be replaced, or finalized)
};

// Slot is one worker process and what the VM knows about it. A dead worker
// is replaced in the same Slot; `generation` tells the old one's events from
// the new one's.
struct Slot {
  std::size_t host = 0;
  State state = State::down;
  std::uint64_t generation = 0;
  pid_t pid = -1;
  int ctrl = -1;    // control socket: calls to the worker
  int result = -1;  // result pipe: hello and results from the worker
  int out = -1;    // the worker's stdout
  int err = -1;    // the worker's stderr
  int pidfd = -1;  // readable when the process ends (-1 on kernels without pidfd)
  FrameReader reader{};
  std::uint64_t task = 0;  // while busy
  std::string output{};    // what the running task wrote
  bool output_truncated = false;
  // Set by pump() while it handles this slot's control socket: its output
  // pipes were polled after the socket in the same pass and drained if
  // readable, so a result needs no further read of them (see pump()).
  bool output_polled = false;
  std::string out_line{}, err_line{};  // partial lines waiting for their newline
  clock::time_point deadline{};        // while starting: hello by then
  std::optional<Message> pending{};    // delivered once the replacement is ready
  int failed_starts = 0;
};

enum class Source { ctrl, out, err, pidfd };

}  // namespace

struct ProcessVM::Impl {
  std::vector<HostId> hosts;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> task_host;  // host index of task id i+1
  std::deque<Message> ready;
  std::size_t cursor = 0;
  int devnull = -1;
  bool constructing = true;
  bool finalized = false;
  bool slot_freed = false;  // a replacement became ready (no message says so)
  std::chrono::nanoseconds start_timeout = default_start_timeout;
  std::string startup_error;

  explicit Impl(const std::map<std::string, int>& slots_per_host);
  ~Impl();

  void spawn(Slot& s);
  void replace(Slot& s);
  void start_failed(Slot& s, const std::string& why);
  std::string reap(Slot& s);
  void lose(Slot& s, std::string why);
  void on_ctrl(Slot& s);
  bool handle_frames(Slot& s);
  bool handle_frame(Slot& s, Frame& f);
  void drain(Slot& s, Source which);
  void on_output(Slot& s, Source which, const char* data, std::size_t size);
  void flush_partial_lines(Slot& s);
  void pump(std::chrono::nanoseconds timeout);
  void check_start_deadlines();
  bool anything_to_wait_for() const;
  void shutdown();
  Slot* busy_with(std::uint64_t task);
};

ProcessVM::Impl::Impl(const std::map<std::string, int>& slots_per_host) {
  if (std::getenv(detail::worker_env)) {
    throw Error(
        "coop::ProcessVM: this process was started as a cos worker, but its main did not call "
        "coop::init(argc, argv) first: call coop::init(argc, argv) first in main");
  }
  detail::check_registry();
  start_timeout = start_timeout_from_env();
  if (slots_per_host.empty()) throw Error("coop::ProcessVM: no hosts given (the map of slots per host is empty)");
  for (const auto& [name, count] : slots_per_host) {
    if (name.empty()) throw Error("coop::ProcessVM: a host name is empty");
    if (count <= 0) {
      throw Error("coop::ProcessVM: host '" + name + "' has " + std::to_string(count) +
                  " slots; each host needs at least 1");
    }
  }
  devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) throw Error(errno_text("coop::ProcessVM: cannot open /dev/null"));
  devnull = above_stdio(devnull);
  for (const auto& [name, count] : slots_per_host) {
    hosts.emplace_back(name);
    for (int i = 0; i < count; ++i) {
      slots.emplace_back();
      slots.back().host = hosts.size() - 1;
    }
  }
  try {
    for (Slot& s : slots) spawn(s);
    while (startup_error.empty() &&
           std::any_of(slots.begin(), slots.end(), [](const Slot& s) { return s.state == State::starting; })) {
      pump(-1ns);
    }
  } catch (...) {
    shutdown();
    close_fd(devnull);
    throw;
  }
  if (!startup_error.empty()) {
    shutdown();
    close_fd(devnull);
    throw Error("coop::ProcessVM: " + startup_error);
  }
  constructing = false;
}

ProcessVM::Impl::~Impl() {
  shutdown();
  close_fd(devnull);
}

// spawn() forks and execs a worker for `s`. Everything the child needs is
// prepared before fork: between fork and exec a multithreaded program may
// only make async-signal-safe calls.
void ProcessVM::Impl::spawn(Slot& s) {
  s.generation++;
  s.state = State::starting;
  s.reader = FrameReader{};
  s.task = 0;
  s.output.clear();
  s.output_truncated = false;
  s.deadline = clock::now() + start_timeout;

  int sv[2], outp[2], errp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    throw Error(errno_text("coop::ProcessVM: socketpair"));
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
  int child_ctrl = -1, child_result = -1, child_out = -1, child_err = -1;
  try {
    child_ctrl = above_stdio(sv[1]);
    child_result = above_stdio(resp[1]);
    child_out = above_stdio(outp[1]);
    child_err = above_stdio(errp[1]);
  } catch (...) {
    for (int fd : {sv[0], resp[0], outp[0], errp[0], child_ctrl, child_result, child_out, child_err}) {
      if (fd >= 0) ::close(fd);
    }
    throw;
  }
  s.ctrl = sv[0];
  s.result = resp[0];
  ::fcntl(s.result, F_SETFL, O_NONBLOCK);
  s.out = outp[0];
  s.err = errp[0];
  ::fcntl(s.out, F_SETFL, O_NONBLOCK);
  ::fcntl(s.err, F_SETFL, O_NONBLOCK);

  pid_t parent = ::getpid();
  std::vector<std::string> args = detail::command_line();
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string mark = std::string(detail::worker_env) + "=" + std::to_string(child_ctrl) + ":" +
                     std::to_string(child_result) + ":" + std::to_string(parent);
  std::string prefix = std::string(detail::worker_env) + "=";
  std::vector<char*> envp;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) envp.push_back(*e);
  }
  envp.push_back(mark.data());
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
    ::fcntl(child_ctrl, F_SETFD, 0);
    ::fcntl(child_result, F_SETFD, 0);
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
  ::close(child_ctrl);
  ::close(child_result);
  ::close(child_out);
  ::close(child_err);
  if (pid < 0) {
    close_fd(s.ctrl);
    close_fd(s.result);
    close_fd(s.out);
    close_fd(s.err);
    errno = fork_errno;
    throw Error(errno_text("coop::ProcessVM: fork"));
  }
  s.pid = pid;
  s.pidfd = open_pidfd(pid);
}

// reap() ends the worker of `s` (if it still runs), waits for it, closes its
// descriptors and says how it ended.
std::string ProcessVM::Impl::reap(Slot& s) {
  std::string how = "ended";
  if (s.pid > 0) {
    // SIGKILL does not change the status of a process that has already
    // begun to exit, so a crash still reads as a crash.
    ::kill(s.pid, SIGKILL);
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(s.pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    how = r == s.pid ? describe_status(status) : "ended (its exit status is unknown)";
  }
  s.pid = -1;
  close_fd(s.ctrl);
  close_fd(s.result);
  close_fd(s.out);
  close_fd(s.err);
  close_fd(s.pidfd);
  s.reader = FrameReader{};
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
  write_fd(2, msg.data(), msg.size());
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
  if (why.empty() && s.result >= 0) {
    // A result sent just before the end still counts.
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(s.result, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      s.reader.feed(buf, static_cast<std::size_t>(n));
    }
    try {
      while (auto f = s.reader.next()) {
        if (!handle_frame(s, *f)) return;  // handled as a corrupt frame already
      }
    } catch (const FrameError& e) {
      why = std::string("the worker sent a corrupt frame: ") + e.what();
    }
  }
  drain(s, Source::out);
  drain(s, Source::err);
  flush_partial_lines(s);
  pid_t pid = s.pid;
  std::string how = reap(s);
  std::string reason = why.empty() ? "worker " + std::to_string(pid) + " " + how
                                   : why + " (worker " + std::to_string(pid) + " killed)";
  switch (s.state) {
    case State::busy: {
      Message m;
      m.kind = Message::Kind::worker_lost;
      m.task = TaskId(s.task);
      m.host = hosts[s.host];
      m.reason = std::move(reason);
      m.output = std::move(s.output);
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

// handle_frame() takes one frame from the worker of `s`; returns false when
// the frame made the VM give the worker up (it was lost).
bool ProcessVM::Impl::handle_frame(Slot& s, Frame& f) {
  try {
    switch (f.kind) {
      case FrameKind::hello: {
        auto pid = detail::decode_hello(f.payload);
        if (s.state != State::starting || pid != s.pid) throw FrameError("coop: unexpected hello frame");
        s.state = State::idle;
        s.failed_starts = 0;
        if (s.pending) {
          ready.push_back(std::move(*s.pending));
          s.pending.reset();
        } else {
          slot_freed = true;
        }
        return true;
      }
      case FrameKind::result: {
        std::uint64_t task = 0;
        Message m;
        detail::decode_result(f.payload, task, m);
        if (s.state != State::busy || task != s.task) throw FrameError("coop: unexpected result frame");
        // The worker flushed its output before it sent the result: take it all in.
        if (!s.output_polled) {
          drain(s, Source::out);
          drain(s, Source::err);
        }
        m.kind = Message::Kind::result;
        m.task = TaskId(task);
        m.host = hosts[s.host];
        m.output = std::move(s.output);
        if (s.output_truncated) m.output += "\n[coop: output truncated]\n";
        s.output.clear();
        s.output_truncated = false;
        s.state = State::idle;
        s.task = 0;
        ready.push_back(std::move(m));
        return true;
      }
      case FrameKind::call:
        throw FrameError("coop: unexpected call frame from a worker");
    }
  } catch (const FrameError& e) {
    lose(s, std::string("the worker sent a corrupt frame: ") + e.what());
    return false;
  }
  return true;
}

bool ProcessVM::Impl::handle_frames(Slot& s) {
  try {
    while (auto f = s.reader.next()) {
      if (!handle_frame(s, *f)) return false;
    }
  } catch (const FrameError& e) {
    lose(s, std::string("the worker sent a corrupt frame: ") + e.what());
    return false;
  }
  return true;
}

void ProcessVM::Impl::on_ctrl(Slot& s) {
  char buf[1 << 16];
  ssize_t n = ::read(s.result, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n > 0) {
    s.reader.feed(buf, static_cast<std::size_t>(n));
    handle_frames(s);
    return;
  }
  lose(s, "");  // end of stream or a broken socket: the worker is gone
}

void ProcessVM::Impl::drain(Slot& s, Source which) {
  int& fd = which == Source::out ? s.out : s.err;
  char buf[1 << 16];
  while (fd >= 0) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      on_output(s, which, buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) close_fd(fd);
    break;
  }
}

// on_output() forwards whole lines to the spawner's stdout or stderr (one
// write per batch, so lines of different workers do not mix) and keeps the
// bytes as the running task's output.
void ProcessVM::Impl::on_output(Slot& s, Source which, const char* data, std::size_t size) {
  if (s.state == State::busy) {
    std::size_t room = max_task_output - std::min(max_task_output, s.output.size());
    s.output.append(data, std::min(room, size));
    if (size > room) s.output_truncated = true;
  }
  std::string& line = which == Source::out ? s.out_line : s.err_line;
  int fd = which == Source::out ? 1 : 2;
  line.append(data, size);
  std::size_t end = line.rfind('\n');
  if (end != std::string::npos) {
    write_fd(fd, line.data(), end + 1);
    line.erase(0, end + 1);
  }
  if (line.size() > max_partial_line) {
    write_fd(fd, line.data(), line.size());
    line.clear();
  }
}

void ProcessVM::Impl::flush_partial_lines(Slot& s) {
  for (auto [line, fd] : {std::pair{&s.out_line, 1}, std::pair{&s.err_line, 2}}) {
    if (line->empty()) continue;
    line->push_back('\n');
    write_fd(fd, line->data(), line->size());
    line->clear();
  }
}

bool ProcessVM::Impl::anything_to_wait_for() const {
  return std::any_of(slots.begin(), slots.end(), [](const Slot& s) {
    return s.state != State::idle && s.state != State::down;
  });
}

void ProcessVM::Impl::check_start_deadlines() {
  auto now = clock::now();
  for (Slot& s : slots) {
    if (s.state == State::starting && now >= s.deadline) {
      drain(s, Source::out);
      drain(s, Source::err);
      flush_partial_lines(s);
      pid_t pid = s.pid;
      reap(s);
      start_failed(s, "worker " + std::to_string(pid) + " was not ready within " +
                          seconds_text(start_timeout) + " (is coop::init(argc, argv) the first line of main? call coop::init(argc, argv) "
                          "first in main)");
    }
  }
}

// pump() waits up to `timeout` (negative: without limit) for any worker to
// have something, and handles what it finds, in one poll.
void ProcessVM::Impl::pump(std::chrono::nanoseconds timeout) {
  struct Watch {
    std::size_t slot;
    std::uint64_t generation;
    Source source;
  };
  std::vector<pollfd> fds;
  std::vector<Watch> watches;
  fds.reserve(slots.size() * 4);
  watches.reserve(slots.size() * 4);
  std::optional<clock::time_point> next_deadline;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    Slot& s = slots[i];
    if (s.state == State::down) continue;
    if (s.state == State::starting && (!next_deadline || s.deadline < *next_deadline)) next_deadline = s.deadline;
    // The control socket comes before the output pipes: poll checks them in
    // this order in one pass, so when a result is seen, output the worker
    // wrote before it is seen too (and an empty pipe needs no read).
    for (auto [fd, source] : {std::pair{s.result, Source::ctrl}, std::pair{s.out, Source::out},
                              std::pair{s.err, Source::err}, std::pair{s.pidfd, Source::pidfd}}) {
      if (fd < 0) continue;
      fds.push_back(pollfd{fd, POLLIN, 0});
      watches.push_back(Watch{i, s.generation, source});
    }
  }
  if (next_deadline) {
    auto until = std::max(std::chrono::nanoseconds(0), *next_deadline - clock::now());
    if (timeout < 0ns || until < timeout) timeout = until;
  }
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout >= 0ns) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  int n = ::ppoll(fds.data(), fds.size(), tsp, nullptr);
  if (n < 0) {
    if (errno == EINTR) return;
    throw Error(errno_text("coop::ProcessVM: poll"));
  }
  // Output first, so that a result carries everything its task wrote.
  for (std::size_t k = 0; n > 0 && k < fds.size(); ++k) {
    Source source = watches[k].source;
    if (!fds[k].revents || (source != Source::out && source != Source::err)) continue;
    Slot& s = slots[watches[k].slot];
    if (s.generation == watches[k].generation && s.state != State::down) drain(s, source);
  }
  for (std::size_t k = 0; n > 0 && k < fds.size(); ++k) {
    Source source = watches[k].source;
    if (!fds[k].revents || source == Source::out || source == Source::err) continue;
    Slot& s = slots[watches[k].slot];
    if (s.generation != watches[k].generation || s.state == State::down) continue;
    if (source == Source::ctrl) {
      s.output_polled = true;
      on_ctrl(s);
      s.output_polled = false;
    } else {
      lose(s, "");
    }
  }
  check_start_deadlines();
}

Slot* ProcessVM::Impl::busy_with(std::uint64_t task) {
  for (Slot& s : slots) {
    if (s.state == State::busy && s.task == task) return &s;
  }
  return nullptr;
}

// shutdown() ends every worker: idle ones see the end of their control
// stream and exit; busy, starting and lingering ones are killed.
void ProcessVM::Impl::shutdown() {
  std::vector<Slot*> leaving;
  for (Slot& s : slots) {
    if (s.pid <= 0) continue;
    if (s.state == State::idle && s.ctrl >= 0) {
      ::shutdown(s.ctrl, SHUT_WR);
      leaving.push_back(&s);
    } else {
      ::kill(s.pid, SIGKILL);
    }
  }
  // Wait (in poll, not spinning) for the idle ones to close their end.
  auto deadline = clock::now() + stop_grace;
  while (!leaving.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left <= 0ms) break;
    std::vector<pollfd> fds;
    for (Slot* s : leaving) fds.push_back(pollfd{s->pidfd >= 0 ? s->pidfd : s->result, POLLIN, 0});
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
        // Without a pidfd, readable control means data or the end of it.
        char buf[4096];
        ssize_t r = ::read(s->result, buf, sizeof buf);
        if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR))) {
          still.push_back(s);
          continue;
        }
      }
      drain(*s, Source::out);
      drain(*s, Source::err);
      int status = 0;
      while (::waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
      }
      s->pid = -1;
    }
    leaving = std::move(still);
  }
  for (Slot& s : slots) {
    drain(s, Source::out);
    drain(s, Source::err);
    flush_partial_lines(s);
    reap(s);
    s.state = State::down;
    s.pending.reset();
  }
  ready.clear();
}

ProcessVM::ProcessVM(int n) : ProcessVM([n] {
  if (n <= 0) {
    throw Error("coop::ProcessVM: " + std::to_string(n) + " slots; a ProcessVM needs at least 1");
  }
  return std::map<std::string, int>{{detail::this_host_name(), n}};
}()) {}

ProcessVM::ProcessVM(std::map<std::string, int> slots_per_host)
    : impl_(std::make_unique<Impl>(slots_per_host)) {}

ProcessVM::~ProcessVM() = default;

int ProcessVM::slots() const {
  if (impl_->finalized) return 0;
  return static_cast<int>(std::count_if(impl_->slots.begin(), impl_->slots.end(),
                                        [](const Slot& s) { return s.state != State::down; }));
}

int ProcessVM::free_slots() const {
  return static_cast<int>(std::count_if(impl_->slots.begin(), impl_->slots.end(),
                                        [](const Slot& s) { return s.state == State::idle; }));
}

std::vector<HostId> ProcessVM::hosts() const { return impl_->hosts; }

std::vector<HostId> ProcessVM::hosts_with_free_slots() const {
  std::vector<bool> free(impl_->hosts.size(), false);
  for (const Slot& s : impl_->slots) {
    if (s.state == State::idle) free[s.host] = true;
  }
  std::vector<HostId> out;
  for (std::size_t i = 0; i < free.size(); ++i) {
    if (free[i]) out.push_back(impl_->hosts[i]);
  }
  return out;
}

std::optional<TaskId> ProcessVM::start(const Call& call, const std::optional<HostId>& host) {
  Impl& m = *impl_;
  if (m.finalized) throw Error("coop::ProcessVM: start() after finalize()");
  std::optional<std::size_t> want;
  if (host) {
    auto it = std::find(m.hosts.begin(), m.hosts.end(), *host);
    if (it == m.hosts.end()) {
      std::string known;
      for (const auto& h : m.hosts) known += (known.empty() ? "" : ", ") + h.name();
      throw Error("coop::ProcessVM: unknown host '" + host->name() + "' (hosts: " + known + ")");
    }
    want = static_cast<std::size_t>(it - m.hosts.begin());
  }
  // Round robin over the slots, so that work without a host spreads over hosts.
  Slot* slot = nullptr;
  for (std::size_t k = 0; k < m.slots.size(); ++k) {
    Slot& s = m.slots[(m.cursor + k) % m.slots.size()];
    if (s.state == State::idle && (!want || s.host == *want)) {
      slot = &s;
      m.cursor = (m.cursor + k + 1) % m.slots.size();
      break;
    }
  }
  if (!slot) return std::nullopt;
  std::uint64_t id = m.task_host.size() + 1;
  std::string frame = detail::encode_frame(FrameKind::call, detail::encode_call(id, call));
  m.task_host.push_back(static_cast<std::uint32_t>(slot->host));
  slot->state = State::busy;
  slot->task = id;
  slot->output.clear();
  slot->output_truncated = false;
  if (!detail::write_all(slot->ctrl, frame)) m.lose(*slot, "");
  return TaskId(id);
}

std::optional<Message> ProcessVM::receive(std::chrono::nanoseconds timeout) {
  Impl& m = *impl_;
  auto take = [&m]() -> std::optional<Message> {
    if (m.ready.empty()) return std::nullopt;
    Message msg = std::move(m.ready.front());
    m.ready.pop_front();
    return msg;
  };
  if (auto msg = take()) return msg;
  if (m.finalized) return std::nullopt;
  if (timeout == 0ns) {
    m.pump(0ns);
    return take();
  }
  const bool forever = timeout < 0ns;
  const auto deadline = forever ? clock::time_point::max() : clock::now() + timeout;
  m.slot_freed = false;
  for (;;) {
    if (forever && !m.anything_to_wait_for()) return std::nullopt;
    m.pump(forever ? -1ns : std::max(0ns, std::chrono::nanoseconds(deadline - clock::now())));
    if (auto msg = take()) return msg;
    // A slot that became free is news to a caller with queued work.
    if (m.slot_freed || (!forever && clock::now() >= deadline)) return std::nullopt;
  }
}

HostId ProcessVM::host_of(const TaskId& task) const {
  const auto& th = impl_->task_host;
  if (task.value() == 0 || task.value() > th.size()) {
    throw Error("coop::ProcessVM: unknown task id " + std::to_string(task.value()));
  }
  return impl_->hosts[th[task.value() - 1]];
}

void ProcessVM::cancel(const TaskId& task) {
  Impl& m = *impl_;
  if (m.finalized) return;
  Slot* s = m.busy_with(task.value());
  if (!s) return;
  m.drain(*s, Source::out);
  m.drain(*s, Source::err);
  m.flush_partial_lines(*s);
  m.reap(*s);
  Message msg;
  msg.kind = Message::Kind::exit;
  msg.task = task;
  msg.host = m.hosts[s->host];
  msg.reason = "cancelled";
  msg.output = std::move(s->output);
  msg.completed = clock::now();
  s->pending = std::move(msg);
  m.replace(*s);
}

void ProcessVM::finalize() {
  Impl& m = *impl_;
  if (m.finalized) return;
  m.finalized = true;
  m.shutdown();
}

std::vector<int> ProcessVM::worker_pids() const {
  std::vector<int> pids;
  for (const Slot& s : impl_->slots) {
    if (s.pid > 0) pids.push_back(s.pid);
  }
  return pids;
}

}  // namespace coop
