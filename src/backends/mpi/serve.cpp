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
      if (busy_ && vm_) {
        const bool spin = clock::now() - since_ < busy_spin_for;
        if (auto m = vm_->receive(spin ? 0ns : std::chrono::nanoseconds(busy_wait))) {
          forward(std::move(*m));
          idle.reset();  // rank 0 answers a report within microseconds: spin first
        } else if (spin) {
          ::sched_yield();
        }
      }
      std::optional<Frame> f = take_held();
      if (!f) {
        if (auto in = poll(0)) f = std::move(in->frame);
      }
      if (!f) {
        if (!busy_) idle.pause({}, rings_reach(0));
        continue;
      }
      if (!handle(*f)) return;
      idle.reset();  // after the frame's work (a task without isolate) and its report
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
        start(task, call);
        return true;
      }
      case FrameKind::cancel:
        if (busy_ && vm_ && decode_task(f.payload) == task_) vm_->cancel(local_);
        return true;
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

  void start(std::uint64_t task, const Call& call) {
    if (!isolate_) {
      InlineChannel channel(*this, task);
      Message m = execute(call, channel);
      std::cout.flush();
      std::fflush(nullptr);
      m.task = TaskId(task);
      send(0, FrameKind::report, encode_report(m));
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
      send(0, FrameKind::report, encode_report(m));
      return;
    }
    busy_ = true;
    since_ = clock::now();
    task_ = task;
    local_ = *local;
  }

  // forward() sends the ending of the worker's task to rank 0.
  void forward(Message m) {
    if (m.kind == Message::Kind::started || m.task != local_) return;
    m.task = TaskId(task_);
    if (m.kind == Message::Kind::post) {  // the task goes on
      send(0, FrameKind::report, encode_report(m));
      return;
    }
    busy_ = false;
    send(0, FrameKind::report, encode_report(m));
  }

  // release() ends the session: a running task is stopped and its ending
  // dropped, then rank 0 hears that nothing of the session is left here.
  void release() {
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
      send(0, FrameKind::report, encode_report(m));
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

  std::unique_ptr<ProcessVM> vm_;
  std::deque<Frame> held_;  // frames an inline task's receive() took for the loop
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
