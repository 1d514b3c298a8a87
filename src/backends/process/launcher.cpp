// launcher.cpp: the keeper launcher of this process (launcher.hpp), and
// waitpid through it.
#include "backends/process/launcher.hpp"

#include <sys/wait.h>

#include <cerrno>

namespace coop::detail::process {
namespace {

KeeperLauncher* the_launcher = nullptr;

}  // namespace

void set_keeper_launcher(KeeperLauncher* launcher) { the_launcher = launcher; }
KeeperLauncher* keeper_launcher() { return the_launcher; }

pid_t wait_keeper(pid_t pid, int& status, bool block) {
  if (the_launcher) return the_launcher->wait(pid, status, block);
  pid_t r;
  do {
    r = ::waitpid(pid, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR && block);
  return r;
}

}  // namespace coop::detail::process
