#include <cos/dispatch.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace coop::detail {

int default_in_flight(bool remote) {
  Scheduler& s = Scheduler::current();
  return remote && s.slots() > 0 ? s.slots() : 1;
}

ProgressLine::ProgressLine(bool wanted) : on_(wanted && ::isatty(STDERR_FILENO)) {}

void ProgressLine::update(const DispatchStats& s, std::size_t running) {
  if (!on_) return;
  auto now = clock::now();
  if (now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double secs = std::chrono::duration<double>(s.elapsed()).count();
  if (s.total) {
    std::fprintf(stderr, "\r\033[Kcos: %zu/%zu done, %zu failed, %zu running, %.1f s", s.done, *s.total,
                 s.failed, running, secs);
  } else {
    std::fprintf(stderr, "\r\033[Kcos: %zu done, %zu failed, %zu running, %.1f s", s.done, s.failed,
                 running, secs);
  }
  std::fflush(stderr);
}

void ProgressLine::finish(const DispatchStats& s) {
  if (!on_) return;
  std::fprintf(stderr, "\r\033[Kcos: %zu done, %zu failed in %.1f s, speedup %.2f\n", s.done, s.failed,
               std::chrono::duration<double>(s.wall_time()).count(), s.speedup());
}

}  // namespace coop::detail
