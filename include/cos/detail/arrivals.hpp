// arrivals.hpp: Arrivals, a dispatcher's queue of the jobs that have ended.
#pragma once

#include <cstddef>
#include <vector>

#include <cos/detail/core.hpp>
#include <cos/ids.hpp>

namespace coop::detail {

// Arrivals is the dispatcher's completion queue, in the order the jobs end.
// Each job's task gets a DoneHook (watch()) that appends the job's tid when
// the task ends and wakes the dispatcher's waiter. The dispatcher then joins
// exactly that tid: neither side looks at the other jobs in flight, so a job
// costs the same with 2 in flight as with 1,000 (a join over a span of tids
// checks every tid of it, and the core searches that span for each child
// that ends).
//
// The hooks belong to the core until their task ends (or the scheduler
// does), which may be after the dispatcher is gone (it left by an
// exception with jobs in flight). So the queue lives in a block that the
// hooks share with the Arrivals, counted without atomics (everything here
// runs on the scheduler's thread); once the Arrivals is gone a hook queues
// nothing.
class Arrivals {
 public:
  explicit Arrivals(Waiter& wake) : queue_(new Queue(wake)) {}
  ~Arrivals() {
    queue_->wake = nullptr;
    queue_->unref();
  }
  Arrivals(const Arrivals&) = delete;
  Arrivals& operator=(const Arrivals&) = delete;

  // watch(ref, in_flight) queues ref's tid once the calling task's child
  // `ref` ends (at once when it already has). `in_flight` counts the jobs
  // watched and not yet popped, this one included: the queue makes room for
  // them all here, so that a task's end never allocates. Throws what
  // detail::on_done throws, and std::bad_alloc; then nothing is queued.
  void watch(const TaskRef& ref, std::size_t in_flight) {
    queue_->reserve(in_flight);
    on_done(ref, new Hook(*queue_, ref.tid));
  }
  bool empty() const { return queue_->count == 0; }
  // pop() takes the tid of the job that ended first; the queue must not be empty.
  Tid pop() noexcept {
    Queue& q = *queue_;
    Tid tid = q.ring[q.head];
    q.head = (q.head + 1) & (q.ring.size() - 1);
    --q.count;
    return tid;
  }

 private:
  // A ring of tids whose size is a power of two.
  struct Queue {
    explicit Queue(Waiter& w) : wake(&w) {}
    Waiter* wake;  // nullptr once the Arrivals is gone
    std::size_t refs = 1;
    std::vector<Tid> ring;
    std::size_t head = 0;
    std::size_t count = 0;

    void unref() noexcept {
      if (--refs == 0) delete this;
    }
    void reserve(std::size_t n) {
      if (n <= ring.size()) return;
      std::size_t size = ring.empty() ? 16 : ring.size();
      while (size < n) size *= 2;
      std::vector<Tid> bigger(size);
      for (std::size_t i = 0; i < count; ++i) bigger[i] = ring[(head + i) & (ring.size() - 1)];
      ring.swap(bigger);
      head = 0;
    }
    void push(Tid tid) noexcept {
      ring[(head + count) & (ring.size() - 1)] = tid;
      ++count;
      wake->notify();
    }
  };
  struct Hook final : DoneHook {
    Hook(Queue& q, Tid t) : queue(q), tid(t) { ++queue.refs; }
    ~Hook() override { queue.unref(); }
    void fire(const ValueBox&, bool) noexcept override {
      if (queue.wake) queue.push(tid);
    }
    Queue& queue;
    Tid tid;
  };

  Queue* queue_;
};

}  // namespace coop::detail
