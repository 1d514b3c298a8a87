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
// Pipelining (rank 0's VM::queue): `queue` frames bring calls that the rank
// holds behind its running task, in order, and begins the moment that task
// ends (with isolate it feeds them to its worker one at a time). It tells
// rank 0 `started` in the same report frame as the result before it: every
// report of one turn of the loop goes out as one MPI message. Before a
// queued call begins, the rank takes in every frame that has arrived, so a
// `withdraw` (or a `cancel`) of it that is there gives it back unrun
// (`withdrawn`). When the worker is lost or killed (a crash, a cancel, a
// timeout), the calls queued behind its task are given back too.
#include <sched.h>

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

class Rank {
 public:
  // run() serves until rank 0 says stop.
  void run() {
    Backoff idle(true, frame_arrived);
    for (;;) {
      bool acted = false;
      if (busy_ && vm_) {
        const bool spin = clock::now() - since_ < busy_spin_for;
        if (auto m = vm_->receive(spin ? 0ns : std::chrono::nanoseconds(busy_wait))) {
          forward(std::move(*m));
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
        if (++misses >= 2 || busy_ || queued_.empty()) break;
      }
      if (!busy_ && !queued_.empty()) {
        Queued q = std::move(queued_.front());
        queued_.pop_front();
        begin(q.task, q.call, true);
        acted = true;
      }
      // A result that a queued call follows goes with its `started`, next turn.
      if (busy_ || queued_.empty()) flush();
      if (acted) {
        idle.reset();
      } else if (!busy_) {
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
        if (busy_ || !queued_.empty()) {
          throw FrameError("coop::MpiVM: rank " + std::to_string(world().rank) +
                           " got a call while it runs or holds others (rank 0 sends calls to idle ranks only)");
        }
        begin(task, call, false);
        return true;
      }
      case FrameKind::queue: {
        Queued q;
        decode_call(f.payload, q.task, q.call);
        // A rank that is idle by now (its result is on the way) begins it
        // at once, after the frames that came with it.
        queued_.push_back(std::move(q));
        return true;
      }
      case FrameKind::withdraw:
        give_back(decode_task(f.payload));  // not here: it began (rank 0 has its `started`)
        return true;
      case FrameKind::cancel: {
        std::uint64_t task = decode_task(f.payload);
        if (busy_ && vm_ && task == task_) {
          vm_->cancel(local_);  // its `exit` gives back the calls queued behind it
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
        vm_ = std::make_unique<ProcessVM>(std::map<std::string, int>{{world().host, 1}});
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
      std::cout.flush();
      std::fflush(nullptr);
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

  // forward() reports the worker's messages to rank 0: posts, and the
  // ending of its task. A worker that was lost or killed gives back the
  // calls queued behind the task (they never ran).
  void forward(Message m) {
    if (m.kind == Message::Kind::started || m.task != local_) return;
    m.task = TaskId(task_);
    if (m.kind == Message::Kind::post) {  // the task goes on
      report(std::move(m));
      return;
    }
    busy_ = false;
    const bool killed = m.kind != Message::Kind::result;
    report(std::move(m));
    if (killed) give_back_all();
  }

  // give_back() takes queued `task` back unrun (`withdrawn`), if it is here.
  void give_back(std::uint64_t task) {
    auto it = std::find_if(queued_.begin(), queued_.end(), [task](const Queued& q) { return q.task == task; });
    if (it == queued_.end()) return;
    queued_.erase(it);
    withdrawn(task);
  }
  void give_back_all() {
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

  // release() ends the session: a running task is stopped and its ending
  // dropped, then rank 0 hears that nothing of the session is left here.
  void release() {
    queued_.clear();
    out_.clear();
    if (busy_ && vm_) {
      vm_->cancel(local_);
      while (busy_) {
        auto m = vm_->receive(-1ns);
        if (!m) break;
        if (m->kind != Message::Kind::started && m->kind != Message::Kind::post && m->task == local_) busy_ = false;
      }
      busy_ = false;
    }
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

  std::unique_ptr<ProcessVM> vm_;
  std::deque<Frame> held_;  // frames an inline task's receive() took for the loop
  std::deque<Queued> queued_;   // calls rank 0 queued behind the running one, in order
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
