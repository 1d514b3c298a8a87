// progress.hpp: the progress bar of a sweep on stderr.
#pragma once

#include <cstddef>

#include <cos/timing.hpp>

namespace coop::tool {

// Progress draws one line on stderr, redrawn in place:
//   [##########..........] 24/48  ok 23  failed 1  running 4  ETA 12 s
// Not thread-safe; nothing is drawn when it is off.
class Progress {
 public:
  Progress(bool on, std::size_t total);
  // update() records the counts and redraws (at most ten times a second,
  // unless `force`).
  void update(std::size_t ok, std::size_t failed, std::size_t running, bool force = false);
  // clear() erases the line, so that other output can be written; the next
  // update() draws it again.
  void clear();
  bool on() const { return on_; }

 private:
  void draw();

  bool on_;
  bool drawn_ = false;
  std::size_t total_;
  std::size_t ok_ = 0, failed_ = 0, running_ = 0;
  clock::time_point start_;
  clock::time_point last_{};
};

}  // namespace coop::tool
