#include "backends/process/worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <string>

#include <cos/remote.hpp>

#include "backends/host_name.hpp"
#include "backends/process/frame.hpp"
#include "backends/process/output_counts.hpp"
#include "backends/spin_wait.hpp"
#include "posix/fd.hpp"
#include "remote/channel.hpp"

namespace coop::detail {
namespace {

[[noreturn]] void die(int status, const std::string& why) {
  std::fflush(nullptr);
  std::string line = "coop worker " + std::to_string(::getpid()) + ": " + why + "\n";
  [[maybe_unused]] auto n = ::write(2, line.data(), line.size());
  std::_Exit(status);
}

// flush_output() flushes what the task wrote to stdout and stderr, so that it
// reaches the spawner's pipes before the result does and is counted as this
// task's output. Only streams that hold something are flushed: a flush of
// every C stream and C++ stream after each task was a tenth of an empty
// task's cost in the worker. std::cout and friends write through to C's
// stdout and stderr while they keep the buffers they had at start
// (sync_with_stdio); a program that changed that has them flushed too.
void flush_output() {
  static std::streambuf* const synced[] = {std::cout.rdbuf(), std::cerr.rdbuf(), std::clog.rdbuf()};
  std::ostream* const cxx[] = {&std::cout, &std::cerr, &std::clog};
  for (int i = 0; i < 3; ++i) {
    if (cxx[i]->rdbuf() != synced[i]) cxx[i]->flush();
  }
  for (FILE* f : {stdout, stderr}) {
    if (__fpending(f) > 0) std::fflush(f);
  }
}

// parse() reads "<calls fd>:<results fd>:<spawner pid>:<output counts fd>".
bool parse(const char* spec, int& fd, int& results, long& parent, int& counts) {
  long values[4];
  const char* p = spec;
  for (int i = 0; i < 4; ++i) {
    char* end = nullptr;
    errno = 0;
    values[i] = std::strtol(p, &end, 10);
    if (errno || end == p || *end != (i == 3 ? '\0' : ':')) return false;
    p = end + 1;
  }
  if (values[0] < 0 || values[0] > 1 << 24 || values[1] < 0 || values[1] > 1 << 24 || values[2] <= 0 ||
      values[3] < 0 || values[3] > 1 << 24) {
    return false;
  }
  fd = static_cast<int>(values[0]);
  results = static_cast<int>(values[1]);
  parent = values[2];
  counts = static_cast<int>(values[3]);
  return true;
}

// keep() is the keeper: the process that the spawner started, a child
// subreaper, whose only child is the worker that serves (see
// serve_as_worker). Every process that a task starts stays below it, even
// one that starts a new session or double-forks: orphans come back to the
// keeper, which reaps them. When the worker ends (a crash, _Exit, a kill
// from outside, or its clean exit at finalize), or the spawner dies
// (PR_SET_PDEATHSIG gives the keeper SIGTERM), or someone sends the keeper
// SIGTERM or SIGHUP, the keeper kills everything below itself, reaps it,
// and ends the way the worker ended, so the spawner reads the worker's
// status. It keeps the result pipe open until then, so the spawner sees the
// worker's end only once the tree is gone. All signals are blocked here
// (Ctrl-C included); it only waits for SIGCHLD, SIGTERM and SIGHUP.
[[noreturn]] void keep(pid_t worker, long parent, int calls) {
  ::close(calls);  // calls are the worker's to read, not the keeper's
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  sigset_t wake;
  sigemptyset(&wake);
  sigaddset(&wake, SIGCHLD);
  sigaddset(&wake, SIGTERM);
  sigaddset(&wake, SIGHUP);
  int status = 0;
  bool worker_ended = false;
  int quit = ::getppid() == static_cast<pid_t>(parent) ? 0 : SIGTERM;  // the spawner died before the prctl
  while (!quit && !worker_ended) {
    int st = 0;
    pid_t r;
    while ((r = ::waitpid(-1, &st, WNOHANG)) > 0) {
      if (r == worker) {
        status = st;
        worker_ended = true;
      }
    }
    if (worker_ended) break;
    siginfo_t info;
    int sig = ::sigwaitinfo(&wake, &info);
    if (sig == SIGTERM || sig == SIGHUP) quit = sig;
  }
  // End the tree below: kill what is there, reap, and look again (a
  // process that ended hands its children to us), until nothing is left.
  for (;;) {
    posix::kill_tree(::getpid(), false);
    int st = 0;
    pid_t r = ::waitpid(-1, &st, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;  // ECHILD: nothing left
    if (r == worker && !worker_ended) {
      status = st;
      worker_ended = true;
    }
  }
  int sig = quit ? quit : WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  if (sig) {
    rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);  // the worker had its own say on a core file
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    ::sigprocmask(SIG_UNBLOCK, &one, nullptr);
    ::_exit(128 + sig);
  }
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

// Orphans: children that a task started and did not wait for. They are
// reaped once the task has returned and its result is sent (never while it
// runs: a child it waits for keeps its status), when the task may have
// started one: it forked (pthread_atfork below sees fork() and what calls
// it), or it ran long enough for a child to matter (posix_spawn, which
// system() and popen() use, runs no fork handlers). A waitpid after every
// task cost half a microsecond of an empty task's few.
bool forked = false;
constexpr auto reap_after = std::chrono::microseconds(100);

void reap_orphans(const Message& result) {
  if (!forked && result.completed - result.started < reap_after) return;
  int st = 0;
  pid_t r;
  while ((r = ::waitpid(-1, &st, WNOHANG)) > 0) {
  }
  forked = r == 0;  // some still run: look again after the next task
}

// Link is the worker's end of its two streams: frames in from the call
// pipe, frames out on the result pipe. It also holds the calls queued
// behind the running one (FrameKind::queue: the spawner pipelines calls
// when more wait than slots are free) and the frames to send with the next
// write, so that a result and the start of the next call cost one write.
struct Link {
  struct Queued {
    std::uint64_t task = 0;
    Call call;
    std::string host;
  };
  int calls = -1;
  // The same call pipe, opened again without blocking (a description of
  // its own, so `calls` still blocks): take_available() reads it in one
  // system call, where a poll and a read would take two.
  int calls_now = -1;
  int results = -1;
  FrameReader reader{};
  bool closed = false;  // the spawner closed the call pipe, or is gone
  std::deque<Queued> queued;
  std::string out;  // frames for the next write

  // next() is the next frame from the spawner, waiting for it, or nullopt
  // once the spawner closed.
  std::optional<Frame> next() {
    for (;;) {
      if (auto frame = buffered()) return frame;
      if (closed || !read_some(calls)) return std::nullopt;
    }
  }

  // take_available() reads, without waiting, what the spawner has sent by
  // now; the main loop takes it in.
  void take_available() {
    if (closed) return;
    if (calls_now < 0) {
      pollfd p{calls, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) read_some(calls);
      return;
    }
    read_some(calls_now);
  }

  // buffered() is the next frame already read, if any.
  std::optional<Frame> buffered() {
    try {
      return reader.next();
    } catch (const FrameError& e) {
      die(70, e.what());
    }
  }

  // absorb() takes a frame that is not for the running task: queued calls
  // and withdraws. Deliver frames (for a task that is not running) are
  // dropped, as vm.hpp says.
  void absorb(Frame& frame) {
    switch (frame.kind) {
      case FrameKind::queue: {
        Queued q;
        decode(frame, q);
        queued.push_back(std::move(q));
        return;
      }
      case FrameKind::withdraw: {
        std::uint64_t task = 0;
        try {
          task = decode_task(frame.payload);
        } catch (const FrameError& e) {
          die(70, e.what());
        }
        auto it = std::find_if(queued.begin(), queued.end(), [task](const Queued& q) { return q.task == task; });
        // Not found: it began already (the spawner has its `started`).
        if (it == queued.end()) return;
        queued.erase(it);
        out += encode_frame(FrameKind::withdrawn, encode_task(task));
        return;
      }
      case FrameKind::deliver:
        return;
      default:
        die(70, "unexpected frame of kind " + std::to_string(static_cast<unsigned>(frame.kind)) +
                    " from the spawner");
    }
  }

  static void decode(const Frame& frame, Queued& q) {
    try {
      decode_call(frame.payload, q.task, q.call, &q.host);
    } catch (const FrameError& e) {
      die(70, e.what());
    }
  }

  // send() writes `frame` after what waits in `out`, in one write; false
  // when the spawner is gone.
  bool send(std::string frame = {}) {
    out += frame;
    if (out.empty()) return true;
    bool ok = posix::write_all(results, out, false);
    out.clear();
    return ok;
  }

 private:
  // read_some() reads once from `fd` (`calls`, or `calls_now`: nothing
  // there is not the end); false once the spawner closed or is gone.
  bool read_some(int fd) {
    static char buffer[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && fd == calls_now && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n <= 0) {
        closed = true;
        return false;
      }
      reader.feed(buffer, static_cast<std::size_t>(n));
      return true;
    }
  }
};

// WorkerChannel is the running task's channel (remote/channel.hpp): posts
// are post frames on the result pipe, in order before the result; receive()
// reads the call pipe for the spawner's deliver frames to this task (and
// keeps the calls queued meanwhile).
class WorkerChannel final : public TaskChannel {
 public:
  WorkerChannel(Link& link, std::uint64_t task, HostId host) : TaskChannel(std::move(host), TaskId(task)), link_(link) {}

  void post(std::string payload) override {
    std::string frame;
    try {
      frame = encode_frame(FrameKind::post, encode_task_bytes(task().value(), payload));
    } catch (const FrameError& e) {
      throw Error(std::string("coop: a message to the spawner is too large to send: ") + e.what());
    }
    link_.send(std::move(frame));  // a spawner that is gone loses it
  }

  std::optional<std::string> receive() override {
    while (std::optional<Frame> frame = link_.next()) {
      if (frame->kind != FrameKind::deliver) {
        link_.absorb(*frame);
        continue;
      }
      std::uint64_t task = 0;
      std::string bytes;
      try {
        decode_task_bytes(frame->payload, task, bytes);
      } catch (const FrameError& e) {
        die(70, e.what());
      }
      if (task == this->task().value()) return bytes;
    }
    return std::nullopt;
  }

 private:
  Link& link_;
};

}  // namespace

void serve_as_worker(const char* spec) {
  int fd = -1;       // calls from the spawner (a pipe)
  int results = -1;  // hello and results to the spawner (a pipe)
  long parent = 0;
  int counts_fd = -1;  // the spawner's OutputCounts (output_counts.hpp)
  if (!parse(spec, fd, results, parent, counts_fd)) {
    die(2, std::string("bad ") + worker_env + " value '" + spec + "'");
  }
  // The spawner set PR_SET_PDEATHSIG before exec; if it died before that
  // took effect, nobody will ever talk to us. (This also catches a stray
  // COS_WORKER in a user's environment.)
  if (::getppid() != static_cast<pid_t>(parent)) {
    die(1, std::string(worker_env) + " is set, but this process was not started by the ProcessVM of process " +
               std::to_string(parent) + " (which may have ended): unset " + worker_env);
  }
  ::unsetenv(worker_env);
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) die(2, "the call pipe is not open");
  if (::fcntl(results, F_SETFD, FD_CLOEXEC) != 0) die(2, "the result pipe is not open");
  if (::fcntl(counts_fd, F_SETFD, FD_CLOEXEC) != 0) die(2, "the output counts are not open");
  // Split into a keeper (this process, the spawner's child: a subreaper
  // that ends the task's process tree when the worker ends, see keep()) and
  // the worker that serves (its child). This runs in coop::init, before the
  // program has done anything, so the fork copies a process that has no
  // other threads (unless static initializers started some).
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) die(71, std::string("prctl(PR_SET_CHILD_SUBREAPER): ") + std::strerror(errno));
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, &old);
  pid_t keeper = ::getpid();
  pid_t worker = ::fork();
  if (worker < 0) die(71, std::string("fork: ") + std::strerror(errno));
  if (worker > 0) {
    ::close(counts_fd);
    keep(worker, parent, fd);
  }
  // The worker ends with its keeper (killed from outside, or by the spawner).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != keeper) std::_Exit(1);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  // Ctrl-C in a terminal reaches the whole process group: let the spawner
  // decide (if it dies of it, PR_SET_PDEATHSIG ends this process too). A
  // handler rather than SIG_IGN, because exec resets a handler but keeps an
  // ignored signal: programs that tasks run still stop on Ctrl-C.
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
  ::pthread_atfork(nullptr, [] { forked = true; }, nullptr);

  if (!posix::write_all(results, encode_frame(FrameKind::hello, encode_hello(::getpid())), false)) std::_Exit(0);

  // Where each task's output ends is told with the next queued call's
  // `started` (output_counts.hpp), measured on copies of the output pipes
  // that a task cannot redirect.
  const process::OutputCounts* counts = process::map_output_counts(counts_fd);
  if (!counts) die(71, std::string("cannot map the output counts: ") + std::strerror(errno));
  const int out_pipe = ::fcntl(1, F_DUPFD_CLOEXEC, 3), err_pipe = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (out_pipe < 0 || err_pipe < 0) die(71, std::string("cannot keep a copy of stdout and stderr: ") + std::strerror(errno));
  bool last_queued = false;  // the last call run was a queued one
  Link link;
  link.calls = fd;
  link.calls_now = ::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  link.results = results;
  const std::string machine = this_host_name();
  // An idle worker polls its call pipe for idle_spin_for, yielding the core
  // between polls, before it sleeps in read(). Empty tasks, one call per
  // slot on ProcessVM(2) (2 cores): 20-27 us per task without it, 5-13 us
  // with 30 us; pipelined, 1.3-3 us -> 1.3-1.7 us (the spawner's batches of
  // calls no longer wake a sleeping worker).
  constexpr auto idle_spin_for = std::chrono::microseconds(30);
  AdaptiveSpin idle_spin(idle_spin_for, AdaptiveSpin::Between::yield);
  for (;;) {
    Link::Queued next;
    // What the spawner has sent by now is taken in before a queued call
    // begins when at most `look_within` calls are left (a withdraw of one
    // may be there, and more calls to keep the queue from running dry), and
    // while the spawner pipelines (the last call was queued), so that the
    // result waiting in `out` goes with the next call's `started`.
    // Otherwise the next call comes only after that result, and a look
    // would cost a system call for nothing. With a deeper queue, a withdraw
    // is seen once the calls ahead of it are down to `look_within` (the
    // spawner queues about ProcessOptions::queue_under of work at most). A
    // `call` comes only to an idle worker.
    constexpr std::size_t look_within = 2;
    if (((last_queued || !link.queued.empty()) && link.queued.size() <= look_within) || link.reader.buffered() > 0) {
      link.take_available();
    }
    std::optional<Frame> call;
    while (auto frame = link.buffered()) {
      if (frame->kind == FrameKind::call) {
        call = std::move(frame);
        break;
      }
      link.absorb(*frame);
    }
    const bool pipelined = !call && !link.queued.empty();
    last_queued = pipelined;
    if (call) {
      if (!link.queued.empty()) die(70, "a call from the spawner while calls are queued");
      if (!link.send()) std::_Exit(0);
      Link::decode(*call, next);
    } else if (pipelined) {
      // A queued call begins: the spawner learns it with the previous
      // result, in the same write, and where that result's output ends
      // (this call's first output could be read before the result is
      // taken in).
      next = std::move(link.queued.front());
      link.queued.pop_front();
      const process::OutputCut cut = process::output_cut(counts, out_pipe, err_pipe);
      if (!link.send(encode_frame(FrameKind::started, encode_started(next.task, clock::now(), cut)))) std::_Exit(0);
    } else {
      if (!link.send()) std::_Exit(0);  // withdrawn frames, if any
      // The next call is usually microseconds away (the spawner answers a
      // result with the next call): polled for a while, it costs no sleep
      // and no wake-up on either side (AdaptiveSpin: not after a wait that
      // outlasted the window, such as one for the next dispatch).
      if (link.calls_now >= 0 && link.reader.buffered() == 0) {
        idle_spin.wait([&] {
          link.take_available();
          return link.closed || link.reader.buffered() > 0;
        });
      }
      std::optional<Frame> frame = link.next();
      if (!frame) {
        // The spawner closed the call pipe (finalize) or is gone.
        std::fflush(nullptr);
        std::_Exit(0);
      }
      if (frame->kind != FrameKind::call) {
        link.absorb(*frame);  // a queued call starts on the next turn
        continue;
      }
      Link::decode(*frame, next);
    }
    WorkerChannel channel(link, next.task, HostId(next.host.empty() ? machine : next.host));
    Message result = execute(next.call, channel);
    flush_output();
    std::string reply;
    try {
      reply = encode_result_frame(next.task, result);
    } catch (const FrameError& e) {
      result.ok = false;
      result.failure = Message::Failure::exception;
      result.error_type = "coop::Error";
      result.payload = std::string("the result of ") + next.call.function + " is too large to send: " + e.what();
      reply = encode_result_frame(next.task, result);
    }
    link.out += reply;  // sent at the top of the loop, with what follows it
    reap_orphans(result);  // a system call only when the task may have left a child
  }
}

}  // namespace coop::detail
