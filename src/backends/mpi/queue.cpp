// queue.cpp: MpiVM's pipelining (VM::queue) on rank 0's side: `queue`
// frames put calls behind a busy rank's running task, `withdraw` frames ask
// them back, and the queue's room follows MpiOptions::queue and
// queue_under (about queue_under of work per rank).
#include <cos/errors.hpp>
#include <cos/mpi_vm.hpp>

#include "backends/mpi/impl.hpp"
#include "backends/process/frame.hpp"

namespace coop {

using detail::FrameKind;
using detail::mpi::RankSlot;
namespace mpi = detail::mpi;

std::optional<TaskId> MpiVM::queue(const Call& call, const std::optional<HostId>& host) {
  Impl& m = *impl_;
  if (m.finalized) throw Error("coop::MpiVM: queue() after finalize()");
  std::optional<std::size_t> want = m.host_index(host);
  if (!m.queueing() || m.slots.empty()) return std::nullopt;
  RankSlot* best = detail::queue_target(m, want);
  if (!best) return std::nullopt;
  std::uint64_t id = m.task_host.size() + 1;
  // A call that would take the corked frame past the limit sends the
  // frame first (one larger than the limit throws, and adds nothing).
  if (!best->corked.empty() && best->corked.size() + detail::queued_call_size(call) > detail::max_frame_payload) {
    m.uncork(*best);
  }
  detail::append_queued_call(best->corked, id, call);
  m.task_host.push_back(static_cast<std::uint32_t>(best->host));
  best->queued.push_back(RankSlot::Queued{id});
  return TaskId(id);
}

void MpiVM::runs_long(const TaskId& task) {
  for (auto& s : impl_->slots) {
    if (s.task != 0 && s.task == task.value()) s.runs_long = true;
  }
}

void MpiVM::withdraw(const TaskId& task) {
  Impl& m = *impl_;
  if (m.finalized) return;
  for (auto& s : m.slots) {
    auto it = find_queued(s, task.value());
    if (it == s.queued.end()) continue;
    if (!it->withdrawing && !it->cancelled) {
      it->withdrawing = true;
      m.send(s, FrameKind::withdraw, detail::encode_task(task.value()));
    }
    return;
  }
}

int MpiVM::queue_capacity() const { return impl_->options.queue * slots(); }

int MpiVM::queue_room() const {
  const Impl& m = *impl_;
  if (m.finalized || !m.queueing()) return 0;
  return detail::queue_room_of(m);
}

std::vector<HostId> MpiVM::hosts_with_queue_room() const {
  const Impl& m = *impl_;
  if (m.finalized || !m.queueing()) return {};
  return detail::hosts_with_queue_room_of(m);
}

}  // namespace coop
