// wait.cpp: Backoff and the doorbells (see wait.hpp). No MPI here.
#include "backends/mpi/wait.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace coop::detail::mpi {
namespace {

// Bell is one rank's entry in this machine's shared page: its pid (non-zero
// once it opened its doorbell: the rank is on this machine) and whether it
// naps now (then a sender rings it). One cache line each.
struct alignas(64) Bell {
  std::atomic<int> pid;
  std::atomic<int> napping;
};
static_assert(std::atomic<int>::is_always_lock_free);

struct Doorbells {
  int fd = -1;  // this rank's doorbell, also the socket rings go out of
  int rank = -1;
  std::string token;
  Bell* bells = nullptr;  // by rank, shared by the ranks of this machine
  int size = 0;
};
Doorbells& state() {
  static Doorbells b;
  return b;
}

std::string shared_name(const std::string& token) { return "/cos-mpi-" + token; }

// address() is the abstract socket address of `rank`'s doorbell.
socklen_t address(int rank, sockaddr_un& a) {
  std::memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  std::string name = "cos-mpi-" + state().token + "-" + std::to_string(rank);
  std::size_t n = std::min(name.size(), sizeof a.sun_path - 1);
  std::memcpy(a.sun_path + 1, name.data(), n);  // sun_path[0] == 0: abstract
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
}

// drain() empties the doorbell after it rang.
void drain(int fd) {
  char buf[64];
  while (::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
}

Bell* bell(int rank) {
  Doorbells& b = state();
  if (!b.bells || rank < 0 || rank >= b.size) return nullptr;
  return &b.bells[rank];
}

}  // namespace

void Backoff::pause(std::optional<clock::time_point> deadline, bool rung) {
  auto now = clock::now();
  auto waited = now - idle_since_;
  if (spin_ && waited < spin_for) {  // spin: the answer is probably microseconds away
    ::sched_yield();
    return;
  }
  Doorbells& b = state();
  Bell* mine = bell(b.rank);
  rung = rung && mine && b.fd >= 0;
  std::chrono::nanoseconds nap =
      rung ? std::chrono::nanoseconds(longest_rung_nap)
           : std::clamp<std::chrono::nanoseconds>(waited / nap_fraction, first_nap, longest_nap);
  if (deadline) nap = std::min<std::chrono::nanoseconds>(nap, std::max<std::chrono::nanoseconds>(*deadline - now, 0ns));
  if (nap <= 0ns) return;
  if (saved_slack_ < 0) {
    saved_slack_ = ::prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    ::prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0);
  }
  timespec ts{static_cast<time_t>(nap.count() / 1'000'000'000), static_cast<long>(nap.count() % 1'000'000'000)};
  if (b.fd < 0) {
    while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    return;
  }
  // Say that this process naps, then look once more: a sender that wrote
  // before it could see the flag is caught by the look, one after rings.
  if (mine) mine->napping.store(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (arrived_ && arrived_()) {
    if (mine) mine->napping.store(0, std::memory_order_relaxed);
    idle_since_ = clock::now();
    spin_ = true;
    return;
  }
  pollfd p{b.fd, POLLIN, 0};
  int n = ::ppoll(&p, 1, &ts, nullptr);
  if (mine) mine->napping.store(0, std::memory_order_relaxed);
  if (n > 0) {
    drain(b.fd);
    // Rung: the frame is there, or microseconds away; spin again.
    idle_since_ = clock::now();
    spin_ = true;
  }
}

Backoff::~Backoff() {
  if (saved_slack_ > 0) ::prctl(PR_SET_TIMERSLACK, saved_slack_, 0, 0, 0);
}

void Backoff::reset() { idle_since_ = clock::now(); }

void open_doorbell(const std::string& token, int rank, int size) {
  Doorbells& b = state();
  b.token = token;
  b.rank = rank;
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;  // no doorbell: waits nap, as for ranks of other machines
  sockaddr_un a;
  socklen_t len = address(rank, a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) {
    ::close(fd);
    return;
  }
  // The ranks of this machine share a page of flags (one per rank). Every
  // rank opens it (the first creates it, zeroed) before forget_doorbell_name().
  int shm = ::shm_open(shared_name(token).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  std::size_t bytes = sizeof(Bell) * static_cast<std::size_t>(size);
  void* page = MAP_FAILED;
  if (shm >= 0) {
    if (::ftruncate(shm, static_cast<off_t>(bytes)) == 0) {
      page = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
    }
    ::close(shm);
  }
  if (page == MAP_FAILED) {
    ::close(fd);
    return;
  }
  b.fd = fd;
  b.bells = static_cast<Bell*>(page);
  b.size = size;
  b.bells[rank].pid.store(static_cast<int>(::getpid()));
}

void forget_doorbell_name(const std::string& token) { ::shm_unlink(shared_name(token).c_str()); }

void ring(int rank) {
  Doorbells& b = state();
  Bell* their = bell(rank);
  if (b.fd < 0 || !their) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the frame sent before, the flag read after
  if (!their->napping.load(std::memory_order_seq_cst)) return;
  sockaddr_un a;
  socklen_t len = address(rank, a);
  char byte = 0;
  ::sendto(b.fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&a), len);
}

bool rings_reach(int rank) {
  Bell* their = bell(rank);
  return their && state().fd >= 0 && their->pid.load(std::memory_order_relaxed) != 0;
}

}  // namespace coop::detail::mpi
