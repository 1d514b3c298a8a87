#include <cos/thread_vm.hpp>

#include <algorithm>

#include <cos/errors.hpp>
#include <cos/remote.hpp>

#include "backends/host_name.hpp"

namespace coop {

ThreadVM::ThreadVM(int n) : ThreadVM(std::map<std::string, int>{{detail::this_host_name(), n}}) {}

ThreadVM::ThreadVM(const std::map<std::string, int>& slots_per_host) {
  detail::check_registry();
  if (slots_per_host.empty()) throw Error("coop::ThreadVM: no hosts given");
  for (const auto& [name, n] : slots_per_host) {
    if (n <= 0) {
      throw Error("coop::ThreadVM: host '" + name + "' needs a positive slot count, not " +
                  std::to_string(n));
    }
  }
  for (const auto& [name, n] : slots_per_host) {
    hosts_.emplace_back(name);
    for (int i = 0; i < n; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->host = HostId(name);
      slots_.push_back(std::move(slot));
    }
  }
  free_ = static_cast<int>(slots_.size());
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    s->thread = std::thread([this, s] { serve(*s); });
  }
}

ThreadVM::~ThreadVM() { finalize(); }

void ThreadVM::serve(Slot& slot) {
  for (;;) {
    std::unique_ptr<Call> call;
    TaskId task;
    {
      std::unique_lock lock(slot.mutex);
      slot.wake.wait(lock, [&] { return slot.stop || slot.work; });
      if (slot.stop) return;
      call = std::move(slot.work);
      task = slot.work_task;
    }
    Message m = detail::execute(*call);
    m.task = task;
    m.host = slot.host;
    {
      std::lock_guard lock(inbox_mutex_);
      inbox_.push_back(std::move(m));
    }
    done_.notify_one();
  }
}

int ThreadVM::slots() const { return static_cast<int>(slots_.size()); }
int ThreadVM::free_slots() const { return free_; }
std::vector<HostId> ThreadVM::hosts() const { return hosts_; }

std::vector<HostId> ThreadVM::hosts_with_free_slots() const {
  std::vector<HostId> out;
  for (const auto& s : slots_) {
    if (!s->busy && std::find(out.begin(), out.end(), s->host) == out.end()) out.push_back(s->host);
  }
  return out;
}

std::optional<TaskId> ThreadVM::start(const Call& call, const std::optional<HostId>& host) {
  auto it = std::find_if(slots_.begin(), slots_.end(),
                         [&](const auto& s) { return !s->busy && (!host || s->host == *host); });
  if (it == slots_.end()) return std::nullopt;
  Slot& slot = **it;
  if (finalized_) throw Error("coop::ThreadVM: start() after finalize()");
  TaskId id(next_task_++);
  auto work = std::make_unique<Call>(call);
  {
    std::lock_guard lock(slot.mutex);
    slot.work = std::move(work);
    slot.work_task = id;
  }
  slot.task = id;
  slot.busy = true;
  slot.cancelled = false;
  --free_;
  tasks_.emplace(id, &slot);
  slot.wake.notify_one();
  return id;
}

std::optional<Message> ThreadVM::receive(std::chrono::nanoseconds timeout) {
  std::unique_lock lock(inbox_mutex_);
  auto ready = [&] { return !inbox_.empty(); };
  if (timeout.count() < 0) {
    done_.wait(lock, ready);
  } else if (timeout.count() == 0) {
    if (!ready()) return std::nullopt;  // a poll: no timed wait, no system call
  } else if (!done_.wait_for(lock, timeout, ready)) {
    return std::nullopt;
  }
  Message m = std::move(inbox_.front());
  inbox_.pop_front();
  lock.unlock();
  auto it = tasks_.find(m.task);
  Slot& slot = *it->second;
  tasks_.erase(it);
  slot.busy = false;
  ++free_;
  if (slot.cancelled) {
    m.kind = Message::Kind::exit;
    m.payload.clear();
  }
  return m;
}

HostId ThreadVM::host_of(const TaskId& task) const {
  auto it = tasks_.find(task);
  if (it == tasks_.end()) throw Error("coop::ThreadVM::host_of: unknown task");
  return it->second->host;
}

void ThreadVM::cancel(const TaskId& task) {
  auto it = tasks_.find(task);
  if (it != tasks_.end()) it->second->cancelled = true;
}

void ThreadVM::finalize() {
  if (finalized_) return;
  finalized_ = true;
  for (auto& slot : slots_) {
    {
      std::lock_guard lock(slot->mutex);
      slot->stop = true;
    }
    slot->wake.notify_one();
  }
  for (auto& slot : slots_) {
    if (slot->thread.joinable()) slot->thread.join();
  }
}

}  // namespace coop
