#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "units.hpp"

namespace coop::tool {

Progress::Progress(bool on, std::size_t total) : on_(on), total_(total), start_(clock::now()) {}

void Progress::update(std::size_t ok, std::size_t failed, std::size_t running, bool force) {
  ok_ = ok;
  failed_ = failed;
  running_ = running;
  if (!on_) return;
  auto now = clock::now();
  if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  draw();
}

void Progress::clear() {
  if (!on_ || !drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
}

void Progress::draw() {
  std::size_t finished = ok_ + failed_;
  double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
  std::string eta = "--";
  if (finished >= total_) {
    eta = "0 s";
  } else if (finished > 0) {
    eta = format_seconds(elapsed / static_cast<double>(finished) * static_cast<double>(total_ - finished));
  }
  char counts[160];
  std::snprintf(counts, sizeof counts, " %zu/%zu  ok %zu  failed %zu  running %zu  ETA %s", finished, total_,
                ok_, failed_, running_, eta.c_str());
  int columns = 80;
  struct winsize ws {};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) columns = ws.ws_col;
  int width = std::clamp(columns - static_cast<int>(std::string(counts).size()) - 3, 0, 30);
  std::string line = "\r\033[K";
  if (width >= 5) {
    int filled = total_ ? static_cast<int>(std::lround(width * static_cast<double>(finished) /
                                                       static_cast<double>(total_)))
                        : width;
    line += '[';
    line.append(static_cast<std::size_t>(filled), '#');
    line.append(static_cast<std::size_t>(width - filled), '.');
    line += ']';
  }
  line += counts;
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace coop::tool
