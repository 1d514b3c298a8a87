// thread_vm.hpp: ThreadVM, slots that are threads of this process.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <cos/export.hpp>
#include <cos/vm.hpp>

namespace coop {

// ThreadVM runs remote tasks on worker threads of this process. Calls take
// the same path as on worker processes and MPI ranks (registered by name,
// arguments and results serialized with cereal), so code tested on a ThreadVM
// behaves the same elsewhere; it is the test mode of cos, like Ray's local
// mode. A thread cannot be killed: cancel() and timeouts end the task for the
// scheduler at once, but its slot stays busy until the function returns.
//
// Example:
//   coop::run(main_task, {.vm = std::make_shared<coop::ThreadVM>(4)});
class COS_API ThreadVM : public VM {
 public:
  // n slots on one host named after this machine; n <= 0 is a coop::Error.
  explicit ThreadVM(int n);
  // Named hosts with their slot counts, standing in for several machines.
  explicit ThreadVM(const std::map<std::string, int>& slots_per_host);
  ~ThreadVM() override;

  int slots() const override;
  int free_slots() const override;
  std::vector<HostId> hosts() const override;
  std::vector<HostId> hosts_with_free_slots() const override;
  std::optional<TaskId> start(const Call& call, const std::optional<HostId>& host) override;
  std::optional<Message> receive(std::chrono::nanoseconds timeout) override;
  HostId host_of(const TaskId& task) const override;
  void cancel(const TaskId& task) override;
  void finalize() override;

 private:
  struct Slot {
    HostId host;
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
    std::thread thread;
  };
  void serve(Slot& slot);

  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<HostId> hosts_;
  std::unordered_map<TaskId, Slot*> tasks_;
  std::uint64_t next_task_ = 1;
  int free_ = 0;
  bool finalized_ = false;

  std::mutex inbox_mutex_;
  std::condition_variable done_;
  std::deque<Message> inbox_;  // guarded by inbox_mutex_
};

}  // namespace coop
