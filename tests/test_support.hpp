// test_support.hpp: helpers shared by the cos tests (header-only, so every
// test program and the sanitizer build get them without CMake changes).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <cos/process_vm.hpp>
#include <cos/thread_vm.hpp>

namespace cos_test {

// Log records what tasks did, in order, as one space-separated string that a
// test compares with the order it expects.
class Log {
 public:
  void operator()(std::string_view what) {
    if (!text_.empty()) text_ += ' ';
    text_ += what;
  }
  const std::string& str() const { return text_; }

 private:
  std::string text_;
};

// StderrCapture sends file descriptor 2 to a temporary file for its lifetime;
// text() is what was written there so far.
class StderrCapture {
 public:
  StderrCapture() {
    char name[] = "/tmp/cos_test_stderr_XXXXXX";
    fd_ = ::mkstemp(name);
    if (fd_ < 0) throw std::runtime_error("StderrCapture: mkstemp failed");
    path_ = name;
    std::fflush(stderr);
    saved_ = ::dup(2);
    ::dup2(fd_, 2);
  }
  ~StderrCapture() {
    restore();
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  // restore() puts the real stderr back (the destructor also does).
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  std::string text() const {
    std::fflush(stderr);
    std::ifstream in(path_);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

 private:
  int fd_ = -1;
  int saved_ = -1;
  std::string path_;
};

// crash(how) dies the way `how` says ("abort", "segv", "exit3"), without
// leaving a core file behind; registered as "cos_test::crash"
// (crash_function.cpp, built into the programs whose workers crash).
int crash(std::string how);

// ChildResult is how a forked child ended.
struct ChildResult {
  bool exited = false;  // false: killed by a signal (a crash)
  int code = -1;        // exit code, or the signal number
};

// in_child(fn) runs fn in a forked copy of this process and reports how it
// ended: fn's return value becomes the exit code, an escaping exception gives
// code 100, a crash gives the signal. For scenarios that may corrupt memory, so
// that a library bug fails one test instead of killing the test program.
template <class Fn> ChildResult in_child(Fn&& fn) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("in_child: fork failed");
  if (pid == 0) {
    // The test framework's crash handlers would report from the child too;
    // let a crash kill the child plainly, for the parent to see.
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) std::signal(sig, SIG_DFL);
    int code = 100;
    try {
      code = fn();
    } catch (...) {
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ChildResult r;
  if (WIFEXITED(status)) {
    r.exited = true;
    r.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.code = WTERMSIG(status);
  }
  return r;
}

// make_vm(backend, ...) makes the VM that a test GENERATEs over by name:
// "thread" is a ThreadVM, "process" a ProcessVM (whose test program must call
// coop::init first in main, see process_main.cpp).
template <class Slots> std::shared_ptr<coop::VM> make_vm(const std::string& backend, const Slots& slots) {
  if (backend == "thread") return std::make_shared<coop::ThreadVM>(slots);
  if (backend == "process") return std::make_shared<coop::ProcessVM>(slots);
  throw std::invalid_argument("make_vm: unknown backend '" + backend + "'");
}
inline std::shared_ptr<coop::VM> make_vm(const std::string& backend, const std::map<std::string, int>& slots) {
  return make_vm<std::map<std::string, int>>(backend, slots);
}

// no_children() says whether this process has no child process left (live
// or unreaped): a finalized VM must leave none behind.
inline bool no_children() {
  int status = 0;
  return ::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD;
}

}  // namespace cos_test
