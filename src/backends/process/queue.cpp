// queue.cpp: ProcessVM's pipelining (VM::queue): calls sent ahead to busy
// workers, their start, and taking them back. A worker runs its queued
// calls in order and says `started` with the previous result; the spawner
// keeps each queued call's id on its slot until then, so that a lost or
// killed worker's queued calls come back as `withdrawn` (they never ran).
#include <cos/process_vm.hpp>

#include <algorithm>
#include <deque>
#include <utility>

#include <cos/errors.hpp>

#include "backends/process/impl.hpp"

namespace coop {
namespace {

using detail::FrameError;
using detail::FrameKind;
using detail::process::Slot;
using detail::process::Source;
using detail::process::State;

std::deque<Slot::Queued>::iterator find_queued(Slot& s, std::uint64_t task) {
  return detail::find_queued(s.queued, task);
}

using detail::unrun;

}  // namespace

std::optional<TaskId> ProcessVM::queue(const Call& call, const std::optional<HostId>& host) {
  Impl& m = *impl_;
  if (m.finalized) throw Error("coop::ProcessVM: queue() after finalize()");
  std::optional<std::size_t> want = m.host_index(host);
  if (!m.queueing()) return std::nullopt;
  Slot* best = detail::queue_target(m, want);
  if (!best) return std::nullopt;
  std::uint64_t id = m.task_host.size() + 1;
  m.append_call(*best, FrameKind::queue, id, call);
  m.task_host.push_back(static_cast<std::uint32_t>(best->host));
  best->queued.push_back(Slot::Queued{id});
  m.send_appended(*best, true);  // sent at the next wait; a worker found gone withdraws it (lose())
  return TaskId(id);
}

void ProcessVM::withdraw(const TaskId& task) {
  Impl& m = *impl_;
  if (m.finalized) return;
  if (auto q = m.queued_on(task.value())) m.send_withdraw(*q->first, task.value());
}

int ProcessVM::queue_capacity() const {
  return impl_->queue_depth * slots();
}

int ProcessVM::queue_room() const {
  const Impl& m = *impl_;
  if (!m.queueing()) return 0;
  return detail::queue_room_of(m);
}

void ProcessVM::runs_long(const TaskId& task) {
  if (Slot* s = impl_->busy_with(task.value())) s->runs_long = true;
}

std::vector<HostId> ProcessVM::hosts_with_queue_room() const {
  const Impl& m = *impl_;
  if (!m.queueing()) return {};
  return detail::hosts_with_queue_room_of(m);
}

// queued_on() is the slot where `task` waits, and its place there.
std::optional<std::pair<Slot*, std::size_t>> ProcessVM::Impl::queued_on(std::uint64_t task) {
  for (Slot& s : slots) {
    auto it = find_queued(s, task);
    if (it != s.queued.end()) return std::pair{&s, static_cast<std::size_t>(it - s.queued.begin())};
  }
  return std::nullopt;
}

// send_withdraw() asks the worker of `s` to drop queued `task` (once).
void ProcessVM::Impl::send_withdraw(Slot& s, std::uint64_t task) {
  auto it = find_queued(s, task);
  if (it == s.queued.end() || it->withdrawing) return;
  it->withdrawing = true;
  send_frame(s, detail::encode_frame(FrameKind::withdraw, detail::encode_task(task)), true);  // may lose(s)
}

// withdraw_all() gives back every call queued on `s` (its worker is gone or
// being killed): `withdrawn`, or `exit` for those cancelled.
void ProcessVM::Impl::withdraw_all(Slot& s) {
  for (const Slot::Queued& q : s.queued) ready.push_back(unrun(q, hosts[s.host]));
  s.queued.clear();
}

// on_started() takes a worker's `started`: its next queued call began.
// Returns false when that call had been cancelled meanwhile: the worker is
// then killed (and replaced) as cancel() kills a running task.
bool ProcessVM::Impl::on_started(Slot& s, std::uint64_t task, clock::time_point started,
                                 const detail::process::OutputCut& cut) {
  if (s.state != State::busy || s.task != 0 || s.queued.empty() || s.queued.front().task != task) {
    throw FrameError("coop: unexpected started frame");
  }
  const bool cancelled = s.queued.front().cancelled;
  s.queued.pop_front();
  s.task = task;
  s.task_began = clock::now();
  // The result before it waited for this: its output ends at the cut, and
  // what follows is this task's.
  if (s.held_result) {
    release_held(s, &cut);
  } else {
    claim_output(s, &cut);  // not a task's (a worker sends no started without a result before it)
  }
  if (cancelled) {
    kill_task(s);
    return false;
  }
  Message m;
  m.kind = Message::Kind::started;
  m.task = TaskId(task);
  m.host = hosts[s.host];
  m.started = started;
  ready.push_back(std::move(m));
  return true;
}

// on_withdrawn() takes a worker's `withdrawn`: a queued call it dropped.
void ProcessVM::Impl::on_withdrawn(Slot& s, std::uint64_t task) {
  auto it = find_queued(s, task);
  if (s.state != State::busy || it == s.queued.end() || !it->withdrawing) {
    throw FrameError("coop: unexpected withdrawn frame");
  }
  ready.push_back(unrun(*it, hosts[s.host]));
  s.queued.erase(it);
  settle(s);
}

// settle() frees a busy slot that has nothing left: no running task, no
// queued call.
void ProcessVM::Impl::settle(Slot& s) {
  if (s.state == State::busy && s.task == 0 && s.queued.empty()) {
    release_held(s, nullptr);  // no call can follow it now
    s.state = State::idle;
  }
}

}  // namespace coop
