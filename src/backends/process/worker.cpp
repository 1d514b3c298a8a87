#include "backends/process/worker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <cos/remote.hpp>

#include "backends/process/frame.hpp"
#include "posix/fd.hpp"

namespace coop::detail {
namespace {

[[noreturn]] void die(int status, const std::string& why) {
  std::fflush(nullptr);
  std::string line = "coop worker " + std::to_string(::getpid()) + ": " + why + "\n";
  [[maybe_unused]] auto n = ::write(2, line.data(), line.size());
  std::_Exit(status);
}

// Flushes what the task wrote, so that it reaches the spawner's pipes
// before the result does and is counted as this task's output.
void flush_output() {
  std::cout.flush();
  std::cerr.flush();
  std::clog.flush();
  std::fflush(nullptr);
}

// parse() reads "<calls fd>:<results fd>:<spawner pid>".
bool parse(const char* spec, int& fd, int& results, long& parent) {
  char* end = nullptr;
  errno = 0;
  long f = std::strtol(spec, &end, 10);
  if (errno || end == spec || *end != ':' || f < 0 || f > 1 << 24) return false;
  const char* p = end + 1;
  long r = std::strtol(p, &end, 10);
  if (errno || end == p || *end != ':' || r < 0 || r > 1 << 24) return false;
  p = end + 1;
  long pid = std::strtol(p, &end, 10);
  if (errno || end == p || *end != '\0' || pid <= 0) return false;
  fd = static_cast<int>(f);
  results = static_cast<int>(r);
  parent = pid;
  return true;
}

}  // namespace

void serve_as_worker(const char* spec) {
  int fd = -1;       // calls from the spawner (a socket)
  int results = -1;  // hello and results to the spawner (a pipe)
  long parent = 0;
  if (!parse(spec, fd, results, parent)) {
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
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) die(2, "the call socket is not open");
  if (::fcntl(results, F_SETFD, FD_CLOEXEC) != 0) die(2, "the result pipe is not open");
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

  if (!posix::write_all(results, encode_frame(FrameKind::hello, encode_hello(::getpid())), false)) std::_Exit(0);

  FrameReader reader;
  static char buffer[1 << 16];
  for (;;) {
    std::optional<Frame> frame;
    try {
      frame = reader.next();
    } catch (const FrameError& e) {
      die(70, e.what());
    }
    if (!frame) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // The spawner closed the socket (finalize) or is gone.
        std::fflush(nullptr);
        std::_Exit(0);
      }
      reader.feed(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (frame->kind != FrameKind::call) die(70, "unexpected frame from the spawner");
    std::uint64_t task = 0;
    Call call;
    try {
      decode_call(frame->payload, task, call);
    } catch (const FrameError& e) {
      die(70, e.what());
    }
    Message result = execute(call);
    flush_output();
    std::string reply;
    try {
      reply = encode_frame(FrameKind::result, encode_result(task, result));
    } catch (const FrameError& e) {
      result.ok = false;
      result.failure = Message::Failure::exception;
      result.error_type = "coop::Error";
      result.payload = std::string("the result of ") + call.function + " is too large to send: " + e.what();
      reply = encode_frame(FrameKind::result, encode_result(task, result));
    }
    if (!posix::write_all(results, reply, false)) std::_Exit(0);
  }
}

}  // namespace coop::detail
