#include <cos/progress.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace coop {

ProgressBar::ProgressBar(bool on, std::optional<std::size_t> total)
    : on_(on), total_(total), start_(clock::now()) {}

bool ProgressBar::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void ProgressBar::update(std::size_t ok, std::size_t failed, std::size_t running, bool force) {
  ok_ = ok;
  failed_ = failed;
  running_ = running;
  if (!on_) return;
  auto now = clock::now();
  if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  draw();
}

void ProgressBar::clear() {
  if (!on_ || !drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
}

void ProgressBar::finish() {
  if (!on_) return;
  draw();
  std::fputs("\n", stderr);
  std::fflush(stderr);
  drawn_ = false;
}

void ProgressBar::draw() {
  std::size_t finished = ok_ + failed_;
  char counts[160];
  if (total_) {
    std::size_t total = *total_;
    double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    std::string eta = "--";
    if (finished >= total) {
      eta = "0 s";
    } else if (finished > 0) {
      eta = format_seconds(elapsed / static_cast<double>(finished) * static_cast<double>(total - finished));
    }
    std::snprintf(counts, sizeof counts, " %zu/%zu  ok %zu  failed %zu  running %zu  ETA %s", finished, total,
                  ok_, failed_, running_, eta.c_str());
  } else {
    std::snprintf(counts, sizeof counts, "%zu done  ok %zu  failed %zu  running %zu", finished, ok_, failed_,
                  running_);
  }
  std::string line = "\r\033[K";
  if (total_) {
    int columns = 80;
    struct winsize ws {};
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) columns = ws.ws_col;
    int width = std::clamp(columns - static_cast<int>(std::string(counts).size()) - 3, 0, 30);
    if (width >= 5) {
      std::size_t total = *total_;
      int filled = total ? static_cast<int>(std::lround(width * static_cast<double>(std::min(finished, total)) /
                                                        static_cast<double>(total)))
                         : width;
      line += '[';
      line.append(static_cast<std::size_t>(filled), '#');
      line.append(static_cast<std::size_t>(width - filled), '.');
      line += ']';
    }
  }
  line += counts;
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

std::string format_seconds(double seconds) {
  char buf[64];
  if (seconds < 1) {
    std::snprintf(buf, sizeof buf, "%.0f ms", seconds * 1e3);
  } else if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.2f s", seconds);
  } else if (seconds < 3600) {
    long s = std::lround(seconds);
    std::snprintf(buf, sizeof buf, "%ld min %02ld s", s / 60, s % 60);
  } else {
    long s = std::lround(seconds);
    std::snprintf(buf, sizeof buf, "%ld h %02ld min", s / 3600, (s % 3600) / 60);
  }
  return buf;
}

}  // namespace coop
