// mpi_vm.hpp: MpiVM, slots that are the ranks of an MPI job (OpenMPI), and
// the questions a program asks about the job it runs in.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <cos/export.hpp>
#include <cos/vm.hpp>

namespace coop {

// MpiOptions says how an MpiVM runs its tasks.
struct MpiOptions {
  // isolate: each rank runs its task in a worker process of its own (the
  // same program, started as ProcessVM starts one, never calling MPI): a
  // crash, a hang past the task's timeout or a cancel costs that task (a
  // `worker_lost` or `exit` message), never the rank, which starts a new
  // worker. Without it a task runs inside its rank: fastest, but a task
  // that crashes ends the whole MPI job (mpirun kills every rank), and a
  // running task cannot be stopped (a timeout or cancel ends its Task at
  // once, the slot comes back when the function returns, as on ThreadVM).
  bool isolate = true;
  // ranks: the worker ranks this VM uses (each in 1..mpi_size()-1, no
  // repeats, none that another live MpiVM holds), in slot order; nullopt
  // means every worker rank that no other live MpiVM holds. For programs
  // that give parts of a job to different VMs, and for tests.
  std::optional<std::vector<int>> ranks{};
  // queue: calls a busy rank may hold behind the one it runs (VM::queue),
  // so that it starts the next one without waiting a round trip to rank 0;
  // 0 turns pipelining off. As ProcessOptions::queue: the scheduler queues
  // only when more remote tasks wait than slots are free, and a rank holds
  // about queue_under of work at most (at least one call).
  int queue = 16;
  // queue_under: pipelining applies only while the VM's recent tasks took
  // less than this (a moving average of their run times), and only behind
  // a task that has run for less than this so far, as
  // ProcessOptions::queue_under.
  std::chrono::nanoseconds queue_under = std::chrono::milliseconds(1);
};

// MpiVM runs remote tasks on the ranks 1..n-1 of the MPI job that started
// this program (`mpirun -n N prog` or `srun`), one task per rank at a time;
// rank 0 is the spawner. The same binary runs with ProcessVM on a laptop.
//
// coop::init(argc, argv) is the first line of main, as for ProcessVM: under
// mpirun it initialises MPI; on ranks 1..n-1 it never returns (the rank
// serves tasks until rank 0's program ends, then exits with status 0); on
// rank 0 it returns, and MPI is finalized when the program exits (after the
// ranks were told to stop, so mpirun returns 0). A program not started by
// a launcher never initialises MPI.
//
// The ranks serve for the life of rank 0's program; an MpiVM is a session
// over some of them (several may be alive at once on different ranks, or
// one after another; a rank serves one session at a time). Hosts are MPI_Get_processor_name of each rank, overridden by the
// environment variable COS_HOST of that rank (mpirun's MPMD form lets one
// machine stand in for several: `mpirun -n 1 prog : -n 2 -x COS_HOST=a prog`).
//
// Short tasks are pipelined as on ProcessVM (MpiOptions::queue, VM::queue):
// a busy rank holds calls behind its task and begins the next as soon as
// that ends, so it does not wait a round trip to rank 0; it says `started`
// in the same MPI message as the result before it. With isolate it hands
// them on to its worker's own queue, so the worker does not wait for the
// rank either.
//
// Waiting costs no core: rank 0 in receive() and an idle rank poll MPI
// without blocking (MPI's blocking calls spin) for 50 µs, then sleep
// between polls for a twentieth of the time waited so far, at most 1 ms:
// a reply is seen at most about 5% late, and a long wait wakes 1000 times a
// second. A rank whose worker runs a task waits in poll() on the worker.
//
// When rank 0 dies or is killed, mpirun ends every rank, and each rank's
// workers end with it (they are tied to it as ProcessVM's are to their
// spawner), so nothing is left running.
//
// Not thread-safe: use it from one thread (the scheduler's).
//
// Example (run with `mpirun -n 5 ./prog`):
//   int main(int argc, char** argv) {
//     coop::init(argc, argv);
//     auto vm = coop::under_mpi() ? std::shared_ptr<coop::VM>(std::make_shared<coop::MpiVM>())
//                                 : std::make_shared<coop::ProcessVM>(4);
//     coop::run([] { ... }, coop::Options{.vm = vm});
//   }
class COS_API MpiVM final : public VM {
 public:
  // MpiVM(options) opens a session over the worker ranks: it tells each to
  // get ready (with isolate, to start its worker process) and blocks until
  // all are, at most the worker start timeout (10 s, COS_WORKER_START_TIMEOUT).
  // Throws coop::Error outside mpirun ("start it with mpirun -n N"), with
  // one rank only, on a rank other than 0, when coop::init was not called,
  // for a bad `ranks` list (or a rank that another live MpiVM holds), when a rank
  // cannot start its worker, or in a build without MPI (COS_WITH_MPI=OFF).
  explicit MpiVM(MpiOptions options = {});
  // The destructor finalizes (and blocks as finalize() does).
  ~MpiVM() override;
  MpiVM(const MpiVM&) = delete;
  MpiVM& operator=(const MpiVM&) = delete;

  // slots() is the number of ranks in the session; free_slots() those
  // without a task. Never block.
  int slots() const override;
  int free_slots() const override;
  // hosts() in name order; hosts_with_free_slots() those with an idle rank.
  std::vector<HostId> hosts() const override;
  std::vector<HostId> hosts_with_free_slots() const override;
  // start() sends `call` to an idle rank (of `host`, if given) with a
  // non-blocking send and returns the task's id, or nullopt when none is
  // free. Throws coop::Error for an unknown host, a call larger than
  // 256 MiB, or after finalize().
  std::optional<TaskId> start(const Call& call, const std::optional<HostId>& host) override;
  // queue() sends `call` to a busy rank (of `host`, if given) that holds
  // fewer than MpiOptions::queue calls behind its task, the one with the
  // fewest, and returns the task's id, or nullopt when none has room. The
  // rank keeps its queued calls itself (with isolate it feeds its worker
  // one call at a time) and starts the next as soon as the running task
  // ends; it tells rank 0 `started` in the same MPI message as the result
  // before it. withdraw() asks the rank to give a call back, answered with
  // `withdrawn` (or, when it had begun, by nothing more than `started`).
  // When a rank's worker is lost, or killed by a cancel or a timeout
  // (isolate), the calls queued behind it are withdrawn; without isolate a
  // cancelled task runs on and they run after it. cancel() of a queued call
  // ends it with `exit` (without running it, unless it began meanwhile:
  // then it is stopped as a running task). Only behind a task that has run
  // for less than MpiOptions::queue_under so far, and not behind one marked
  // with runs_long(). Throws as start() does.
  std::optional<TaskId> queue(const Call& call, const std::optional<HostId>& host) override;
  void runs_long(const TaskId& task) override;
  void withdraw(const TaskId& task) override;
  int queue_capacity() const override;
  int queue_room() const override;
  std::vector<HostId> hosts_with_queue_room() const override;
  // receive() waits up to `timeout` for the next message from a rank:
  // `result`, `exit` (cancelled) or `worker_lost` (with isolate, the
  // rank's worker died; the rank has started another, so the slot is free),
  // and for queued calls `started` and `withdrawn`.
  // Zero only polls; a negative timeout waits until a message arrives but
  // returns nullopt at once when no task runs.
  std::optional<Message> receive(std::chrono::nanoseconds timeout) override;
  // host_of() is the host a task was started on; throws coop::Error for an
  // id this VM never gave out.
  HostId host_of(const TaskId& task) const override;
  // cancel() asks the rank running `task` to stop it. With isolate the
  // rank kills the worker (and every process the task started) and starts
  // another; an `exit` message follows. Without isolate the task runs on
  // to its end and its result comes back as an `exit` message. A queued
  // call is given back unrun (see queue()). Never blocks. Does nothing for
  // a task that has ended.
  void cancel(const TaskId& task) override;
  // send() gives bytes to a running task (remote objects, spawner calls):
  // a frame to its rank, which hands them to the worker (isolate) or to the
  // task's receive() in the rank. Never blocks; dropped for a task that is
  // not running.
  void send(const TaskId& task, std::string payload) override;
  // finalize() ends the session: running tasks are stopped (with isolate,
  // their workers killed), messages not yet received are dropped, and the
  // ranks are free for the next MpiVM. Blocks until every rank has
  // confirmed (with isolate, milliseconds), at most 2 s
  // (COS_FINALIZE_TIMEOUT): without isolate a running task cannot be
  // stopped; such a rank is named on stderr and given back as it is (it
  // serves again when the task returns, and the job's end waits for it).
  // Idempotent.
  void finalize() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// under_mpi() is true when this program was started by an MPI launcher
// (mpirun, mpiexec, srun with PMI/PMIx), as its environment tells, and cos
// was built with MPI; it never initialises MPI to find out. False in a
// worker process of a rank.
COS_API bool under_mpi();
// mpi_rank() is this process's rank in the job (0 outside one);
// mpi_size() the number of ranks (1 outside one).
COS_API int mpi_rank();
COS_API int mpi_size();
// mpi_rank_hosts() is the host of each rank of the job, indexed by rank, as
// MpiVM names them (COS_HOST, or the processor name); empty outside a job.
// Known on rank 0 after coop::init.
COS_API std::vector<std::string> mpi_rank_hosts();

}  // namespace coop
