// test_support.hpp: helpers shared by the cos tests (header-only, so every
// test program and the sanitizer build get them without CMake changes).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
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
#include <utility>
#include <vector>

#include <cos/mpi_vm.hpp>
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

// crash(how) dies the way `how` says ("abort", "segv", "exit3", "kill9"), without
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

// backends() are the VM backends that the backend suite GENERATEs over:
// "thread" and "process", or what COS_TEST_BACKENDS says (a space-separated
// list): under mpirun the same program runs its cases on "mpi" (MpiVM,
// isolate on) or "mpi-inline" (MpiVM, isolate off); see tests/mpi/.
inline std::vector<std::string> backends() {
  const char* env = std::getenv("COS_TEST_BACKENDS");
  if (!env || !*env) return {"thread", "process"};
  std::vector<std::string> out;
  std::istringstream in(env);
  for (std::string b; in >> b;) out.push_back(b);
  return out;
}
// backends_and(extra) is backends() and one more name that a case knows
// itself ("local": no VM, "none"), for cases that hold on every VM and
// without one.
inline std::vector<std::string> backends_and(const std::string& extra) {
  std::vector<std::string> out = backends();
  out.push_back(extra);
  return out;
}
// isolated(backend): a task runs in a process of its own, so a crash, a
// timeout or a cancel costs one worker that is killed and replaced.
inline bool isolated(const std::string& backend) { return backend == "process" || backend == "mpi"; }
// inherits_environment(backend): its slots see the spawner's environment
// as it is when the VM is made (an MPI rank has the one mpirun gave it).
inline bool inherits_environment(const std::string& backend) { return backend == "thread" || backend == "process"; }
// crash_backends() are those of backends() where a task may crash alone.
inline std::vector<std::string> crash_backends() {
  std::vector<std::string> out;
  for (auto& b : backends())
    if (isolated(b)) out.push_back(b);
  return out;
}

// mpi_ranks(host, n) picks n worker ranks of host `host` (empty: rank 0's
// host, this machine) from the mpirun job, for an MpiVM of that layout.
// The job's layout is tests/mpi/run_backends: a case that needs more ranks
// of a host than the job has fails with std::invalid_argument.
// Ranks that MpiVMs made here still hold (a VM that is alive holds its
// ranks, and a case may make a second VM while the first lives).
inline std::vector<std::pair<std::weak_ptr<coop::VM>, std::vector<int>>>& mpi_ranks_held() {
  static std::vector<std::pair<std::weak_ptr<coop::VM>, std::vector<int>>> held;
  return held;
}
inline std::vector<int> mpi_ranks(std::string host, int n, const std::vector<int>& taken = {}) {
  std::vector<std::string> hosts = coop::mpi_rank_hosts();
  if (hosts.empty()) throw std::invalid_argument("make_vm: an mpi backend outside mpirun");
  if (host.empty()) host = hosts[0];
  auto held = [&](int r) {
    for (int t : taken)
      if (t == r) return true;
    for (auto& [vm, ranks] : mpi_ranks_held()) {
      if (vm.expired()) continue;
      for (int h : ranks)
        if (h == r) return true;
    }
    return false;
  };
  std::vector<int> ranks;
  for (std::size_t r = 1; r < hosts.size() && static_cast<int>(ranks.size()) < n; ++r) {
    if (hosts[r] == host && !held(static_cast<int>(r))) ranks.push_back(static_cast<int>(r));
  }
  if (static_cast<int>(ranks.size()) < n) {
    throw std::invalid_argument("make_vm: the mpirun job has " + std::to_string(ranks.size()) + " ranks of host '" +
                                host + "', the case needs " + std::to_string(n) + " (see tests/mpi/run_backends)");
  }
  return ranks;
}

// make_vm(backend, ...) makes the VM that a test GENERATEs over by name:
// "thread" is a ThreadVM, "process" a ProcessVM (whose test program must call
// coop::init first in main, see process_main.cpp), "mpi" and "mpi-inline"
// an MpiVM over as many ranks of the job as the case asks for (n <= 0 asks
// for an empty rank list, which MpiVM refuses as ProcessVM refuses n <= 0).
inline coop::MpiOptions mpi_options(const std::string& backend, std::vector<int> ranks) {
  return coop::MpiOptions{.isolate = backend == "mpi", .ranks = std::move(ranks)};
}
inline std::shared_ptr<coop::VM> make_vm(const std::string& backend, int n) {
  if (backend == "thread") return std::make_shared<coop::ThreadVM>(n);
  if (backend == "process") return std::make_shared<coop::ProcessVM>(n);
  if (backend == "mpi" || backend == "mpi-inline") {
    std::vector<int> ranks = n <= 0 ? std::vector<int>{} : mpi_ranks("", n);
    auto vm = std::make_shared<coop::MpiVM>(mpi_options(backend, ranks));
    mpi_ranks_held().emplace_back(vm, ranks);
    return vm;
  }
  throw std::invalid_argument("make_vm: unknown backend '" + backend + "'");
}
inline std::shared_ptr<coop::VM> make_vm(const std::string& backend, const std::map<std::string, int>& slots) {
  if (backend == "thread") return std::make_shared<coop::ThreadVM>(slots);
  if (backend == "process") return std::make_shared<coop::ProcessVM>(slots);
  if (backend == "mpi" || backend == "mpi-inline") {
    std::vector<int> ranks;
    for (const auto& [host, count] : slots) {
      if (count <= 0) throw std::invalid_argument("make_vm: an MpiVM has no slot count per host");
      for (int r : mpi_ranks(host, count, ranks)) ranks.push_back(r);
    }
    auto vm = std::make_shared<coop::MpiVM>(mpi_options(backend, ranks));
    mpi_ranks_held().emplace_back(vm, ranks);
    return vm;
  }
  throw std::invalid_argument("make_vm: unknown backend '" + backend + "'");
}

// Pipelining (VM::queue): queue_backends() are those of backends() that
// queue calls behind a busy slot's task (every one but ThreadVM), and
// QueueOptions their options, ProcessOptions' and MpiOptions' two fields.
inline std::vector<std::string> queue_backends() {
  std::vector<std::string> out;
  for (auto& b : backends())
    if (b != "thread") out.push_back(b);
  return out;
}
struct QueueOptions {
  int queue = 2;
  std::chrono::nanoseconds queue_under = std::chrono::milliseconds(1);
};
// make_queue_vm(backend, n or slots per host, options) is make_vm() with
// those options, for a backend of queue_backends().
inline coop::MpiOptions mpi_options(const std::string& backend, std::vector<int> ranks, QueueOptions q) {
  coop::MpiOptions o = mpi_options(backend, std::move(ranks));
  o.queue = q.queue;
  o.queue_under = q.queue_under;
  return o;
}
inline std::shared_ptr<coop::VM> make_queue_vm(const std::string& backend, int n, QueueOptions q) {
  if (backend == "process") {
    return std::make_shared<coop::ProcessVM>(n, coop::ProcessOptions{.queue = q.queue, .queue_under = q.queue_under});
  }
  if (backend == "mpi" || backend == "mpi-inline") {
    std::vector<int> ranks = mpi_ranks("", n);
    auto vm = std::make_shared<coop::MpiVM>(mpi_options(backend, ranks, q));
    mpi_ranks_held().emplace_back(vm, ranks);
    return vm;
  }
  throw std::invalid_argument("make_queue_vm: backend '" + backend + "' does not queue");
}
inline std::shared_ptr<coop::VM> make_queue_vm(const std::string& backend, const std::map<std::string, int>& slots,
                                               QueueOptions q) {
  if (backend == "process") {
    return std::make_shared<coop::ProcessVM>(slots, coop::ProcessOptions{.queue = q.queue, .queue_under = q.queue_under});
  }
  if (backend == "mpi" || backend == "mpi-inline") {
    std::vector<int> ranks;
    for (const auto& [host, count] : slots) {
      for (int r : mpi_ranks(host, count, ranks)) ranks.push_back(r);
    }
    auto vm = std::make_shared<coop::MpiVM>(mpi_options(backend, ranks, q));
    mpi_ranks_held().emplace_back(vm, ranks);
    return vm;
  }
  throw std::invalid_argument("make_queue_vm: backend '" + backend + "' does not queue");
}

// no_children() says whether this process has no child process left (live
// or unreaped): a finalized VM must leave none behind.
inline bool no_children() {
  int status = 0;
  return ::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD;
}

}  // namespace cos_test
