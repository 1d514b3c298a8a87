// output_counts.hpp: where one task's output ends in a worker's stdout and
// stderr pipes, without marks in the streams.
//
// A worker that begins a queued call right after its last result must tell
// the spawner where the last task's output ends: the spawner may read the
// next task's first bytes before it takes in the result. The worker knows
// how much it wrote only as the bytes the spawner has read (`taken`) plus
// those still in the pipe (FIONREAD); the spawner publishes `taken` in a
// page the two share (a memfd the worker inherits), under a sequence count
// that is odd while a read is under way, so that the worker can read both
// numbers at one instant. The cut (the two positions) goes with the
// `started` frame of the next call. Marks written into the streams did the
// same before, at two writes in the worker and two reads in the spawner per
// task (about a sixth of the spawner's time per pipelined empty task).
#pragma once

#include <atomic>
#include <cstdint>

namespace coop::detail::process {

// OutputCounts is the shared page's content: written by the spawner only.
struct OutputCounts {
  std::atomic<std::uint64_t> seq{0};       // odd while the spawner reads a pipe
  std::atomic<std::uint64_t> taken[2]{};   // bytes read so far: stdout, stderr
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// OutputCut is where a task's output ends: positions in the worker's stdout
// and stderr, counted from the worker's start.
struct OutputCut {
  std::uint64_t at[2] = {0, 0};
};

// The spawner's side: open_output_counts() creates the page (a memfd, one
// per worker), maps it into *counts and returns the fd for the worker
// (close-on-exec: the caller passes it on); throws coop::Error when it
// cannot. close_output_counts() unmaps it.
int open_output_counts(OutputCounts** counts);
void close_output_counts(OutputCounts*& counts);

// begin_read() and end_read() bracket the spawner's read of pipe `which`
// (0 stdout, 1 stderr) that took `n` bytes.
inline void begin_read(OutputCounts* c) {
  if (c) c->seq.fetch_add(1, std::memory_order_seq_cst);
}
inline void end_read(OutputCounts* c, int which, std::uint64_t n) {
  if (!c) return;
  c->taken[which].fetch_add(n, std::memory_order_seq_cst);
  c->seq.fetch_add(1, std::memory_order_seq_cst);
}

// The worker's side: map_output_counts() maps the page it inherited as `fd`
// (and closes the fd), or returns nullptr. output_cut() is how much the
// worker has written to the pipes `out` and `err` (its own duplicates of
// stdout and stderr, so that a task's dup2 over 1 or 2 changes nothing),
// read while the spawner reads neither; it waits (yielding, then napping)
// while a read is under way.
const OutputCounts* map_output_counts(int fd);
OutputCut output_cut(const OutputCounts* counts, int out, int err);

}  // namespace coop::detail::process
