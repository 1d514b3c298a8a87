// output_counts.cpp: the page of OutputCounts (see output_counts.hpp).
#include "backends/process/output_counts.hpp"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <sched.h>

#include <cerrno>
#include <new>

#include <cos/errors.hpp>

#include "posix/fd.hpp"

namespace coop::detail::process {

int open_output_counts(OutputCounts** counts) {
  int fd = ::memfd_create("cos-output-counts", MFD_CLOEXEC);
  if (fd < 0) throw Error(posix::errno_text("coop::ProcessVM: memfd_create"));
  void* page = MAP_FAILED;
  if (::ftruncate(fd, sizeof(OutputCounts)) == 0) {
    page = ::mmap(nullptr, sizeof(OutputCounts), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  if (page == MAP_FAILED) {
    int e = errno;
    ::close(fd);
    errno = e;
    throw Error(posix::errno_text("coop::ProcessVM: cannot map the output counts"));
  }
  *counts = new (page) OutputCounts;
  return fd;
}

void close_output_counts(OutputCounts*& counts) {
  if (!counts) return;
  ::munmap(counts, sizeof(OutputCounts));
  counts = nullptr;
}

const OutputCounts* map_output_counts(int fd) {
  void* page = ::mmap(nullptr, sizeof(OutputCounts), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  return page == MAP_FAILED ? nullptr : static_cast<const OutputCounts*>(page);
}

namespace {

std::uint64_t unread(int fd) {
  int n = 0;
  if (::ioctl(fd, FIONREAD, &n) != 0 || n < 0) return 0;
  return static_cast<std::uint64_t>(n);
}

}  // namespace

OutputCut output_cut(const OutputCounts* c, int out, int err) {
  // A read of the spawner takes a microsecond or two; one that waits longer
  // was preempted (or the spawner is stopped): yield the core to it first,
  // then nap, so that a stopped spawner costs this worker nothing.
  for (int tries = 0;; ++tries) {
    const std::uint64_t before = c->seq.load(std::memory_order_seq_cst);
    if ((before & 1) == 0) {
      OutputCut cut;
      cut.at[0] = unread(out);
      cut.at[1] = unread(err);
      cut.at[0] += c->taken[0].load(std::memory_order_seq_cst);
      cut.at[1] += c->taken[1].load(std::memory_order_seq_cst);
      if (c->seq.load(std::memory_order_seq_cst) == before) return cut;
    }
    if (tries < 64) {
      ::sched_yield();
    } else {
      timespec nap{0, 50'000};
      ::nanosleep(&nap, nullptr);
    }
  }
}

}  // namespace coop::detail::process
