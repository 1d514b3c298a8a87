// Joins, shutdown, and the seam to the remote layer: the parts of the core
// that tasks ask for rather than the switching and the loop (engine.cpp).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include <cos/errors.hpp>

#include "core/engine.hpp"
#include "posix/text.hpp"

namespace coop::detail {

TaskInfo Engine::info_of(const TaskRef& ref) const {
  TaskInfo info;
  if (ref.serial != serial_ || ref.rec->tid != ref.tid || ref.rec->released) {
    info.done = true;  // joined (or its scheduler is gone)
    return info;
  }
  info = record_info(ref.rec);
  return info;
}

TaskInfo Engine::record_info(const TaskRecord* r) const {
  TaskInfo info;
  info.remote = r->external != nullptr;
  info.done = r->state == State::finished;
  if (r->external) r->external->describe(info);
  return info;
}

void Engine::join_error(Tid tid, const TaskRecord* rec) const {
  if (tid == scheduler_tid) throw Error("coop::join: task 0 is the scheduler; it cannot be joined");
  if (tid == main_tid) throw Error("coop::join: task 1 is the main task; it cannot be joined");
  if (!rec) {
    if (tid > main_tid && tid < next_tid_) {
      throw Error("coop::join: " + task_name(tid) + " was already joined");
    }
    throw Error("coop::join: there is no " + task_name(tid));
  }
  throw Error("coop::join: " + task_name(tid) + " is not a child of " + task_name(current_->tid) +
              " (only its parent, " + task_name(rec->parent->tid) + ", may join it)");
}

TaskRecord* Engine::join_task(const TaskRef& ref) {
  TaskRecord* rec = ref.rec;
  if (ref.serial != serial_) throw Error("Task::join: the task belongs to another scheduler");
  if (rec->tid != ref.tid || rec->released) join_error(ref.tid, nullptr);
  if (rec->parent != current_) join_error(ref.tid, rec);
  if (rec->state == State::finished) {
    current_->finished.erase(*rec);
  } else {
    current_->among = &ref.tid;
    current_->among_n = 1;
    block(WaitKind::join);
    current_->woken_by = nullptr;
  }
  return rec;
}

TaskRecord* Engine::join_among(std::span<const Tid> among, Wait wait) {
  TaskRecord* self = current_;
  TaskRecord* best = nullptr;
  if (among.empty()) {
    if (self->live_children == 0 && self->finished.empty()) return nullptr;
    if (!self->finished.empty()) best = &static_cast<TaskRecord&>(self->finished.oldest());
  } else {
    for (Tid tid : among) {
      TaskRecord* rec = tid > main_tid ? table_.find(tid) : nullptr;
      if (!rec) join_error(tid, nullptr);
      if (rec->parent != self) join_error(tid, rec);
      if (rec->state == State::finished && (!best || rec->tid < best->tid)) best = rec;
    }
  }
  if (best) {
    self->finished.erase(*best);
    return best;
  }
  if (wait == Wait::poll) return nullptr;
  self->among = among.data();
  self->among_n = among.size();
  block(WaitKind::join);
  return std::exchange(self->woken_by, nullptr);
}

// ---- callbacks -------------------------------------------------------------

void Engine::start_detached(TaskRecord* rec, bool now) {
  rec->tid = next_tid_++;
  rec->parent = &main_;
  rec->detached = true;
  table_.insert(rec->tid, rec);
  ++live_;
  if (now && current_ != &loop_) {
    current_->state = State::ready;
    ready_.push_front(current_);
    switch_to(rec);
  } else {
    wake(rec);
  }
}

void Engine::on_done(const TaskRef& ref, DoneHook* hook) {
  std::unique_ptr<DoneHook> owned(hook);
  if (ref.tid == invalid_tid) throw Error("Task::on_done: the handle is invalid (the spawn found no slot)");
  if (ref.serial != serial_) throw Error("Task::on_done: the task belongs to another scheduler");
  TaskRecord* rec = ref.rec;
  if (rec->tid != ref.tid || rec->released) throw Error("Task::on_done: " + task_name(ref.tid) + " was already joined");
  if (rec->parent != current_) {
    throw Error("Task::on_done: " + task_name(ref.tid) + " is not a child of " + task_name(current_->tid));
  }
  if (rec->state == State::finished) {
    owned->fire(rec->value, true);
    return;
  }
  DoneHook** tail = &rec->done_hooks;
  while (*tail) tail = &(*tail)->next;
  *tail = owned.release();
}

// ---- waiting without joining --------------------------------------------

int Engine::wait_any(const TaskRef* refs, std::size_t n, const clock::time_point* deadline) {
  TaskRecord* self = current_;
  std::vector<Tid> pending;
  for (;;) {
    int best = -1;
    Tid best_tid = 0;
    pending.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const TaskRef& ref = refs[i];
      if (ref.tid == invalid_tid) throw Error("coop::wait: a handle is invalid (its spawn found no slot)");
      if (ref.serial != serial_) throw Error("coop::wait: a task belongs to another scheduler");
      TaskRecord* rec = ref.rec;
      bool ended = rec->tid != ref.tid || rec->released;  // joined: it had ended
      if (!ended) {
        if (rec->parent != self) {
          throw Error("coop::wait: " + task_name(ref.tid) + " is not a child of " + task_name(self->tid) +
                      " (only its parent, " + task_name(rec->parent->tid) + ", may wait for it)");
        }
        ended = rec->state == State::finished;
      }
      if (ended && (best < 0 || ref.tid < best_tid)) {
        best = static_cast<int>(i);
        best_tid = ref.tid;
      } else if (!ended) {
        pending.push_back(ref.tid);
      }
    }
    if (best >= 0 || pending.empty()) return best;
    if (deadline && clock::now() >= *deadline) return -1;
    self->among = pending.data();
    self->among_n = pending.size();
    if (deadline) timers_.push(Timer{*deadline, timer_seq_++, self, self->tid, nullptr, nullptr, ++self->wait_seq});
    block(WaitKind::watch);
    self->among = nullptr;
    self->among_n = 0;
  }
}

// ---- shutdown ------------------------------------------------------------

void Engine::drain() {
  if (current_ != &main_) throw Error("coop::Scheduler::drain: only the main task (tid 1) may drain");
  if (live_ > 1 && events_) events_->draining(live_ - 1);
  while (live_ > 1) block(WaitKind::drain);
  // The main task's children that nobody joined can never be joined now.
  while (!main_.finished.empty()) {
    auto& c = static_cast<TaskRecord&>(main_.finished.oldest());
    main_.finished.erase(c);
    drop(&c);
  }
  report_lost();
}

void Engine::report_lost() noexcept {
  std::sort(lost_.begin(), lost_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [tid, error] : lost_) {
    std::string what;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = posix::demangle(typeid(e)) + ": " + e.what();
    } catch (...) {
      what = "an exception of a type not derived from std::exception";
    }
    std::fprintf(stderr, "cos: %s ended with an exception that no join collected: %s\n",
                 task_name(tid).c_str(), what.c_str());
  }
  lost_.clear();
}

// ---- the seam to the remote layer -----------------------------------------

TaskRecord* Engine::add_external(External* external, bool detached) {
  TaskRecord* rec = new_record();
  rec->external = external;
  rec->tid = next_tid_++;
  if (detached) {
    rec->parent = &main_;
    rec->detached = true;
  } else {
    rec->parent = current_;
    ++current_->live_children;
  }
  table_.insert(rec->tid, rec);
  ++live_;
  rec->state = State::blocked;  // never on the ready queue
  return rec;
}

void Engine::remove_external(TaskRecord* rec) noexcept {
  table_.erase(rec->tid);
  if (rec->tid == next_tid_ - 1) --next_tid_;
  if (!rec->detached) --rec->parent->live_children;
  --live_;
  recycle(rec);
}

void Engine::end_external(TaskRecord* rec, std::exception_ptr error) {
  if (error) rec->value.set_error(std::move(error));
  ended(rec);
}

bool Engine::cancel(const TaskRef& ref) {
  if (ref.serial != serial_) throw Error("Task::cancel: the task belongs to another scheduler");
  TaskRecord* rec = ref.rec;
  if (rec->tid != ref.tid || rec->released) return false;  // joined: it had ended
  if (rec->parent != current_) {
    throw Error("Task::cancel: " + task_name(ref.tid) + " is not a child of " + task_name(current_->tid));
  }
  if (rec->state == State::finished) return false;
  if (!rec->external) throw Error("Task::cancel: only remote tasks can be cancelled");
  rec->external->cancel(rec);
  return true;
}

}  // namespace coop::detail
