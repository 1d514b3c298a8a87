// process_vm.cpp: ProcessVM's public methods, over the slots that
// workers.cpp starts and pump.cpp serves.
#include <cos/process_vm.hpp>

#include <algorithm>
#include <cstdlib>

#include <cos/errors.hpp>
#include <cos/remote.hpp>

#include "backends/host_name.hpp"
#include "backends/process/impl.hpp"
#include "backends/process/worker.hpp"
#include "posix/fd.hpp"
#include "posix/text.hpp"

namespace coop {
namespace {

using namespace std::chrono_literals;
using detail::FrameKind;
using detail::process::Slot;
using detail::process::Source;
using detail::process::State;

}  // namespace

ProcessVM::Impl::Impl(const std::map<std::string, int>& slots_per_host, const ProcessOptions& options) {
  if (std::getenv(detail::worker_env)) {
    throw Error(
        "coop::ProcessVM: this process was started as a cos worker, but its main did not call "
        "coop::init(argc, argv) first: call coop::init(argc, argv) first in main");
  }
  detail::check_registry();
  start_timeout = detail::process::start_timeout_from_env();
  if (slots_per_host.empty()) throw Error("coop::ProcessVM: no hosts given (the map of slots per host is empty)");
  if (options.queue < 0) {
    throw Error("coop::ProcessVM: ProcessOptions::queue is " + std::to_string(options.queue) +
                "; it must be 0 (no pipelining) or more");
  }
  queue_depth = options.queue;
  queue_under = options.queue_under;
  for (const auto& [name, count] : slots_per_host) {
    if (name.empty()) throw Error("coop::ProcessVM: a host name is empty");
    if (count <= 0) {
      throw Error("coop::ProcessVM: host '" + name + "' has " + std::to_string(count) +
                  " slots; each host needs at least 1");
    }
  }
  devnull = detail::process::open_devnull();
  epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) {
    posix::close_fd(devnull);
    throw Error(posix::errno_text("coop::ProcessVM: epoll_create1"));
  }
  for (const auto& [name, count] : slots_per_host) {
    hosts.emplace_back(name);
    for (int i = 0; i < count; ++i) {
      slots.emplace_back();
      slots.back().host = hosts.size() - 1;
    }
  }
  try {
    for (Slot& s : slots) spawn(s);
    while (startup_error.empty() &&
           std::any_of(slots.begin(), slots.end(), [](const Slot& s) { return s.state == State::starting; })) {
      pump(-1ns);
    }
  } catch (...) {
    shutdown();
    posix::close_fd(devnull);
    posix::close_fd(epoll);
    throw;
  }
  if (!startup_error.empty()) {
    shutdown();
    posix::close_fd(devnull);
    posix::close_fd(epoll);
    throw Error("coop::ProcessVM: " + startup_error);
  }
  constructing = false;
}

ProcessVM::Impl::~Impl() {
  shutdown();
  posix::close_fd(devnull);
  posix::close_fd(epoll);
}

Slot* ProcessVM::Impl::busy_with(std::uint64_t task) {
  for (Slot& s : slots) {
    if (s.state == State::busy && s.task == task) return &s;
  }
  return nullptr;
}

ProcessVM::ProcessVM(int n, ProcessOptions options) : ProcessVM([n] {
  if (n <= 0) {
    throw Error("coop::ProcessVM: " + std::to_string(n) + " slots; a ProcessVM needs at least 1");
  }
  return std::map<std::string, int>{{detail::this_host_name(), n}};
}(), options) {}

ProcessVM::ProcessVM(std::map<std::string, int> slots_per_host, ProcessOptions options)
    : impl_(std::make_unique<Impl>(slots_per_host, options)) {}

ProcessVM::~ProcessVM() = default;

int ProcessVM::slots() const {
  if (impl_->finalized) return 0;
  return static_cast<int>(std::count_if(impl_->slots.begin(), impl_->slots.end(),
                                        [](const Slot& s) { return s.state != State::down; }));
}

int ProcessVM::free_slots() const {
  return static_cast<int>(std::count_if(impl_->slots.begin(), impl_->slots.end(),
                                        [](const Slot& s) { return s.state == State::idle; }));
}

std::vector<HostId> ProcessVM::hosts() const { return impl_->hosts; }

std::vector<HostId> ProcessVM::hosts_with_free_slots() const {
  std::vector<bool> free(impl_->hosts.size(), false);
  for (const Slot& s : impl_->slots) {
    if (s.state == State::idle) free[s.host] = true;
  }
  std::vector<HostId> out;
  for (std::size_t i = 0; i < free.size(); ++i) {
    if (free[i]) out.push_back(impl_->hosts[i]);
  }
  return out;
}

// host_index() is the index of `host` (nullopt for any host); throws
// coop::Error for a host this VM does not have.
std::optional<std::size_t> ProcessVM::Impl::host_index(const std::optional<HostId>& host) const {
  if (!host) return std::nullopt;
  auto it = std::find(hosts.begin(), hosts.end(), *host);
  if (it == hosts.end()) {
    std::vector<std::string> known;
    for (const auto& h : hosts) known.push_back(h.name());
    throw Error("coop::ProcessVM: unknown host '" + host->name() + "' (hosts: " + posix::join_names(known) + ")");
  }
  return static_cast<std::size_t>(it - hosts.begin());
}

std::optional<TaskId> ProcessVM::start(const Call& call, const std::optional<HostId>& host) {
  Impl& m = *impl_;
  if (m.finalized) throw Error("coop::ProcessVM: start() after finalize()");
  std::optional<std::size_t> want = m.host_index(host);
  // Round robin over the slots, so that work without a host spreads over hosts.
  Slot* slot = nullptr;
  for (std::size_t k = 0; k < m.slots.size(); ++k) {
    Slot& s = m.slots[(m.cursor + k) % m.slots.size()];
    if (s.state == State::idle && (!want || s.host == *want)) {
      slot = &s;
      m.cursor = (m.cursor + k + 1) % m.slots.size();
      break;
    }
  }
  if (!slot) return std::nullopt;
  std::uint64_t id = m.task_host.size() + 1;
  m.append_call(*slot, FrameKind::call, id, call);
  m.task_host.push_back(static_cast<std::uint32_t>(slot->host));
  slot->state = State::busy;
  slot->task = id;
  slot->task_began = clock::now();
  slot->runs_long = false;
  slot->forget_output();
  m.send_appended(*slot, false);
  return TaskId(id);
}

std::optional<Message> ProcessVM::receive(std::chrono::nanoseconds timeout) {
  Impl& m = *impl_;
  if (!m.ready.empty()) return m.ready.take();
  if (m.finalized) return std::nullopt;
  if (timeout == 0ns) {
    m.pump(0ns);
    return m.ready.take();
  }
  const bool forever = timeout < 0ns;
  const auto deadline = forever ? clock::time_point::max() : clock::now() + timeout;
  m.slot_freed = false;
  for (;;) {
    if (forever && !m.anything_to_wait_for()) return std::nullopt;
    m.pump(forever ? -1ns : std::max(0ns, std::chrono::nanoseconds(deadline - clock::now())));
    if (!m.ready.empty()) return m.ready.take();
    // A slot that became free is news to a caller with queued work.
    if (m.slot_freed || (!forever && clock::now() >= deadline)) return std::nullopt;
  }
}

HostId ProcessVM::host_of(const TaskId& task) const {
  const auto& th = impl_->task_host;
  if (task.value() == 0 || task.value() > th.size()) {
    throw Error("coop::ProcessVM: unknown task id " + std::to_string(task.value()));
  }
  return impl_->hosts[th[task.value() - 1]];
}

void ProcessVM::cancel(const TaskId& task) {
  Impl& m = *impl_;
  if (m.finalized) return;
  if (Slot* s = m.busy_with(task.value())) {
    m.kill_task(*s);
    return;
  }
  // A queued call: taken back without a kill, unless it begins meanwhile.
  if (auto q = m.queued_on(task.value())) {
    q->first->queued[q->second].cancelled = true;
    m.send_withdraw(*q->first, task.value());
  }
}

// kill_task() ends the running task of `s` with `exit` by killing its
// worker (with the processes below it) and starting another; the calls
// queued on it are withdrawn.
void ProcessVM::Impl::kill_task(Slot& s) {
  drain(s, Source::out, true);
  drain(s, Source::err, true);
  flush_partial_lines(s);
  reap(s);
  withdraw_all(s);
  Message msg;
  msg.kind = Message::Kind::exit;
  msg.task = TaskId(s.task);
  msg.host = hosts[s.host];
  msg.reason = "cancelled";
  msg.output = claim_output(s, nullptr);
  msg.completed = clock::now();
  s.pending = std::move(msg);
  replace(s);
}

void ProcessVM::send(const TaskId& task, std::string payload) {
  Impl& m = *impl_;
  if (m.finalized) return;
  Slot* s = m.busy_with(task.value());
  if (!s) return;  // it has ended: dropped (vm.hpp)
  m.send_frame(*s, detail::encode_frame(FrameKind::deliver, detail::encode_task_bytes(task.value(), payload)));
}

void ProcessVM::finalize() {
  Impl& m = *impl_;
  if (m.finalized) return;
  m.finalized = true;
  m.shutdown();
}

std::vector<int> ProcessVM::worker_pids() const {
  std::vector<int> pids;
  for (const Slot& s : impl_->slots) {
    if (s.pid > 0) pids.push_back(s.worker > 0 ? s.worker : s.pid);
  }
  return pids;
}

}  // namespace coop