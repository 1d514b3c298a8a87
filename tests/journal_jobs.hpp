// journal_jobs.hpp: the job that the journal tests dispatch, shared by the
// test program and the child program that they kill mid-dispatch. Each run
// appends its index to a side file (one line per run, O_APPEND, so worker
// processes and threads may append at once), which counts the runs.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include <cos/dispatch.hpp>

namespace journal_test {

// with_journal(path) is DispatchOptions with that journal. (A designated
// initializer of DispatchOptions trips GCC 12's -Wmaybe-uninitialized on
// the optional inside its Spawn.)
inline coop::DispatchOptions with_journal(const std::string& path) {
  coop::DispatchOptions o;
  o.journal = path;
  return o;
}

// square(i, side, ms) records a run of job i in `side`, works `ms`
// milliseconds, and returns i * i.
inline long square(int i, std::string side, int ms) {
  int fd = ::open(side.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    std::string line = std::to_string(i) + "\n";
    [[maybe_unused]] ssize_t n = ::write(fd, line.data(), line.size());
    ::close(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<long>(i) * i;
}

// flaky(i, side, fail) is square(i, side, 1), except that job 1 throws
// while the file `fail` exists.
inline long flaky(int i, std::string side, std::string fail) {
  long v = square(i, side, 1);
  if (i == 1 && std::ifstream(fail)) throw std::runtime_error("job 1 failed");
  return v;
}

// runs(side) counts the runs of each index recorded in a side file.
inline std::map<int, int> runs(const std::string& side) {
  std::map<int, int> n;
  std::ifstream in(side);
  int i;
  while (in >> i) ++n[i];
  return n;
}

}  // namespace journal_test
