// mpi_vm.cpp: MpiVM, rank 0's side: a session over the serving ranks, one
// slot per rank. Calls go out as frames with non-blocking sends; reports
// come back through poll(); receive() paces its polls with a Backoff, so
// rank 0 never spins in MPI for long while the ranks compute. Pipelining
// (VM::queue) as on ProcessVM: `queue` frames put calls behind a rank's
// running task; the rank says `started` when one begins (with the result
// before it, in the same report frame) and `withdrawn` for one it gave
// back; each slot keeps its queued calls' ids until then.
#include <cos/mpi_vm.hpp>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>

#include <cos/errors.hpp>
#include <cos/remote.hpp>

#include "backends/env_seconds.hpp"
#include "backends/mpi/impl.hpp"
#include "backends/mpi/world.hpp"
#include "backends/process/impl.hpp"
#include "backends/process/worker.hpp"
#include "posix/fd.hpp"
#include "posix/text.hpp"

namespace coop {
namespace {

using namespace std::chrono_literals;
using detail::FrameKind;
using detail::unrun;
using detail::mpi::RankSlot;
namespace mpi = detail::mpi;

// Extra time a rank gets, past the worker start timeout, to say it is ready.
constexpr auto open_margin = 5s;
// finalize() waits this long for ranks to stop their tasks (COS_FINALIZE_TIMEOUT).
constexpr std::chrono::nanoseconds default_finalize_timeout = 2s;

// Sessions: the ranks each live MpiVM holds (a rank serves one at a time),
// the end() of each, for rank 0's exit, and the frames that one session's
// poll took from a rank of another, kept for that one.
struct Sessions {
  std::map<int, std::function<void()>> ends;  // by session number
  std::map<int, int> owner;                   // rank -> session number
  std::map<int, std::deque<mpi::Incoming>> held;
  int next = 1;
};
Sessions& sessions() {
  static Sessions s;
  return s;
}

std::vector<int> check_ranks(const std::optional<std::vector<int>>& asked, int size) {
  std::vector<int> ranks;
  if (!asked) {
    for (int r = 1; r < size; ++r) {
      if (!sessions().owner.count(r)) ranks.push_back(r);
    }
    if (ranks.empty()) {
      throw Error("coop::MpiVM: every worker rank serves another MpiVM; finalize or destroy one first");
    }
    return ranks;
  }
  if (asked->empty()) throw Error("coop::MpiVM: MpiOptions::ranks is empty; give at least one worker rank");
  for (int r : *asked) {
    if (r < 1 || r >= size) {
      throw Error("coop::MpiVM: rank " + std::to_string(r) + " is not a worker rank of this job (those are 1.." +
                  std::to_string(size - 1) + "; rank 0 spawns)");
    }
    if (std::find(ranks.begin(), ranks.end(), r) != ranks.end()) {
      throw Error("coop::MpiVM: rank " + std::to_string(r) + " is given twice in MpiOptions::ranks");
    }
    if (sessions().owner.count(r)) {
      throw Error("coop::MpiVM: rank " + std::to_string(r) + " serves another MpiVM; finalize or destroy it first");
    }
    ranks.push_back(r);
  }
  return ranks;
}

}  // namespace

MpiVM::Impl::Impl(MpiOptions o) : options(std::move(o)) {
  if (options.queue < 0) {
    throw Error("coop::MpiVM: MpiOptions::queue is " + std::to_string(options.queue) +
                "; give 0 (no pipelining) or more");
  }
  if (std::getenv(detail::worker_env)) {
    throw Error("coop::MpiVM: this process is a cos worker, not an MPI rank: call coop::init(argc, argv) first in main");
  }
  auto& w = mpi::world();
  if (!under_mpi() && !w.initialised) {
    throw Error(
        "coop::MpiVM: this program was not started by an MPI launcher, so it has no ranks: start it with "
        "mpirun -n N (rank 0 spawns, ranks 1..N-1 are the slots), or srun");
  }
  if (!w.initialised || w.finalized) {
    throw Error(std::string("coop::MpiVM: MPI is ") + (w.finalized ? "finalized already" : "not initialised") +
                ": call coop::init(argc, argv) first in main, and make the MpiVM before main returns");
  }
  if (w.rank != 0) throw Error("coop::MpiVM: only rank 0 makes an MpiVM (this is rank " + std::to_string(w.rank) + ")");
  if (w.size < 2) {
    throw Error(
        "coop::MpiVM: the job has one rank, so it has no slots (rank 0 spawns): start it with mpirun -n N, N >= 2");
  }
  detail::check_registry();
  finalize_timeout = detail::seconds_from_env("COS_FINALIZE_TIMEOUT", default_finalize_timeout, "coop::MpiVM");
  std::vector<int> ranks = check_ranks(options.ranks, w.size);
  std::vector<std::string> names;
  for (int r : ranks) names.push_back(w.hosts.at(static_cast<std::size_t>(r)));
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  for (auto& n : sorted) hosts.emplace_back(n);
  slot_of_rank.assign(static_cast<std::size_t>(w.size), -1);
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    RankSlot s;
    s.rank = ranks[i];
    s.host = static_cast<std::size_t>(std::lower_bound(sorted.begin(), sorted.end(), names[i]) - sorted.begin());
    slot_of_rank[static_cast<std::size_t>(s.rank)] = static_cast<int>(slots.size());
    slots.push_back(s);
  }
  session = sessions().next++;
  sessions().ends[session] = [this] { end(); };
  for (auto& sl : slots) sessions().owner[sl.rank] = session;
  std::string open(1, options.isolate ? '\1' : '\0');
  std::vector<std::optional<std::string>> said;
  try {
    for (auto& s : slots) mpi::send(s.rank, FrameKind::open, open);
    said = wait_for_all(FrameKind::opened, clock::now() + detail::process::start_timeout_from_env() + open_margin);
  } catch (...) {
    // The session is registered: take it back before the error leaves.
    try {
      end();
    } catch (...) {
    }
    throw;
  }
  std::string error;
  for (std::size_t i = 0; i < slots.size() && error.empty(); ++i) {
    if (!said[i]) {
      error = "rank " + std::to_string(slots[i].rank) + " did not get ready in time";
    } else if (!said[i]->empty()) {
      error = "rank " + std::to_string(slots[i].rank) + " cannot serve: " + *said[i];
    }
  }
  if (!error.empty()) {
    end();
    throw Error("coop::MpiVM: " + error);
  }
}

std::vector<std::optional<std::string>> MpiVM::Impl::wait_for_all(FrameKind kind,
                                                                  std::optional<clock::time_point> deadline) {
  std::vector<std::optional<std::string>> said(slots.size());
  std::size_t missing = slots.size();
  mpi::Backoff wait(true, mpi::frame_arrived);
  while (missing > 0 && (!deadline || clock::now() < *deadline)) {
    auto in = next();
    if (!in) {
      wait.pause(deadline, all_rung());
      continue;
    }
    wait.reset();
    int slot = in->source >= 0 && static_cast<std::size_t>(in->source) < slot_of_rank.size()
                   ? slot_of_rank[static_cast<std::size_t>(in->source)]
                   : -1;
    if (slot < 0 || in->frame.kind != kind) continue;  // a late report of the session: dropped
    auto& entry = said[static_cast<std::size_t>(slot)];
    if (!entry) --missing;
    entry = std::move(in->frame.payload);
  }
  return said;
}

std::optional<mpi::Incoming> MpiVM::Impl::next() {
  auto& all = sessions();
  for (auto& s : slots) {
    if (all.held.empty()) break;
    auto it = all.held.find(s.rank);
    if (it != all.held.end() && !it->second.empty()) {
      mpi::Incoming in = std::move(it->second.front());
      it->second.pop_front();
      if (it->second.empty()) all.held.erase(it);
      return in;
    }
  }
  while (auto in = mpi::poll()) {
    auto owner = all.owner.find(in->source);
    if (owner == all.owner.end()) continue;
    if (owner->second == session) return in;
    all.held[in->source].push_back(std::move(*in));
  }
  return std::nullopt;
}

void MpiVM::Impl::take(mpi::Incoming&& in) {
  if (in.frame.kind != FrameKind::report) return;
  int index = static_cast<std::size_t>(in.source) < slot_of_rank.size() ? slot_of_rank[static_cast<std::size_t>(in.source)]
                                                                         : -1;
  if (index < 0) return;
  RankSlot& s = slots[static_cast<std::size_t>(index)];
  // Every report of the frame changes the slot now, before the caller
  // queues more on it: the slot is then as the rank left it.
  const std::string& payload = in.frame.payload;
  if (payload.empty()) throw detail::FrameError("coop::MpiVM: a report frame without a message");
  for (std::size_t at = 0; at < payload.size();) {
    Message m;
    at = detail::decode_next_report(payload, at, m);
    if (auto msg = apply(s, std::move(m))) ready.push_back(std::move(*msg));
  }
}

std::optional<Message> MpiVM::Impl::apply(RankSlot& s, Message&& m) {
  const std::uint64_t task = m.task.value();
  m.host = hosts[s.host];
  switch (m.kind) {
    case Message::Kind::started: {
      // The next queued call began (its result may follow in the same frame).
      if (s.task != 0 || s.queued.empty() || s.queued.front().task != task) return std::nullopt;  // stale
      const bool cancelled = s.queued.front().cancelled;
      s.queued.pop_front();
      s.task = task;
      s.task_began = clock::now();
      s.runs_long = false;
      // A cancel sent while it was queued reaches the rank after it began:
      // the rank stops it as a running task, and its end is an `exit`.
      s.cancelled = cancelled;
      if (cancelled) return std::nullopt;
      return std::optional<Message>(std::move(m));
    }
    case Message::Kind::withdrawn: {
      auto it = find_queued(s, task);
      if (it == s.queued.end()) return std::nullopt;  // stale
      Message out = unrun(*it, hosts[s.host]);
      s.queued.erase(it);
      return out;
    }
    case Message::Kind::post:  // frees nothing
      if (task == 0 || task != s.task) return std::nullopt;
      return std::optional<Message>(std::move(m));
    case Message::Kind::result:
    case Message::Kind::exit:
    case Message::Kind::worker_lost:
      if (task == 0 || task != s.task) return std::nullopt;  // not the task it runs: stale
      break;
  }
  if (m.kind == Message::Kind::result) {
    clock::duration run = std::max(clock::duration(0), m.completed - m.started);
    typical_run = typical_run ? (3 * *typical_run + run) / 4 : run;
    if (s.cancelled) {
      m.kind = Message::Kind::exit;
      m.payload.clear();
      m.reason = "cancelled";
    }
  }
  s.task = 0;
  s.cancelled = false;
  s.runs_long = false;
  return std::optional<Message>(std::move(m));  // the slot is free unless calls are queued on it
}

std::optional<std::size_t> MpiVM::Impl::host_index(const std::optional<HostId>& host) const {
  if (!host) return std::nullopt;
  auto it = std::find(hosts.begin(), hosts.end(), *host);
  if (it == hosts.end()) {
    std::vector<std::string> known;
    for (const auto& h : hosts) known.push_back(h.name());
    throw Error("coop::MpiVM: unknown host '" + host->name() + "' (hosts: " + posix::join_names(known) + ")");
  }
  return static_cast<std::size_t>(it - hosts.begin());
}

// end() releases the ranks: each stops what it runs and confirms, so that
// nothing of this session reaches the next one.
void MpiVM::Impl::end() {
  if (finalized) return;
  finalized = true;
  ready.clear();
  // Whatever happens below (an MPI call that throws), the session lets its
  // ranks go and leaves the job's list of live sessions, whose entries the
  // job's end calls: a stale entry would hang or call into freed memory.
  struct Forget {
    Impl& m;
    ~Forget() {
      for (auto& sl : m.slots) sessions().held.erase(sl.rank);
      m.slots.clear();
      for (auto it = sessions().owner.begin(); it != sessions().owner.end();) {
        it = it->second == m.session ? sessions().owner.erase(it) : std::next(it);
      }
      sessions().ends.erase(m.session);
    }
  } forget{*this};
  if (mpi::world().finalized) return;
  for (auto& s : slots) {
    s.corked.clear();  // the rank drops its queued calls at release anyway
    mpi::send(s.rank, FrameKind::release, {});
  }
  auto said = wait_for_all(FrameKind::released, clock::now() + finalize_timeout);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (said[i]) continue;
    // Without isolate a task cannot be stopped: the rank serves again once
    // it returns (a later session waits for it, and drops its report).
    std::string msg = "coop::MpiVM: finalize: rank " + std::to_string(slots[i].rank) + " still runs task " +
                      std::to_string(slots[i].task) + " after " + detail::seconds_text(finalize_timeout) +
                      "; it is given back as it is\n";
    posix::write_all(2, msg);
  }
}

MpiVM::MpiVM(MpiOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

MpiVM::~MpiVM() {
  try {
    finalize();
  } catch (...) {
  }
}

int MpiVM::slots() const { return static_cast<int>(impl_->slots.size()); }

int MpiVM::free_slots() const {
  return static_cast<int>(
      std::count_if(impl_->slots.begin(), impl_->slots.end(), [](const RankSlot& s) { return !s.busy(); }));
}

std::vector<HostId> MpiVM::hosts() const { return impl_->finalized ? std::vector<HostId>{} : impl_->hosts; }

std::vector<HostId> MpiVM::hosts_with_free_slots() const {
  std::vector<HostId> out;
  for (std::size_t h = 0; h < impl_->hosts.size(); ++h) {
    for (const auto& s : impl_->slots) {
      if (s.host == h && !s.busy()) {
        out.push_back(impl_->hosts[h]);
        break;
      }
    }
  }
  return out;
}

std::optional<TaskId> MpiVM::start(const Call& call, const std::optional<HostId>& host) {
  Impl& m = *impl_;
  if (m.finalized) throw Error("coop::MpiVM: start() after finalize()");
  std::optional<std::size_t> want = m.host_index(host);
  auto it = std::find_if(m.slots.begin(), m.slots.end(),
                         [&](const RankSlot& s) { return !s.busy() && (!want || s.host == *want); });
  if (it == m.slots.end()) return std::nullopt;
  std::uint64_t id = m.task_host.size() + 1;
  m.send(*it, FrameKind::call, detail::encode_call(id, call));
  m.task_host.push_back(static_cast<std::uint32_t>(it->host));
  it->cancelled = false;
  it->task = id;
  it->task_began = clock::now();
  it->runs_long = false;
  return TaskId(id);
}

std::optional<Message> MpiVM::receive(std::chrono::nanoseconds timeout) {
  Impl& m = *impl_;
  if (m.finalized) return std::nullopt;
  if (!m.ready.empty()) return m.ready.take();
  for (auto& s : m.slots) m.uncork(s);
  // The clock is read only once a wait begins (a poll, and a report that
  // is there at once, cost no clock reads: about 10% of rank 0's time per
  // empty task went to them).
  clock::time_point start{}, deadline{};
  // Spin first only while reports have been coming within the spin time:
  // waiting for longer tasks, rank 0 naps (and the ranks ring it) at once.
  std::optional<mpi::Backoff> wait;
  const bool rung = m.all_rung();
  for (;;) {
    while (auto in = m.next()) {
      m.take(std::move(*in));
      if (!m.ready.empty()) {
        if (wait) m.recent_wait = (3 * m.recent_wait + (clock::now() - start)) / 4;
        return m.ready.take();
      }
    }
    if (timeout == 0ns) return std::nullopt;
    bool running = std::any_of(m.slots.begin(), m.slots.end(), [](const RankSlot& s) { return s.busy(); });
    if (!running && mpi::pending_sends() == 0) return std::nullopt;
    if (!wait) {
      start = clock::now();
      deadline = start + std::max(timeout, 0ns);
      wait.emplace(m.recent_wait < mpi::spin_for, mpi::frame_arrived);
    } else if (timeout > 0ns && clock::now() >= deadline) {
      return std::nullopt;
    }
    wait->pause(timeout > 0ns ? std::optional(deadline) : std::nullopt, rung);
  }
}

HostId MpiVM::host_of(const TaskId& task) const {
  const Impl& m = *impl_;
  if (task.value() == 0 || task.value() > m.task_host.size()) throw Error("coop::MpiVM::host_of: unknown task");
  return m.hosts[m.task_host[task.value() - 1]];
}

void MpiVM::cancel(const TaskId& task) {
  Impl& m = *impl_;
  if (m.finalized || task.value() == 0) return;
  for (auto& s : m.slots) {
    if (s.task == task.value() && !s.cancelled) {
      s.cancelled = true;
      // With isolate the rank kills the worker (and gives back the calls
      // queued behind it); without, the task runs on, but its channel's
      // receive() returns nullopt from now on (vm.hpp).
      m.send(s, FrameKind::cancel, detail::encode_task(s.task));
      return;
    }
    // A queued call: the rank gives it back unrun (it ends with `exit`),
    // or, when it began meanwhile, stops it as a running task.
    auto it = find_queued(s, task.value());
    if (it != s.queued.end()) {
      if (!it->cancelled) {
        it->cancelled = true;
        m.send(s, FrameKind::cancel, detail::encode_task(task.value()));
      }
      return;
    }
  }
}

void MpiVM::send(const TaskId& task, std::string payload) {
  Impl& m = *impl_;
  for (auto& s : m.slots) {
    if (s.task != 0 && s.task == task.value() && !s.cancelled) {
      m.send(s, FrameKind::deliver, detail::encode_task_bytes(s.task, payload));
      return;
    }
  }
  // A task that has ended (or was never started): dropped, as vm.hpp says.
}

void MpiVM::finalize() { impl_->end(); }

}  // namespace coop

namespace coop::detail::mpi {

void end_live_session() {
  while (!sessions().ends.empty()) {
    auto end = sessions().ends.begin()->second;
    end();
  }
}

}  // namespace coop::detail::mpi
