#include <cos/thread_vm.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <cos/errors.hpp>
#include <cos/remote.hpp>

#include "backends/env_seconds.hpp"
#include "backends/host_name.hpp"
#include "backends/spin_wait.hpp"
#include "posix/fd.hpp"
#include "posix/text.hpp"
#include "remote/channel.hpp"

namespace coop {
namespace {

using namespace std::chrono_literals;

// finalize() waits this long for busy threads (COS_FINALIZE_TIMEOUT overrides).
constexpr std::chrono::nanoseconds default_finalize_timeout = 2s;
// How long a waiting side (the scheduler for a result, a slot's thread for
// its next call) spins before it sleeps: a few round trips of an empty call,
// so that short calls never pay for a futex sleep and wake-up on both sides.
constexpr std::chrono::nanoseconds spin_window = 20us;

struct Slot {
  HostId host;
  // The scheduler's side, touched by its thread only.
  bool busy = false;       // from start() until receive() hands out its message
  bool cancelled = false;  // its result becomes an `exit` message
  TaskId task{};
  // The handoff to the slot's thread has its own lock, so that a worker
  // waiting for work never contends with the scheduler reading the inbox.
  std::mutex mutex;
  std::condition_variable wake;
  std::unique_ptr<Call> work;  // guarded by mutex
  TaskId work_task{};          // guarded by mutex
  bool stop = false;           // guarded by mutex
  // Set with work or stop (under mutex), cleared when the thread takes the
  // work: what the thread spins on before it sleeps on `wake`.
  std::atomic<bool> poked{false};
  // What the spawner sent to the running task (VM::send), and whether the
  // task was cancelled, so that its channel's receive() gives up; both
  // guarded by mutex and reset by start().
  std::deque<std::string> to_task{};
  bool aborted = false;
  // What the thread runs now, for finalize()'s report; guarded by mutex.
  std::optional<TaskId> running_task{};
  std::string running_function{};
  bool exited = false;  // guarded by Impl::inbox_mutex: serve() has returned
  std::thread thread;
};

}  // namespace

// Impl is owned jointly by the ThreadVM and by every slot's thread (each
// holds a shared_ptr), so a thread that finalize() detached can still take
// its slot's lock and push its message when its function finally returns:
// the last owner, whichever it is, frees it all.
struct ThreadVM::Impl {
  std::vector<std::unique_ptr<Slot>> slots;
  std::vector<HostId> hosts;
  std::unordered_map<TaskId, Slot*> tasks;
  std::uint64_t next_task = 1;
  int free = 0;
  bool finalized = false;
  std::chrono::nanoseconds finalize_timeout = default_finalize_timeout;

  std::mutex inbox_mutex;
  std::condition_variable done;    // a message is in the inbox
  std::condition_variable exited;  // a slot's thread has returned
  std::deque<Message> inbox;       // guarded by inbox_mutex
  std::atomic<std::size_t> mail{0};  // inbox.size(), for receive() to spin on without the lock
  std::atomic<bool> receiver_spins{false};  // receive() spins on `mail` now
  // The scheduler's thread only. It pauses rather than yields: a scheduler
  // that yields to a slot running a long call waits out the kernel's time
  // slice while the other slots' results wait for it (measured: 1 ms jobs
  // fell from 0.96 to 0.76 efficiency).
  detail::AdaptiveSpin receive_spin{spin_window, detail::AdaptiveSpin::Between::pause};

  // mail_in() puts a slot's message in the inbox and wakes receive(). It
  // returns whether receive() was spinning: then the scheduler is awake
  // and the slot's next call comes within microseconds, worth a spin; if it
  // was asleep, its wake-up takes longer than a spin should, and a spinning
  // thread would only make the kernel wake the scheduler on the core where
  // the other slot works.
  bool mail_in(Message&& m) {
    {
      std::lock_guard lock(inbox_mutex);
      inbox.push_back(std::move(m));
      mail.store(inbox.size(), std::memory_order_release);
    }
    bool awake = receiver_spins.load(std::memory_order_acquire);
    done.notify_one();
    return awake;
  }

  static void serve(std::shared_ptr<Impl> self, Slot& slot);
  class Channel;
};

// Channel is a running task's channel (remote/channel.hpp): posts go
// into the VM's inbox as `post` messages; receive() waits on the slot for
// what send() queued there.
class ThreadVM::Impl::Channel final : public detail::TaskChannel {
 public:
  Channel(Impl& vm, Slot& slot, TaskId task) : TaskChannel(slot.host, task), vm_(vm), slot_(slot) {}

  void post(std::string payload) override {
    Message m;
    m.kind = Message::Kind::post;
    m.task = task();
    m.host = host();
    m.payload = std::move(payload);
    vm_.mail_in(std::move(m));
  }

  std::optional<std::string> receive() override {
    std::unique_lock lock(slot_.mutex);
    slot_.wake.wait(lock, [&] { return slot_.stop || slot_.aborted || !slot_.to_task.empty(); });
    if (slot_.to_task.empty()) return std::nullopt;
    std::string bytes = std::move(slot_.to_task.front());
    slot_.to_task.pop_front();
    return bytes;
  }

 private:
  Impl& vm_;
  Slot& slot_;
};

void ThreadVM::Impl::serve(std::shared_ptr<Impl> self, Slot& slot) {
  // It yields between polls: with more threads than cores it gives its core
  // to the scheduler that is to hand it the call.
  detail::AdaptiveSpin spin(spin_window, detail::AdaptiveSpin::Between::yield);
  bool scheduler_awake = false;  // when this thread handed back its last result
  for (;;) {
    std::unique_ptr<Call> call;
    TaskId task;
    if (scheduler_awake) spin.wait([&] { return slot.poked.load(std::memory_order_acquire); });
    {
      std::unique_lock lock(slot.mutex);
      slot.wake.wait(lock, [&] { return slot.stop || slot.work; });
      if (slot.stop) break;
      slot.poked.store(false, std::memory_order_relaxed);
      call = std::move(slot.work);
      task = slot.work_task;
      slot.running_task = task;
      slot.running_function = call->function;
    }
    Channel channel(*self, slot, task);
    Message m = detail::execute(*call, channel);
    m.task = task;
    m.host = slot.host;
    {
      std::lock_guard lock(slot.mutex);
      slot.running_task.reset();
    }
    scheduler_awake = self->mail_in(std::move(m));
  }
  {
    std::lock_guard lock(self->inbox_mutex);
    slot.exited = true;
  }
  self->exited.notify_all();
}

ThreadVM::ThreadVM(int n) : ThreadVM(std::map<std::string, int>{{detail::this_host_name(), n}}) {}

ThreadVM::ThreadVM(const std::map<std::string, int>& slots_per_host) : impl_(std::make_shared<Impl>()) {
  detail::check_registry();
  if (slots_per_host.empty()) throw Error("coop::ThreadVM: no hosts given");
  for (const auto& [name, n] : slots_per_host) {
    if (n <= 0) {
      throw Error("coop::ThreadVM: host '" + name + "' needs a positive slot count, not " +
                  std::to_string(n));
    }
  }
  Impl& m = *impl_;
  m.finalize_timeout = detail::seconds_from_env("COS_FINALIZE_TIMEOUT", default_finalize_timeout, "coop::ThreadVM");
  for (const auto& [name, n] : slots_per_host) {
    m.hosts.emplace_back(name);
    for (int i = 0; i < n; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->host = HostId(name);
      m.slots.push_back(std::move(slot));
    }
  }
  m.free = static_cast<int>(m.slots.size());
  try {
    for (auto& slot : m.slots) {
      Slot* s = slot.get();
      s->thread = std::thread([self = impl_, s] { Impl::serve(self, *s); });
    }
  } catch (...) {
    finalize();
    throw;
  }
}

ThreadVM::~ThreadVM() { finalize(); }

// After finalize() there are no slots (vm.hpp); a spawn then fails in the
// remote layer, which refuses remote spawns on a VM without slots.
int ThreadVM::slots() const { return impl_->finalized ? 0 : static_cast<int>(impl_->slots.size()); }
int ThreadVM::free_slots() const { return impl_->finalized ? 0 : impl_->free; }
std::vector<HostId> ThreadVM::hosts() const { return impl_->hosts; }

std::vector<HostId> ThreadVM::hosts_with_free_slots() const {
  std::vector<HostId> out;
  if (impl_->finalized) return out;
  for (const auto& s : impl_->slots) {
    if (!s->busy && std::find(out.begin(), out.end(), s->host) == out.end()) out.push_back(s->host);
  }
  return out;
}

std::optional<TaskId> ThreadVM::start(const Call& call, const std::optional<HostId>& host) {
  Impl& m = *impl_;
  if (m.finalized) throw Error("coop::ThreadVM: start() after finalize()");
  if (host && std::find(m.hosts.begin(), m.hosts.end(), *host) == m.hosts.end()) {
    std::vector<std::string> known;
    for (const auto& h : m.hosts) known.push_back(h.name());
    throw Error("coop::ThreadVM: unknown host '" + host->name() + "' (hosts: " + posix::join_names(known) + ")");
  }
  auto it = std::find_if(m.slots.begin(), m.slots.end(),
                         [&](const auto& s) { return !s->busy && (!host || s->host == *host); });
  if (it == m.slots.end()) return std::nullopt;
  Slot& slot = **it;
  TaskId id(m.next_task++);
  auto work = std::make_unique<Call>(call);
  {
    std::lock_guard lock(slot.mutex);
    slot.work = std::move(work);
    slot.work_task = id;
    slot.to_task.clear();
    slot.aborted = false;
    slot.poked.store(true, std::memory_order_release);
  }
  slot.task = id;
  slot.busy = true;
  slot.cancelled = false;
  --m.free;
  m.tasks.emplace(id, &slot);
  slot.wake.notify_one();
  return id;
}

std::optional<Message> ThreadVM::receive(std::chrono::nanoseconds timeout) {
  Impl& m = *impl_;
  if (m.finalized) return std::nullopt;
  // A spin first, lock-free, when the caller would wait at least as long
  // (the spin counts in a timeout).
  const auto deadline =
      timeout.count() > 0 ? clock::now() + std::chrono::ceil<clock::duration>(timeout) : clock::time_point{};
  if ((timeout.count() < 0 && !m.tasks.empty()) || timeout >= spin_window) {
    m.receiver_spins.store(true, std::memory_order_release);
    m.receive_spin.wait([&] { return m.mail.load(std::memory_order_acquire) > 0; });
    m.receiver_spins.store(false, std::memory_order_relaxed);
  }
  std::unique_lock lock(m.inbox_mutex);
  auto ready = [&] { return !m.inbox.empty(); };
  if (timeout.count() < 0) {
    // Nothing could arrive when no task runs: say so instead of waiting forever.
    if (!ready() && m.tasks.empty()) return std::nullopt;
    m.done.wait(lock, ready);
  } else if (timeout.count() == 0) {
    if (!ready()) return std::nullopt;  // a poll: no timed wait, no system call
  } else if (!m.done.wait_until(lock, deadline, ready)) {
    return std::nullopt;
  }
  Message msg = std::move(m.inbox.front());
  m.inbox.pop_front();
  m.mail.store(m.inbox.size(), std::memory_order_relaxed);
  lock.unlock();
  auto it = m.tasks.find(msg.task);
  // A post frees nothing (and one from a cancelled task goes nowhere).
  if (msg.kind == Message::Kind::post) return msg;
  Slot& slot = *it->second;
  m.tasks.erase(it);
  slot.busy = false;
  ++m.free;
  if (slot.cancelled) {
    msg.kind = Message::Kind::exit;
    msg.payload.clear();
    msg.reason = "cancelled";
  }
  return msg;
}

HostId ThreadVM::host_of(const TaskId& task) const {
  auto it = impl_->tasks.find(task);
  if (it == impl_->tasks.end()) throw Error("coop::ThreadVM::host_of: unknown task");
  return it->second->host;
}

void ThreadVM::cancel(const TaskId& task) {
  auto it = impl_->tasks.find(task);
  if (it == impl_->tasks.end()) return;
  Slot& slot = *it->second;
  slot.cancelled = true;
  {
    std::lock_guard lock(slot.mutex);
    slot.aborted = true;  // a task waiting for the spawner gives up
  }
  slot.wake.notify_one();
}

void ThreadVM::send(const TaskId& task, std::string payload) {
  Impl& m = *impl_;
  if (m.finalized) return;
  auto it = m.tasks.find(task);
  if (it == m.tasks.end() || it->second->cancelled) return;
  Slot& slot = *it->second;
  {
    std::lock_guard lock(slot.mutex);
    slot.to_task.push_back(std::move(payload));
  }
  slot.wake.notify_one();
}

// finalize() waits for the threads up to its bound, then detaches the ones
// still running a function. That is safe for the VM's own state: a detached
// thread holds a shared_ptr to Impl, so its slot, locks and inbox live until
// it returns. The function itself is the user's: whatever it uses must stay
// alive until it returns (or the process exits with the thread still in it).
void ThreadVM::finalize() {
  Impl& m = *impl_;
  if (m.finalized) return;
  m.finalized = true;
  for (auto& slot : m.slots) {
    {
      std::lock_guard lock(slot->mutex);
      slot->stop = true;
      slot->poked.store(true, std::memory_order_release);
    }
    slot->wake.notify_one();
  }
  auto deadline = clock::now() + m.finalize_timeout;
  {
    std::unique_lock lock(m.inbox_mutex);
    m.exited.wait_until(lock, deadline, [&] {
      return std::all_of(m.slots.begin(), m.slots.end(),
                         [](const auto& s) { return s->exited || !s->thread.joinable(); });
    });
  }
  for (std::size_t i = 0; i < m.slots.size(); ++i) {
    Slot& slot = *m.slots[i];
    if (!slot.thread.joinable()) continue;
    bool exited;
    {
      std::lock_guard lock(m.inbox_mutex);
      exited = slot.exited;
    }
    if (exited) {
      slot.thread.join();
      continue;
    }
    std::string what;
    {
      std::lock_guard lock(slot.mutex);
      what = slot.running_task ? "task " + std::to_string(slot.running_task->value()) + " (" +
                                     slot.running_function + ")"
                               : "its thread";
    }
    std::string line = "coop::ThreadVM: finalize() gave up waiting after " +
                       detail::seconds_text(m.finalize_timeout) + ": " + what + " on slot " +
                       std::to_string(i) + " of host '" + slot.host.name() +
                       "' still runs; its thread is detached and runs on until the function returns "
                       "or the process exits\n";
    posix::write_all(2, line);
    slot.thread.detach();
  }
  std::lock_guard lock(m.inbox_mutex);
  m.inbox.clear();
  m.mail.store(0, std::memory_order_relaxed);
}

}  // namespace coop
