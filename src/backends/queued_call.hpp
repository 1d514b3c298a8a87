// queued_call.hpp: what a backend that pipelines (VM::queue) keeps of a call
// queued on a busy slot, and the message that ends one that never ran:
// shared by ProcessVM's slots and MpiVM's ranks.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

#include <cos/vm.hpp>

namespace coop::detail {

// QueuedCall is a call sent ahead to a busy slot that has not begun.
struct QueuedCall {
  std::uint64_t task = 0;
  bool withdrawing = false;  // a withdraw frame went out
  bool cancelled = false;    // cancel(): ends with `exit`, never runs
};

inline std::deque<QueuedCall>::iterator find_queued(std::deque<QueuedCall>& queued, std::uint64_t task) {
  return std::find_if(queued.begin(), queued.end(), [task](const QueuedCall& q) { return q.task == task; });
}

// queue_depth() is how many calls a busy slot may hold now: `max` (the
// backend's queue option), or fewer, so that what waits behind a running
// task is about `under` (its queue_under) of work by the recent run times
// `typical_run` (at least one call).
inline std::size_t queue_depth(int max, std::chrono::nanoseconds under, const std::optional<clock::duration>& typical_run) {
  const auto most = static_cast<std::size_t>(std::max(max, 0));
  if (most == 0 || !typical_run || typical_run->count() <= 0) return most;
  return std::clamp<std::size_t>(static_cast<std::size_t>(under / *typical_run), 1, most);
}

// unrun() is the message that ends a queued call that never began:
// `withdrawn`, or `exit` when it was cancelled.
inline Message unrun(const QueuedCall& q, const HostId& host) {
  Message m;
  m.task = TaskId(q.task);
  m.host = host;
  if (q.cancelled) {
    m.kind = Message::Kind::exit;
    m.reason = "cancelled";
    m.completed = clock::now();
  } else {
    m.kind = Message::Kind::withdrawn;
  }
  return m;
}

}  // namespace coop::detail
