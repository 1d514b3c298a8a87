// fork_server.cpp: a serving rank's fork server (see fork_server.hpp). The
// rank sends it the six descriptors of a new keeper over a SOCK_SEQPACKET
// socket (SCM_RIGHTS); it forks and execs the keeper with them as stdin,
// stdout, stderr, 3 (calls), 4 (results) and 5 (output counts), and answers with the pid; when
// a keeper ends it reaps it and sends its status, which the rank's
// ProcessVM reads through the launcher seam instead of waitpid.
#include "backends/mpi/fork_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <cos/errors.hpp>

#include "backends/mpi/world.hpp"
#include "backends/process/launcher.hpp"
#include "backends/process/worker.hpp"
#include "posix/fd.hpp"

extern char** environ;

namespace coop::detail::mpi {
namespace {

// Reply is what the server says: a keeper started (pid, or -1 and errno
// in value) or ended (pid, its wait status in value).
struct Reply {
  std::int32_t kind = 0;  // 1 started, 2 ended
  std::int32_t pid = 0;
  std::int32_t value = 0;
};

// start_keeper() forks and execs one keeper on the received descriptors.
// Only async-signal-safe calls happen between fork and exec.
pid_t start_keeper(const int (&fds)[6], std::vector<char*>& argv, std::vector<char*>& envp) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the keeper sets its own after exec
  int high[6];
  for (int i = 0; i < 6; ++i) high[i] = ::fcntl(fds[i], F_DUPFD_CLOEXEC, 10);  // clear of 0..5; dup2 below clears CLOEXEC on 0..5
  for (int i = 0; i < 6; ++i) ::dup2(high[i], i);
  ::signal(SIGINT, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve("/proc/self/exe", argv.data(), envp.data());
  ::_exit(127);
}

// serve_forks() is the server's loop; it ends (and with it, through their
// PR_SET_PDEATHSIG, every keeper it started) when the rank closes the
// socket or dies.
[[noreturn]] void serve_forks(int sock, pid_t rank) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != rank) ::_exit(0);
  ::signal(SIGINT, SIG_IGN);  // Ctrl-C is rank 0's to handle, as for ProcessVM's workers
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &chld, nullptr);
  int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC);
  // The keepers' command line and environment: this program's, without the
  // variables that mark a rank, plus the mark of a worker.
  std::vector<std::string> args = detail::command_line();
  std::vector<std::string> env;
  std::string prefix = std::string(detail::worker_env) + "=";
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0 && !launcher_variable(*e)) env.emplace_back(*e);
  }
  env.push_back(prefix + "3:4:" + std::to_string(::getpid()) + ":5");
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (;;) {
    pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    if (p[1].revents) {
      signalfd_siginfo info;
      [[maybe_unused]] auto n = ::read(sfd, &info, sizeof info);
      int st = 0;
      pid_t r;
      while ((r = ::waitpid(-1, &st, WNOHANG)) > 0) {
        Reply rep{2, r, st};
        ::send(sock, &rep, sizeof rep, MSG_NOSIGNAL);
      }
    }
    if (p[0].revents) {
      char byte = 0;
      iovec io{&byte, 1};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 6)];
      msghdr msg{};
      msg.msg_iov = &io;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(0);  // the rank closed its end, or died
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      int fds[6] = {-1, -1, -1, -1, -1, -1};
      if (c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof fds)) {
        std::memcpy(fds, CMSG_DATA(c), sizeof fds);
      }
      Reply rep{1, -1, EBADF};
      if (fds[0] >= 0) {
        pid_t pid = start_keeper(fds, argv, envp);
        rep.pid = pid;
        rep.value = pid < 0 ? errno : 0;
      }
      for (int fd : fds) {
        if (fd >= 0) ::close(fd);
      }
      ::send(sock, &rep, sizeof rep, MSG_NOSIGNAL);
    }
  }
}

// ServerLauncher is the rank's side: it hands descriptors to the server and
// keeps the statuses the server reports until the ProcessVM asks for them.
class ServerLauncher final : public process::KeeperLauncher {
 public:
  explicit ServerLauncher(int sock) : sock_(sock) {}

  pid_t launch(const int (&fds)[6]) override {
    char byte = 1;
    iovec io{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 6)] = {};
    msghdr msg{};
    msg.msg_iov = &io;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    std::memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t n;
    do {
      n = ::sendmsg(sock_, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw Error(posix::errno_text("coop::MpiVM: the rank's fork server is gone: sendmsg"));
    for (;;) {
      Reply rep;
      if (!read_reply(rep, true)) throw Error("coop::MpiVM: the rank's fork server is gone");
      if (rep.kind == 2) {
        ended_[rep.pid] = rep.value;
        continue;
      }
      if (rep.pid < 0) {
        errno = rep.value;
        throw Error(posix::errno_text("coop::MpiVM: the rank's fork server could not fork"));
      }
      return rep.pid;
    }
  }

  pid_t wait(pid_t pid, int& status, bool block) override {
    for (;;) {
      if (auto it = ended_.find(pid); it != ended_.end()) {
        status = it->second;
        ended_.erase(it);
        return pid;
      }
      Reply rep;
      if (!read_reply(rep, block)) return block || gone_ ? -1 : 0;
      if (rep.kind == 2) ended_[rep.pid] = rep.value;
    }
  }

 private:
  // read_reply() reads one reply; false when none is there (not blocking)
  // or the server is gone.
  bool read_reply(Reply& rep, bool block) {
    if (gone_) return false;
    ssize_t n;
    do {
      n = ::recv(sock_, &rep, sizeof rep, block ? 0 : MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof rep)) return true;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    gone_ = true;
    return false;
  }

  int sock_;
  bool gone_ = false;
  std::map<pid_t, int> ended_;
};

}  // namespace

void start_fork_server() {
  if (process::keeper_launcher()) return;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    throw Error(posix::errno_text("coop::MpiVM: socketpair for the fork server"));
  }
  pid_t rank = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw Error(posix::errno_text("coop::MpiVM: cannot fork the fork server"));
  if (pid == 0) {
    ::close(sv[0]);
    serve_forks(sv[1], rank);
  }
  ::close(sv[1]);
  static ServerLauncher launcher(sv[0]);
  process::set_keeper_launcher(&launcher);
}

}  // namespace coop::detail::mpi
