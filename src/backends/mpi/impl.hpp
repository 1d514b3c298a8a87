// impl.hpp: MpiVM::Impl, rank 0's state of an MpiVM session (one slot per
// serving rank), shared by mpi_vm.cpp (the session, starts, receive,
// cancel) and queue.cpp (pipelining: queue, withdraw, the queue's room).
#pragma once

#include <cos/mpi_vm.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "backends/message_fifo.hpp"
#include "backends/mpi/world.hpp"
#include "backends/queued_call.hpp"

namespace coop {
namespace detail::mpi {

struct RankSlot {
  int rank = 0;
  std::size_t host = 0;
  bool cancelled = false;  // the running task's: without isolate its result becomes an `exit`
  std::uint64_t task = 0;  // the running task (0 when none, also between a result and a queued call's start)
  clock::time_point task_began{};  // when it began (rank 0's clock)
  bool runs_long = false;          // VM::runs_long: nothing queues behind it
  // Calls sent with `queue` frames that have not begun, in order: the slot
  // stays busy while it holds any.
  using Queued = detail::QueuedCall;
  std::deque<Queued> queued{};
  // The last of those, not sent yet: the payload of the `queue` frame that
  // goes out at rank 0's next wait (MpiVM::receive), or before any other
  // frame to this rank (append_queued_call: one MPI message for all the
  // calls queued on the rank in one round).
  std::string corked{};
  bool busy() const { return task != 0 || !queued.empty(); }
};

inline std::deque<RankSlot::Queued>::iterator find_queued(RankSlot& s, std::uint64_t task) {
  return detail::find_queued(s.queued, task);
}

}  // namespace detail::mpi

struct MpiVM::Impl {
  using RankSlot = detail::mpi::RankSlot;
  MpiOptions options;
  std::vector<HostId> hosts;
  std::vector<RankSlot> slots;
  std::vector<int> slot_of_rank;         // rank -> slot index, or -1
  std::vector<std::uint32_t> task_host;  // host index of task id i+1
  bool finalized = false;
  int session = 0;
  std::chrono::nanoseconds finalize_timeout{};
  // How long receive() has waited for a report lately (a moving average).
  std::chrono::nanoseconds recent_wait{0};
  // Messages of a report frame that receive() has not returned yet (a frame
  // may hold several: a result and the next call's start, or the calls a
  // lost worker gives back).
  detail::MessageFifo ready;
  std::size_t cursor = 0;  // where queue() looks first (round robin)
  // A moving average of the run time of recent tasks (none yet: unknown).
  std::optional<clock::duration> typical_run{};
  // queueing() says whether pipelining applies now (MpiOptions::queue_under).
  bool queueing() const { return options.queue > 0 && typical_run && *typical_run < options.queue_under; }
  // depth() is how many calls a rank may hold now: MpiOptions::queue, or
  // fewer, about queue_under of work by the recent run times.
  std::size_t depth() const { return detail::queue_depth(options.queue, options.queue_under, typical_run); }
  // can_queue() says whether a call may be queued on `s` now: it is busy
  // with a task that began less than queue_under ago (a call queued behind
  // a long one would wait for it while other ranks may be free), that is
  // not being cancelled, and it has room.
  bool can_queue(const RankSlot& s, clock::time_point now) const {
    return s.busy() && !s.runs_long && !s.cancelled && s.queued.size() < depth() &&
           (s.task == 0 || now - s.task_began < options.queue_under);
  }
  std::optional<std::size_t> host_index(const std::optional<HostId>& host) const;
  // send() sends a frame to the rank of `s`, after the calls corked there
  // (frames reach a rank in the order they are sent); uncork() sends those
  // calls now.
  void send(RankSlot& s, detail::FrameKind kind, std::string payload) {
    uncork(s);
    detail::mpi::send(s.rank, kind, std::move(payload));
  }
  void uncork(RankSlot& s) {
    if (s.corked.empty()) return;
    std::string calls = std::move(s.corked);
    s.corked = {};
    detail::mpi::send(s.rank, detail::FrameKind::queue, std::move(calls));
  }
  // apply() takes one report of slot `s` and returns the message for the
  // caller, if it is one.
  std::optional<Message> apply(RankSlot& s, Message&& m);

  explicit Impl(MpiOptions o);
  // wait_for_all() takes frames of `kind` from every rank in `from` (and
  // drops whatever else they send meanwhile) until each has sent one, or
  // `deadline`; returns what each one said, by slot.
  std::vector<std::optional<std::string>> wait_for_all(detail::FrameKind kind, std::optional<clock::time_point> deadline);
  // take() turns a frame from a rank into messages for the caller (in `ready`).
  void take(detail::mpi::Incoming&& in);
  // next() is the next frame from a rank of this session: one another
  // session's poll kept for it, or a new one (frames of other sessions'
  // ranks are kept for them; of no session, dropped).
  std::optional<detail::mpi::Incoming> next();
  // all_rung() says whether every rank of the session rings rank 0's
  // doorbell (is on this machine), so that waits may nap long.
  bool all_rung() const {
    return std::all_of(slots.begin(), slots.end(), [](const RankSlot& s) { return detail::mpi::rings_reach(s.rank); });
  }
  void end();
};

}  // namespace coop
