// crash_function.cpp: cos_test::crash, the remote function that both
// backend test programs use to make a worker die.
#include <sys/resource.h>

#include <csignal>
#include <cstdlib>
#include <string>

#include <cos/remote.hpp>

#include "test_support.hpp"

namespace cos_test {

int crash(std::string how) {
  rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
  if (how == "abort") std::abort();
  if (how == "segv") std::raise(SIGSEGV);
  if (how == "exit3") std::_Exit(3);
  if (how == "kill9") std::raise(SIGKILL);
  return -1;
}

}  // namespace cos_test

COS_REMOTE(cos_test::crash);
