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
#include <vector>

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

// A backend's Impl that pipelines has `slots` (each with `host`, an index
// into `hosts`, and `queued`), a round-robin `cursor`, queueing(), depth()
// and can_queue(slot, now): ProcessVM's and MpiVM's. The three pieces of
// VM::queue's bookkeeping that follow serve both.

// queue_target() is the busy slot (of host index `want`, if given) with the
// fewest queued calls that may take one now, round robin among equals
// (it moves the cursor past it), or nullptr.
template <class Impl>
auto* queue_target(Impl& m, const std::optional<std::size_t>& want) {
  using Slot = typename decltype(m.slots)::value_type;
  Slot* best = nullptr;
  std::size_t best_k = 0;
  const auto now = clock::now();
  for (std::size_t k = 0; k < m.slots.size(); ++k) {
    Slot& s = m.slots[(m.cursor + k) % m.slots.size()];
    if (!m.can_queue(s, now) || (want && s.host != *want)) continue;
    if (!best || s.queued.size() < best->queued.size()) {
      best = &s;
      best_k = k;
    }
  }
  if (best) m.cursor = (m.cursor + best_k + 1) % m.slots.size();
  return best;
}

// queue_room_of() is how many calls the busy slots may take now.
template <class Impl> int queue_room_of(const Impl& m) {
  int room = 0;
  const auto now = clock::now();
  for (const auto& s : m.slots) {
    if (m.can_queue(s, now)) room += static_cast<int>(m.depth() - s.queued.size());
  }
  return room;
}

// hosts_with_queue_room_of() is the hosts with a slot that may take a call now.
template <class Impl> std::vector<HostId> hosts_with_queue_room_of(const Impl& m) {
  std::vector<bool> room(m.hosts.size(), false);
  const auto now = clock::now();
  for (const auto& s : m.slots) {
    if (m.can_queue(s, now)) room[s.host] = true;
  }
  std::vector<HostId> out;
  for (std::size_t i = 0; i < room.size(); ++i) {
    if (room[i]) out.push_back(m.hosts[i]);
  }
  return out;
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
