#include "run_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include <cos/remote.hpp>

#include "posix/fd.hpp"
#include "posix/text.hpp"
#include "slot_paths.hpp"

namespace coop::tool {
namespace {

constexpr std::size_t keep_stdout = std::size_t{1} << 20;
constexpr std::size_t keep_tail = 4096;
// Once the guard is gone, nothing of the point should hold the pipes open
// (the guard killed its descendants); in case something escaped it anyway,
// stop reading them after this long.
constexpr int drain_ms = 300;

struct Pipe {
  int r = -1;
  int w = -1;
};

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  return Pipe{fds[0], fds[1]};
}

void write_int(int fd, int value) {
  posix::write_all(fd, std::string_view(reinterpret_cast<const char*>(&value), sizeof value));
}

// The command itself, after fork: its own process group, default signal
// dispositions (the worker ignores SIGINT, and an ignored signal stays
// ignored across exec), stdout and stderr into the pipes. Only
// async-signal-safe calls from here on.
[[noreturn]] void exec_command(char* const* argv, int out_w, int err_w, int exec_w) {
  ::setpgid(0, 0);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2}) {
    ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(out_w, 1) < 0 || ::dup2(err_w, 2) < 0) {
    write_int(exec_w, errno);
    ::_exit(127);
  }
  ::execvp(argv[0], argv);
  write_int(exec_w, errno);
  ::_exit(127);
}

// read_children() lists the children of the calling process, which must have
// one thread (the guard), into `out` (at most `max`); -1 when /proc cannot
// tell. Only raw system calls and no allocation: it runs after fork.
int read_children(pid_t* out, int max) {
  char path[64] = "/proc/self/task/";
  std::size_t len = std::strlen(path);
  char digits[16];
  int nd = 0;
  for (pid_t self = ::getpid(); self > 0 && nd < 16; self /= 10) digits[nd++] = static_cast<char>('0' + self % 10);
  while (nd > 0) path[len++] = digits[--nd];
  std::memcpy(path + len, "/children", sizeof "/children");
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int n = 0;
  long value = -1;
  char buf[512];
  for (;;) {
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    for (ssize_t i = 0; i < got; ++i) {
      if (buf[i] >= '0' && buf[i] <= '9') {
        value = (value < 0 ? 0 : value * 10) + (buf[i] - '0');
      } else if (value >= 0) {
        if (n < max) out[n++] = static_cast<pid_t>(value);
        value = -1;
      }
    }
  }
  if (value >= 0 && n < max) out[n++] = static_cast<pid_t>(value);
  ::close(fd);
  return n;
}

// kill_descendants() kills and reaps whatever is left below the guard. The
// guard is a subreaper, so a descendant whose parent died (one that left
// the point's process group with setsid, say) is its child now; killing its
// children hands their children to it in turn, until none is left.
void kill_descendants() {
  for (;;) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    pid_t children[256];
    int n = read_children(children, 256);
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) ::kill(children[i], SIGKILL);
    while (::waitpid(-1, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

// The guard, after fork: a subreaper for everything the command starts. It
// starts the command, then waits for whichever comes first, the command's
// exit or the end of its worker (the `life` pipe closes), and kills the
// command's whole group and then every remaining descendant either way. The
// group leader is reaped only after the kill, so its id cannot be reused in
// between. Reports the command's wait status on `status_w` once nothing of
// the point is left.
[[noreturn]] void guard(char* const* argv, int life_r, int status_w, int out_w, int err_w, int exec_w) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t c = ::fork();
  if (c < 0) {
    write_int(exec_w, -errno);
    ::_exit(1);
  }
  if (c == 0) {
    ::close(life_r);
    ::close(status_w);
    exec_command(argv, out_w, err_w, exec_w);
  }
  ::setpgid(c, c);  // also here, so the group exists before either goes on
  ::close(out_w);
  ::close(err_w);
  ::close(exec_w);
  int pidfd = posix::open_pidfd(c);
  for (;;) {
    struct pollfd fds[2] = {{life_r, POLLIN, 0}, {pidfd, POLLIN, 0}};
    int n = ::poll(fds, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 5);
    if (n < 0 && errno != EINTR) n = 0;
    if (n > 0 && fds[0].revents) {
      // The worker is gone: nobody wants this run any more.
      ::kill(-c, SIGKILL);
      ::kill(c, SIGKILL);
      kill_descendants();
      ::_exit(0);
    }
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    if (::waitid(P_PID, static_cast<id_t>(c), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == c) {
      ::kill(-c, SIGKILL);  // what the command left running in its group
      int status = 0;
      while (::waitpid(c, &status, 0) < 0 && errno == EINTR) {
      }
      kill_descendants();
      write_int(status_w, status);
      ::_exit(0);
    }
  }
}

void keep_last(std::string& buf, const char* data, std::size_t n, std::size_t limit) {
  buf.append(data, n);
  if (buf.size() > 2 * limit) buf.erase(0, buf.size() - limit);
}

std::string tail(const std::string& s, std::size_t n) { return s.size() > n ? s.substr(s.size() - n) : s; }

}  // namespace

CommandRun run_command(std::vector<std::string> args) {
  CommandRun run;
  if (args.empty()) throw std::invalid_argument("run_command: no command");
  resolve_markers(args);  // {scratch} and --mirror paths, as this slot sees them
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  Pipe out, err, status, life, exec;
  auto close_all = [&] {
    for (Pipe* p : {&out, &err, &status, &life, &exec}) {
      posix::close_fd(p->r);
      posix::close_fd(p->w);
    }
  };
  try {
    out = make_pipe();
    err = make_pipe();
    status = make_pipe();
    life = make_pipe();
    exec = make_pipe();
  } catch (...) {
    close_all();
    throw;
  }
  auto started = std::chrono::steady_clock::now();
  pid_t g = ::fork();
  if (g < 0) {
    int e = errno;
    close_all();
    throw std::runtime_error(std::string("fork: ") + std::strerror(e));
  }
  if (g == 0) {
    ::close(out.r);
    ::close(err.r);
    ::close(status.r);
    ::close(life.w);
    ::close(exec.r);
    guard(argv.data(), life.r, status.w, out.w, err.w, exec.w);
  }
  posix::close_fd(out.w);
  posix::close_fd(err.w);
  posix::close_fd(status.w);
  posix::close_fd(life.r);
  posix::close_fd(exec.w);

  std::string stdout_buf, stderr_buf;
  int wait_status = 0;
  bool have_status = false;
  bool guard_done = false;
  std::chrono::steady_clock::time_point drain_until{};
  char buf[1 << 16];
  while (out.r >= 0 || err.r >= 0 || !guard_done) {
    struct pollfd fds[3] = {{out.r, POLLIN, 0}, {err.r, POLLIN, 0}, {status.r, POLLIN, 0}};
    int timeout = -1;
    if (guard_done) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(drain_until -
                                                                        std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      timeout = static_cast<int>(left.count());
    }
    int n = ::poll(fds, 3, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      int& fd = i == 0 ? out.r : err.r;
      if (fd < 0 || !fds[i].revents) continue;
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        posix::close_fd(fd);
        continue;
      }
      if (i == 0)
        keep_last(stdout_buf, buf, static_cast<std::size_t>(got), keep_stdout);
      else
        keep_last(stderr_buf, buf, static_cast<std::size_t>(got), keep_tail);
    }
    if (status.r >= 0 && fds[2].revents) {
      int value = 0;
      ssize_t got = ::read(status.r, &value, sizeof value);
      if (got == static_cast<ssize_t>(sizeof value)) {
        wait_status = value;
        have_status = true;
        run.run_ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started)
                .count();
      } else if (got == 0 || (got < 0 && errno != EINTR)) {
        posix::close_fd(status.r);
        guard_done = true;
        drain_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms);
      }
    }
  }
  posix::close_fd(out.r);
  posix::close_fd(err.r);
  posix::close_fd(status.r);
  posix::close_fd(life.w);
  while (::waitpid(g, nullptr, 0) < 0 && errno == EINTR) {
  }
  int exec_errno = 0;
  bool exec_failed =
      ::read(exec.r, &exec_errno, sizeof exec_errno) == static_cast<ssize_t>(sizeof exec_errno);
  posix::close_fd(exec.r);
  if (run.run_ns == 0) {
    run.run_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started)
            .count();
  }

  run.last_line = posix::last_line(stdout_buf);
  run.stdout_tail = tail(stdout_buf, keep_tail);
  run.stderr_tail = tail(stderr_buf, keep_tail);
  if (exec_failed) {
    run.end = CommandRun::not_started;
    run.error = exec_errno < 0 ? std::string("cannot fork: ") + std::strerror(-exec_errno)
                               : "cannot run '" + args.front() + "': " + std::strerror(exec_errno);
  } else if (!have_status) {
    run.end = CommandRun::not_started;
    run.error = "the command's guard process ended without a status";
  } else if (WIFSIGNALED(wait_status)) {
    run.end = CommandRun::signaled;
    run.code = WTERMSIG(wait_status);
  } else {
    run.end = CommandRun::exited;
    run.code = WEXITSTATUS(wait_status);
  }
  return run;
}

COS_REMOTE(run_command);

}  // namespace coop::tool
