// wait.hpp: how the MPI backend waits without spinning in MPI's progress
// loop (MPI's blocking calls spin): a Backoff that polls, then naps, and a
// doorbell per rank, so that a rank on the same machine wakes the one it
// sent a frame to at once instead of letting it nap on.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <cos/timing.hpp>

namespace coop::detail::mpi {

using namespace std::chrono_literals;

// A waiting process polls for `spin_for` after it last had something to
// do, yielding the core after each poll that found nothing (sched_yield: a
// no-op with a core to itself; with more processes than cores it hands the
// core to the one whose reply it waits for): a reply usually comes within
// microseconds. Then it naps between polls. While it
// waits for ranks of this machine only, it naps in poll() on its doorbell
// (at most `longest_rung_nap`, as a safeguard): a rank that sends it a frame
// rings it, so it wakes at once and costs nothing meanwhile. Otherwise it
// naps for a twentieth of the time it has waited so far, from `first_nap`
// to `longest_nap`: a reply is seen at most about 5% late, and a long wait
// wakes 1000 times a second (about 1% of a core). While it naps, the
// thread's timer slack is 1 µs instead of the kernel's 50 µs (restored
// after), so that short naps stay short.
inline constexpr auto spin_for = 100us;
inline constexpr auto first_nap = 5us;
inline constexpr auto longest_nap = 1ms;
inline constexpr auto longest_rung_nap = 50ms;
inline constexpr int nap_fraction = 20;

// Backoff paces one wait: call pause() after each poll that found nothing.
class Backoff {
 public:
  // Without `spin`, a wait naps from the start (waits known to be long).
  // `arrived` polls for a frame without taking it (MPI_Iprobe): a nap on
  // the doorbell looks once more after it said that it naps.
  explicit Backoff(bool spin = true, bool (*arrived)() = nullptr) : spin_(spin), arrived_(arrived) {}
  ~Backoff();
  Backoff(const Backoff&) = delete;
  Backoff& operator=(const Backoff&) = delete;
  // pause() spins or naps (never past `deadline`, when given); a ring of
  // this process's doorbell ends a nap at once. `rung`: every rank waited
  // for is on this machine (see rings_reach).
  void pause(std::optional<clock::time_point> deadline = {}, bool rung = false);
  // reset() starts over (something happened).
  void reset();

 private:
  clock::time_point idle_since_ = clock::now();
  long saved_slack_ = -1;  // the thread's timer slack before the first nap
  bool spin_ = true;
  bool (*arrived_)() = nullptr;
};

// open_doorbell() opens this rank's doorbell: an abstract Unix datagram
// socket named after the job's `token` and the rank (it exists only on this
// machine, and vanishes with the process), and this machine's page of
// flags that say which of its ranks nap now (POSIX shared memory named
// after the token). Every rank calls it, then the job waits for all (a
// barrier), then each calls forget_doorbell_name(), so that the page's name
// is gone while the ranks still share it (nothing is left in /dev/shm).
void open_doorbell(const std::string& token, int rank, int size);
void forget_doorbell_name(const std::string& token);
// ring() wakes `rank` if it is on this machine and naps (a datagram to its
// doorbell; never blocks). Call it after a send to that rank.
void ring(int rank);
// rings_reach() says whether `rank` is on this machine (has a doorbell here).
bool rings_reach(int rank);

}  // namespace coop::detail::mpi
