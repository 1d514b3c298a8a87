// progress.hpp: ProgressBar, one line on stderr that shows how far a
// dispatch (or a `cos sweep`) has come.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <cos/export.hpp>
#include <cos/timing.hpp>

namespace coop {

// ProgressBar draws one line on stderr, redrawn in place:
//   [##########..........] 24/48  ok 23  failed 1  running 4  ETA 12 s
// With an unknown total it draws the counts alone ("24 done  ok 23 ...").
// Not thread-safe: one task (or thread) draws it. It never yields and never
// blocks beyond a write to stderr; nothing is drawn when it is off.
//
// Example:
//   coop::ProgressBar bar(coop::ProgressBar::stderr_is_terminal(), jobs.size());
//   bar.update(ok, failed, running);  // as results arrive
//   bar.clear();                      // before writing anything else to stderr
class COS_API ProgressBar {
 public:
  // ProgressBar(on, total): `total` jobs in all (nullopt: unknown); the ETA
  // counts from now.
  ProgressBar(bool on, std::optional<std::size_t> total);
  // update() records the counts and redraws, at most ten times a second
  // unless `force`.
  void update(std::size_t ok, std::size_t failed, std::size_t running, bool force = false);
  // clear() erases the line, so that other output can be written; the next
  // update() draws it again.
  void clear();
  // finish() draws the last counts and ends the line, which stays on the terminal.
  void finish();
  bool on() const { return on_; }

  // stderr_is_terminal() says whether a bar on stderr would be seen.
  static bool stderr_is_terminal();

 private:
  void draw();

  bool on_;
  bool drawn_ = false;
  std::optional<std::size_t> total_;
  std::size_t ok_ = 0, failed_ = 0, running_ = 0;
  clock::time_point start_;
  clock::time_point last_{};
};

// format_seconds() writes a duration for people, as the bar shows its ETA:
// "850 ms", "12.30 s", "4 min 05 s", "2 h 03 min".
COS_API std::string format_seconds(double seconds);

}  // namespace coop
