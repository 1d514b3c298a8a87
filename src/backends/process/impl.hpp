// impl.hpp: ProcessVM's private state, shared by the files of
// src/backends/process/: the slots and their worker processes (workers.cpp),
// the poll pump that moves calls, results and output (pump.cpp), and the
// public methods (process_vm.cpp).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <cos/process_vm.hpp>

#include <sys/epoll.h>

#include "backends/process/frame.hpp"
#include "backends/process/output_counts.hpp"
#include "backends/message_fifo.hpp"
#include "backends/queued_call.hpp"
#include "backends/spin_wait.hpp"

namespace coop::detail::process {

using namespace std::chrono_literals;

// A worker must say hello within this time of its start (a cold start of a
// large program on a loaded machine takes well under a second). The
// environment variable COS_WORKER_START_TIMEOUT (seconds) overrides it.
inline constexpr auto default_start_timeout = 10s;
// finalize() gives idle workers this long to exit on their own before SIGKILL.
inline constexpr auto stop_grace = 1s;
// A failed replacement is retried this many times before its slot is given up.
inline constexpr int max_failed_starts = 3;
// At most this much of one task's output is kept in its Message::output.
inline constexpr std::size_t max_task_output = std::size_t{16} << 20;
// A partial line longer than this is forwarded without waiting for its newline.
inline constexpr std::size_t max_partial_line = std::size_t{64} << 10;

enum class State {
  starting,  // forked; waits for the worker's hello
  idle,      // ready for a call
  busy,      // runs `task` (its call may still be partly unsent)
  down,      // out of service (could not be replaced, or finalized)
};

// Slot is one worker process and what the VM knows about it. A dead worker
// is replaced in the same Slot; `generation` tells the old one's events from
// the new one's.
struct Slot {
  std::size_t host = 0;
  State state = State::down;
  std::uint64_t generation = 0;
  // The process the spawner started is a keeper (a child subreaper, see
  // worker.cpp) whose child, `worker`, serves; every process a task starts
  // stays below the keeper, and dies with the worker.
  pid_t pid = -1;     // the keeper: the spawner's child, waited for
  pid_t worker = -1;  // the worker that serves (its hello said so)
  int calls = -1;    // call pipe (non-blocking on this side): calls to the worker
  int call_reader = -1;  // the spawner's copy of the call pipe's read end (never read: see spawn())
  int results = -1;  // result pipe: hello and results from the worker
  int out = -1;      // the worker's stdout
  int err = -1;      // the worker's stderr
  int pidfd = -1;    // readable when the process ends (-1 on kernels without pidfd)
  FrameReader reader{};
  bool calls_watched = false;  // `calls` is in the epoll set (for room to write unsent bytes)
  // The part of the current call frame that the call pipe did not take
  // yet; the pump sends it when the pipe is writable again, so that
  // start() never waits for a worker that does not read (stopped, or busy
  // with something else).
  std::string unsent{};
  std::size_t unsent_from = 0;
  bool held = false;  // `unsent` holds frames kept back for the next pump (send_frame)
  std::uint64_t task = 0;  // while busy: the running task (0 between a result and the next queued call)
  // Calls sent with `queue` frames that have not begun, in order: the slot
  // stays busy while it holds any.
  using Queued = detail::QueuedCall;
  std::deque<Queued> queued{};
  clock::time_point task_began{};  // when the running task began (spawner's clock)
  bool runs_long = false;          // the running task serves a remote object (VM::runs_long)
  // Set by pump() while it handles this slot's result pipe: its output
  // pipes were polled after the pipe in the same pass and drained if
  // readable, so a result needs no further read of them (see pump()).
  bool output_polled = false;
  std::string out_line{}, err_line{};  // partial lines waiting for their newline
  // What the worker wrote to stdout (stream 0) and stderr (1), read and
  // not yet given to a task, in the order read; each chunk's `end` is its
  // position in its stream. The running task's output is all of it until
  // the next queued call's `started` says where it ends (a cut, see
  // output_counts.hpp); with no call queued, all that a result finds.
  struct Chunk {
    int stream = 0;
    std::uint64_t end = 0;
    std::string bytes{};
  };
  std::deque<Chunk> unclaimed{};
  std::size_t unclaimed_bytes = 0;  // at most max_task_output
  bool output_dropped = false;      // bytes were read but not kept: the next claims say so
  std::uint64_t taken[2] = {0, 0};  // bytes read from stdout, stderr
  OutputCounts* counts = nullptr;   // `taken`, shared with the worker
  // A result that the worker's next queued call may follow: it waits for
  // that call's `started` (which says where its output ends), or for the
  // slot to hold no more calls (settle()).
  std::optional<Message> held_result{};
  void forget_output() {
    unclaimed.clear();
    unclaimed_bytes = 0;
    output_dropped = false;
  }
  clock::time_point deadline{};        // while starting: hello by then
  std::optional<Message> pending{};    // delivered once the replacement is ready
  int failed_starts = 0;

  bool has_unsent() const { return unsent_from < unsent.size(); }
};

// Source is what a polled descriptor of a slot is.
enum class Source {
  results,  // the result pipe (readable)
  out,      // the worker's stdout (readable)
  err,      // the worker's stderr (readable)
  pidfd,    // the process ended
  calls,    // the call pipe (writable: room for unsent call bytes)
};

// Watch says which slot, of which generation, and which of its descriptors
// an epoll event is about: packed into the event's 64 bits of data.
struct Watch {
  std::size_t slot;
  std::uint32_t generation;  // the low bits: enough to tell a replaced worker's events
  Source source;
  std::uint64_t pack() const {
    return std::uint64_t{generation} << 32 | std::uint64_t{slot} << 3 | static_cast<std::uint64_t>(source);
  }
  static Watch unpack(std::uint64_t u) {
    return Watch{static_cast<std::size_t>((u >> 3) & 0x1fffffff), static_cast<std::uint32_t>(u >> 32),
                 static_cast<Source>(u & 7)};
  }
};

// start_timeout_from_env() is default_start_timeout, or what
// COS_WORKER_START_TIMEOUT says; a bad value is a coop::Error.
std::chrono::nanoseconds start_timeout_from_env();
// open_devnull() is /dev/null open for reading (CLOEXEC, above 0..2), the
// workers' stdin.
int open_devnull();

}  // namespace coop::detail::process

namespace coop {

struct ProcessVM::Impl {
  using Slot = detail::process::Slot;
  using Source = detail::process::Source;

  std::vector<HostId> hosts;
  std::vector<Slot> slots;
  std::vector<std::uint32_t> task_host;  // host index of task id i+1
  detail::MessageFifo ready;
  std::size_t cursor = 0;
  int devnull = -1;
  bool constructing = true;
  bool finalized = false;
  bool slot_freed = false;  // a replacement became ready (no message says so)
  bool any_held = false;    // some slot holds frames back (Slot::held)
  std::chrono::nanoseconds start_timeout = detail::process::default_start_timeout;
  int queue_depth = 0;
  std::chrono::nanoseconds queue_under{};
  // A moving average of the run time of recent tasks (none yet: unknown).
  std::optional<clock::duration> typical_run{};
  // queueing() says whether pipelining applies now (ProcessOptions::queue_under).
  bool queueing() const { return queue_depth > 0 && typical_run && *typical_run < queue_under; }
  // depth() is how many calls a worker may hold now: ProcessOptions::queue,
  // or fewer, so that what waits behind a running task is about queue_under
  // of work by the recent run times (at least one call).
  std::size_t depth() const { return detail::queue_depth(queue_depth, queue_under, typical_run); }
  // can_queue() says whether a call may be queued on `s` now: it is busy
  // with a task that began less than queue_under ago (a call queued behind
  // a long one would wait for it while other workers may be free), and it
  // has room.
  bool can_queue(const Slot& s, clock::time_point now) const {
    return s.state == detail::process::State::busy && !s.runs_long && s.queued.size() < depth() &&
           (s.task == 0 || now - s.task_began < queue_under);
  }
  std::string startup_error;
  // pump() waits in epoll: a worker's descriptors are added once when it
  // starts (watch()) and removed before they are closed (close_watched()),
  // so that a wait costs the same with 2 slots or 64, and a wait that finds
  // a result at once registers nothing (ppoll over 4 descriptors per slot
  // cost about a microsecond more per task with 2 slots).
  int epoll = -1;
  std::vector<epoll_event> events;
  detail::AdaptiveSpin spin{std::chrono::microseconds(20), detail::AdaptiveSpin::Between::pause};

  Impl(const std::map<std::string, int>& slots_per_host, const ProcessOptions& options);
  ~Impl();

  // workers.cpp: a slot's worker process, from fork to reaping.
  void spawn(Slot& s);
  void replace(Slot& s);
  void start_failed(Slot& s, const std::string& why);
  std::string reap(Slot& s, std::chrono::milliseconds grace = std::chrono::milliseconds(0));
  void lose(Slot& s, std::string why);
  void check_start_deadlines();
  void shutdown();

  // pump.cpp: moving bytes between the spawner and its workers.
  void pump(std::chrono::nanoseconds timeout);
  void watch(Slot& s);
  void watch_or_reap(Slot& s);
  void watch_calls(Slot& s, bool on);
  void close_watched(int& fd);
  void send_frame(Slot& s, std::string frame, bool hold = false);
  void append_call(Slot& s, detail::FrameKind kind, std::uint64_t task, const Call& call);
  void send_appended(Slot& s, bool hold);
  void send_held();
  bool flush_unsent(Slot& s);
  void on_results(Slot& s);
  bool handle_frames(Slot& s);
  bool handle_frame(Slot& s, const detail::FrameView& f);
  void drain(Slot& s, Source which, bool to_end = false);
  void keep_output(Slot& s, Source which, const char* data, std::size_t size);
  std::string claim_output(Slot& s, const detail::process::OutputCut* cut);
  void release_held(Slot& s, const detail::process::OutputCut* cut);
  void flush_partial_lines(Slot& s);
  bool anything_to_wait_for() const;

  Slot* busy_with(std::uint64_t task);
  std::optional<std::size_t> host_index(const std::optional<HostId>& host) const;
  void kill_task(Slot& s);
  // queue.cpp: calls that wait on a busy slot (pipelining).
  std::optional<std::pair<Slot*, std::size_t>> queued_on(std::uint64_t task);
  void withdraw_all(Slot& s);
  void send_withdraw(Slot& s, std::uint64_t task);
  bool on_started(Slot& s, std::uint64_t task, clock::time_point started, const detail::process::OutputCut& cut);
  void on_withdrawn(Slot& s, std::uint64_t task);
  void settle(Slot& s);
};

}  // namespace coop
