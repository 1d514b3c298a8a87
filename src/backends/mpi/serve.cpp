// serve.cpp: the loop of a serving rank (1..n-1). It takes the frames rank
// 0 sends (one `case` per kind in handle()) and runs each call either in a
// worker process of its own private ProcessVM(1) (isolate: a crash,
// timeout or cancel costs that worker, which the ProcessVM replaces) or in
// the rank itself, and sends every ending back as a report frame. Waiting
// never spins for long: idle, it polls MPI with a Backoff (and rank 0 rings
// its doorbell); busy with a worker, it waits in the ProcessVM's poll for a
// while between MPI polls. A running task's posts go to rank 0 as report
// frames of kind `post`; rank 0's deliver frames reach the task (through
// the worker's ProcessVM, or the rank's own InlineChannel).
//
// Pipelining (rank 0's VM::queue): `queue` frames bring calls queued behind
// the rank's running task, in order (one frame holds every call rank 0
// queued here in one round). Without isolate the rank holds them
// and begins the next the moment its task returns. With isolate it passes
// them on to its worker's own queue (its ProcessVM pipelines as well), so
// that the worker begins the next call without a round trip to the rank
// either; the rank holds only what that queue has no room for yet (and a
// new worker's first calls: ProcessVM queues once it has seen a run time).
// The rank tells rank 0 `started` in the same report frame as the result
// before it: every report of one turn of the loop goes out as one MPI
// message. Before a held call begins, the rank takes in every frame that
// has arrived, so a `withdraw` (or a `cancel`) of it that is there gives it
// back unrun (`withdrawn`); one passed on to the worker is withdrawn there
// (ProcessVM::withdraw). When the worker is lost or killed (a crash, a
// cancel, a timeout), every call queued behind its task is given back.
#include <sched.h>
#include <stdio_ext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include <cos/errors.hpp>
#include <cos/process_vm.hpp>
#include <cos/remote.hpp>

#include "backends/mpi/world.hpp"
#include "remote/channel.hpp"

namespace coop::detail::mpi {
namespace {

// While a worker runs a task, the rank waits in the ProcessVM's poll (the
// result wakes it at once) and looks at MPI between waits, for a cancel or
// the end of the session. For the first busy_spin_for of a task it only
// polls, and yields the core to the worker after each poll that found
// nothing (a short task's result is microseconds away, often there at the
// first poll, and a wake-up costs more); then it waits busy_wait at a
// time: a cancel is seen within that, and a long task costs the rank 200
// wake-ups a second (each would take the core from the worker for a moment).
constexpr auto busy_spin_for = 30us;
constexpr auto busy_wait = 5ms;
// How many queued calls the rank passes on to its worker (the rest wait in
// the rank): as many as rank 0 may queue on a rank by default
// (MpiOptions::queue), so that the worker runs through them without a turn
// of the rank between two (rank 0 decides how much is queued: about
// queue_under of work). Empty tasks, isolate on, 2 worker ranks on 2 cores:
// 11-14 us per task with 2 here and 2 queued by rank 0, 3.5-4.1 us with 16
// and 16 (mpi_job empty 1 30000 500 Q, three runs each).
constexpr int worker_queue = 16;

// The buffer std::cout writes through to C's stdout with (sync_with_stdio);
// a program that gave it another has it flushed too.
std::streambuf* const synced_cout = std::cout.rdbuf();

// flush_output() flushes what an inline task wrote to stdout and stderr
// (C++ streams write through to them), so that it comes out before the
// next task's; only a stream that holds something is flushed (a flush of
// every stream, fflush(nullptr), locked each one: about 5% of an empty
// task's time in the rank).
void flush_output() {
  if (std::cout.rdbuf() != synced_cout) std::cout.flush();
  for (FILE* f : {stdout, stderr}) {
    if (__fpending(f) > 0) std::fflush(f);
  }
}

class Rank {
 public:
  // run() serves until rank 0 says stop.
  void run() {
    Backoff idle(true, frame_arrived);
    for (;;) {
      bool acted = false;
      if (worker_active()) {
        const bool spin = clock::now() - since_ < busy_spin_for;
        if (auto m = vm_->receive(spin ? 0ns : std::chrono::nanoseconds(busy_wait))) {
          // The worker writes a result and its next call's `started` at
          // once: both go out in one report frame.
          forward(std::move(*m));
          while (!busy_ && !passed_.empty()) {
            auto more = vm_->receive(0ns);
            if (!more) break;
            forward(std::move(*more));
          }
          acted = true;  // rank 0 answers a report within microseconds: spin first
        } else if (spin) {
          ::sched_yield();
        }
      }
      // Every frame there is, before a queued call begins (a withdraw of it
      // may be among them). Then an empty poll is tried twice: Open MPI
      // matches what it has taken in before it takes in what has arrived
      // (see module.cpp's probe), so one poll can miss a frame that sat
      // there while a task ran.
      for (int misses = 0;;) {
        if (std::optional<Frame> f = next_frame()) {
          if (!handle(*f)) return;
          acted = true;  // after the frame's work (a task without isolate) and its report
          misses = 0;
          continue;
        }
        if (++misses >= 2 || worker_active() || queued_.empty()) break;
      }
      if (feed()) acted = true;
      // Without isolate, a result that a held call follows goes with its
      // `started`, next turn.
      if (isolate_ || queued_.empty()) flush();
      if (acted) {
        idle.reset();
      } else if (!worker_active()) {
        idle.pause({}, rings_reach(0));
      }
    }
  }

 private:
  // handle() acts on one frame from rank 0; false for stop.
  bool handle(const Frame& f) {
    switch (f.kind) {
      case FrameKind::open:
        open(!f.payload.empty() && f.payload[0] != 0);
        return true;
      case FrameKind::call: {
        std::uint64_t task = 0;
        Call call;
        decode_call(f.payload, task, call);
        if (worker_active() || !queued_.empty()) {
          throw FrameError("coop::MpiVM: rank " + std::to_string(world().rank) +
                           " got a call while it runs or holds others (rank 0 sends calls to idle ranks only)");
        }
        begin(task, call, false);
        return true;
      }
      case FrameKind::queue: {
        // One call or more, in order. A rank that is idle by now (its
        // result is on the way) begins the first at once, after the frames
        // that came with it.
        if (f.payload.empty()) throw FrameError("coop::MpiVM: a queue frame without a call");
        for (std::size_t at = 0; at < f.payload.size();) {
          Queued q;
          at = decode_queued_call(f.payload, at, q.task, q.call);
          queued_.push_back(std::move(q));
        }
        return true;
      }
      case FrameKind::withdraw: {
        std::uint64_t task = decode_task(f.payload);
        if (auto it = passed(task); it != passed_.end()) {
          it->withdrawing = true;
          vm_->withdraw(it->local);  // answered by `withdrawn`, or `started` if it began
        } else {
          give_back(task);  // not here: it began (rank 0 has its `started`)
        }
        return true;
      }
      case FrameKind::cancel: {
        std::uint64_t task = decode_task(f.payload);
        if (busy_ && vm_ && task == task_) {
          vm_->cancel(local_);  // the calls queued behind it come back
        } else if (auto it = passed(task); it != passed_.end()) {
          vm_->cancel(it->local);  // its `exit` is reported as `withdrawn`: rank 0 ends it
        } else {
          give_back(task);  // a queued call: rank 0 ends it with `exit`
        }
        return true;
      }
      case FrameKind::deliver: {
        std::uint64_t task = 0;
        std::string bytes;
        decode_task_bytes(f.payload, task, bytes);
        if (busy_ && vm_ && task == task_) vm_->send(local_, std::move(bytes));
        return true;  // for a task that has ended: dropped (vm.hpp)
      }
      case FrameKind::release:
        release();
        return true;
      case FrameKind::stop:
        vm_.reset();
        return false;
      default:
        throw FrameError("coop::MpiVM: rank " + std::to_string(world().rank) + " got a frame of kind " +
                         std::to_string(static_cast<unsigned>(f.kind)) + " that ranks do not take");
    }
  }

  // open() readies the rank for a session; with isolate that is a worker
  // process (kept from an earlier session when there is one).
  void open(bool isolate) {
    std::string error;
    if (isolate && (!vm_ || vm_->slots() == 0)) {
      try {
        vm_.reset();
        // Rank 0 decides what is queued (MpiOptions::queue_under): the
        // worker's ProcessVM queues behind a task of any length.
        vm_ = std::make_unique<ProcessVM>(std::map<std::string, int>{{world().host, 1}},
                                          ProcessOptions{.queue = worker_queue, .queue_under = 24h});
      } catch (const Error& e) {
        error = e.what();
      }
    }
    isolate_ = isolate;
    send(0, FrameKind::opened, error);
  }

  // begin() runs a call: `queued` says that rank 0 queued it, and hears
  // `started` (with whatever reports wait to go).
  void begin(std::uint64_t task, const Call& call, bool queued) {
    if (queued) {
      Message m;
      m.kind = Message::Kind::started;
      m.task = TaskId(task);
      m.started = clock::now();
      report(std::move(m));
    }
    if (!isolate_) {
      flush();  // the task may run for long: rank 0 hears the reports before it
      InlineChannel channel(*this, task);
      Message m = execute(call, channel);
      flush_output();
      m.task = TaskId(task);
      report(std::move(m));
      return;
    }
    std::optional<TaskId> local;
    std::string why = "the rank has no worker";
    try {
      if (vm_) local = vm_->start(call, std::nullopt);
    } catch (const Error& e) {
      why = e.what();
    }
    if (!local) {
      Message m;
      m.kind = Message::Kind::worker_lost;
      m.task = TaskId(task);
      m.reason = "rank " + std::to_string(world().rank) + " could not run it: " + why;
      m.completed = clock::now();
      report(std::move(m));
      give_back_all();
      return;
    }
    busy_ = true;
    since_ = clock::now();
    task_ = task;
    local_ = *local;
  }

  // feed() gives held calls to the worker (isolate: to start, or to its
  // queue while it has room) or, without isolate, runs the next one; true
  // when it did something.
  bool feed() {
    bool fed = false;
    while (!queued_.empty()) {
      if (!isolate_ || !worker_active()) {
        Queued q = std::move(queued_.front());
        queued_.pop_front();
        begin(q.task, q.call, true);
        fed = true;
        if (!isolate_) break;  // it ran: frames first, then the next
        continue;
      }
      std::optional<TaskId> local;
      try {
        local = vm_->queue(queued_.front().call, std::nullopt);
      } catch (const Error&) {
        // As start() would: the call waits here, and begins (or fails) there.
      }
      if (!local) break;
      passed_.push_back(Passed{queued_.front().task, *local});
      queued_.pop_front();
      fed = true;
    }
    return fed;
  }

  // forward() reports the worker's messages to rank 0: posts, the start
  // of a call passed on to its queue, and endings. A worker that was lost
  // or killed gives back the calls queued behind the task (they never
  // ran): its ProcessVM withdraws those passed on, the rank those it holds.
  void forward(Message m) {
    switch (m.kind) {
      case Message::Kind::started: {
        if (passed_.empty() || passed_.front().local != m.task) return;
        busy_ = true;
        since_ = clock::now();
        task_ = passed_.front().task;
        local_ = m.task;
        passed_.pop_front();
        m.task = TaskId(task_);
        report(std::move(m));
        return;
      }
      case Message::Kind::post:  // the task goes on
        if (!busy_ || m.task != local_) return;
        m.task = TaskId(task_);
        report(std::move(m));
        return;
      case Message::Kind::withdrawn:
        if (auto it = passed(m.task); it != passed_.end()) {
          // Asked back by rank 0, or given back between tasks: said now.
          // Given back because the worker running a task was lost or
          // killed: said with that task's ending, in the same report frame.
          if (it->withdrawing || !busy_) {
            withdrawn(it->task);
          } else {
            returned_.push_back(it->task);
          }
          passed_.erase(it);
        }
        return;
      case Message::Kind::result:
      case Message::Kind::exit:
      case Message::Kind::worker_lost:
        break;
    }
    if (busy_ && m.task == local_) {
      busy_ = false;
      m.task = TaskId(task_);
      const bool killed = m.kind != Message::Kind::result;
      report(std::move(m));
      if (killed) give_back_all();
      return;
    }
    // A call passed on that ended unrun: cancelled while queued (rank 0
    // marked it, and ends it with `exit`), or killed as it began.
    if (auto it = passed(m.task); it != passed_.end()) {
      withdrawn(it->task);
      passed_.erase(it);
    }
  }

  // worker_active() says whether the worker runs a task or holds calls.
  bool worker_active() const { return vm_ && (busy_ || !passed_.empty()); }

  // give_back() takes queued `task` back unrun (`withdrawn`), if it is here.
  void give_back(std::uint64_t task) {
    auto it = std::find_if(queued_.begin(), queued_.end(), [task](const Queued& q) { return q.task == task; });
    if (it == queued_.end()) return;
    queued_.erase(it);
    withdrawn(task);
  }
  void give_back_all() {
    for (std::uint64_t task : returned_) withdrawn(task);
    returned_.clear();
    for (const Queued& q : queued_) withdrawn(q.task);
    queued_.clear();
  }
  void withdrawn(std::uint64_t task) {
    Message m;
    m.kind = Message::Kind::withdrawn;
    m.task = TaskId(task);
    report(std::move(m));
  }

  // report() keeps a message for rank 0; flush() sends what is kept, in
  // one report frame.
  void report(Message m) { out_.push_back(std::move(m)); }
  void flush() {
    if (out_.empty()) return;
    send(0, FrameKind::report, encode_reports(out_));
    out_.clear();
  }

  // next_frame() is a frame an inline task's receive() held, or one that
  // has arrived, if any.
  std::optional<Frame> next_frame() {
    if (std::optional<Frame> f = take_held()) return f;
    if (auto in = poll(0)) return std::move(in->frame);
    return std::nullopt;
  }

  // release() ends the session: a running task is stopped and the calls
  // queued are dropped (what they report too), then rank 0 hears that
  // nothing of the session is left here.
  void release() {
    queued_.clear();
    returned_.clear();
    if (worker_active()) {
      if (busy_) vm_->cancel(local_);
      for (const Passed& p : passed_) vm_->cancel(p.local);
      while (worker_active()) {
        auto m = vm_->receive(-1ns);
        if (m) {
          forward(std::move(*m));
        } else if (vm_->free_slots() == vm_->slots()) {
          break;  // nothing more can come
        }
      }
      busy_ = false;
      passed_.clear();
    }
    out_.clear();
    send(0, FrameKind::released, {});
  }

  // InlineChannel is the channel of a task that runs in the rank itself
  // (without isolate): the rank's loop is inside the task, so receive()
  // polls MPI here, takes the deliver frames of this task, and holds every
  // other frame for the loop. A cancel of this task, or the end of the
  // session, means nothing more can come: receive() returns nullopt.
  class InlineChannel final : public TaskChannel {
   public:
    InlineChannel(Rank& rank, std::uint64_t task)
        : TaskChannel(HostId(world().host), TaskId(task)),
          rank_(rank) {}
    void post(std::string payload) override {
      Message m;
      m.kind = Message::Kind::post;
      m.task = task();
      m.ok = true;
      m.failure = Message::Failure::none;
      m.payload = std::move(payload);
      send(0, FrameKind::report, encode_reports({m}));
    }
    std::optional<std::string> receive() override {
      Backoff wait(true, frame_arrived);
      for (;;) {
        if (ended_) return std::nullopt;
        auto in = poll(0);
        if (!in) {
          wait.pause({}, rings_reach(0));
          continue;
        }
        wait.reset();
        Frame& f = in->frame;
        if (f.kind == FrameKind::deliver) {
          std::uint64_t t = 0;
          std::string bytes;
          decode_task_bytes(f.payload, t, bytes);
          if (t == task().value()) return bytes;
          continue;  // for a task that has ended
        }
        if (f.kind == FrameKind::cancel && decode_task(f.payload) == task().value()) {
          ended_ = true;
          continue;
        }
        if (f.kind == FrameKind::release || f.kind == FrameKind::stop) ended_ = true;
        rank_.held_.push_back(std::move(f));
      }
    }

   private:
    Rank& rank_;
    bool ended_ = false;
  };

  std::optional<Frame> take_held() {
    if (held_.empty()) return std::nullopt;
    Frame f = std::move(held_.front());
    held_.pop_front();
    return f;
  }

  struct Queued {
    std::uint64_t task = 0;
    Call call;
  };
  // A call passed on to the worker's queue: rank 0's id, and the ProcessVM's.
  struct Passed {
    std::uint64_t task = 0;
    TaskId local{};
    bool withdrawing = false;  // rank 0 asked for it back
  };
  std::deque<Passed>::iterator passed(std::uint64_t task) {
    return std::find_if(passed_.begin(), passed_.end(), [task](const Passed& p) { return p.task == task; });
  }
  std::deque<Passed>::iterator passed(const TaskId& local) {
    return std::find_if(passed_.begin(), passed_.end(), [&local](const Passed& p) { return p.local == local; });
  }

  std::unique_ptr<ProcessVM> vm_;
  std::deque<Frame> held_;  // frames an inline task's receive() took for the loop
  std::deque<Queued> queued_;   // calls rank 0 queued behind the running one, held here, in order
  std::deque<Passed> passed_;   // with isolate: those passed on to the worker's queue, in order (before queued_)
  std::vector<std::uint64_t> returned_;  // passed on, given back by a lost or killed worker: said with its task's end
  std::vector<Message> out_;    // reports for the next report frame
  bool isolate_ = true;
  bool busy_ = false;
  std::uint64_t task_ = 0;
  TaskId local_{};
  clock::time_point since_{};
};

}  // namespace

void serve_rank() {
  int status = 0;
  try {
    Rank rank;
    rank.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coop::MpiVM: rank %d stops: %s\n", world().rank, e.what());
    status = 1;
  }
  finish_sends();
  end_job(status);
  std::fflush(nullptr);
  std::exit(status);
}

}  // namespace coop::detail::mpi
