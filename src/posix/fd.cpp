#include "posix/fd.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace coop::posix {

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

int open_pidfd(int pid) noexcept {
#ifdef SYS_pidfd_open
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
#else
  (void)pid;
  return -1;
#endif
}

bool write_all(int fd, std::string_view bytes, bool socket) noexcept {
  while (!bytes.empty()) {
    ssize_t n = socket ? ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) : -1;
    if (!socket || (n < 0 && errno == ENOTSOCK)) n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace coop::posix

namespace coop::posix {
namespace {

// read_small() is the text of a small /proc file ("" when it cannot be read).
std::string read_small(const char* path) {
  std::string text;
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

bool has_children_files() {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/children", static_cast<int>(::getpid()));
  return ::access(path, R_OK) == 0;
}

// children_of() appends the children of `pid` (of any of its threads).
void children_of(int pid, std::vector<int>& out) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR* dir = ::opendir(path);
  if (!dir) return;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char file[320];
    std::snprintf(file, sizeof file, "/proc/%d/task/%s/children", pid, e->d_name);
    std::string text = read_small(file);
    const char* p = text.c_str();
    for (;;) {
      char* end = nullptr;
      long c = std::strtol(p, &end, 10);
      if (end == p) break;
      if (c > 0) out.push_back(static_cast<int>(c));
      p = end;
    }
  }
  ::closedir(dir);
}

// all_parents() lists (pid, parent pid) of every process, from /proc/*/stat.
std::vector<std::pair<int, int>> all_parents() {
  std::vector<std::pair<int, int>> out;
  DIR* dir = ::opendir("/proc");
  if (!dir) return out;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char file[320];
    std::snprintf(file, sizeof file, "/proc/%s/stat", e->d_name);
    std::string text = read_small(file);
    auto close = text.rfind(')');
    if (close == std::string::npos || close + 4 >= text.size()) continue;
    int ppid = std::atoi(text.c_str() + close + 4);  // ") S ppid"
    out.emplace_back(std::atoi(e->d_name), ppid);
  }
  ::closedir(dir);
  return out;
}

}  // namespace

int kill_tree(int root, bool include_root) noexcept {
  try {
    if (root <= 0) return 0;
    if (include_root) ::kill(root, SIGSTOP);
    static const bool children_files = has_children_files();
    std::vector<int> seen{root};
    auto known = [&seen](int pid) {
      for (int s : seen) {
        if (s == pid) return true;
      }
      return false;
    };
    // Each pass looks below every process found so far (a process that
    // ended meanwhile handed its children to a subreaper among them, or to
    // init, out of reach), until one finds nothing new.
    for (int pass = 0; pass < 1000; ++pass) {
      std::vector<int> found;
      if (children_files) {
        for (int pid : seen) children_of(pid, found);
      } else {
        for (auto [pid, ppid] : all_parents()) {
          if (known(ppid)) found.push_back(pid);
        }
      }
      bool added = false;
      for (int pid : found) {
        if (known(pid)) continue;
        ::kill(pid, SIGSTOP);
        seen.push_back(pid);
        added = true;
      }
      if (!added) break;
    }
    int killed = 0;
    for (std::size_t i = seen.size(); i-- > 1;) {
      if (::kill(seen[i], SIGKILL) == 0) ++killed;
    }
    if (include_root && ::kill(root, SIGKILL) == 0) ++killed;
    return killed;
  } catch (...) {
    // Out of memory: at least the root goes.
    if (include_root) ::kill(root, SIGKILL);
    return 0;
  }
}

}  // namespace coop::posix
