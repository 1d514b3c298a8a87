// launcher.hpp: the seam through which a ProcessVM starts its keepers and
// learns how they ended. By default the VM forks and execs them itself and
// reads their status with waitpid; an MPI rank instead has them started by
// a fork server that it forked before MPI_Init (src/backends/mpi/), so that
// no fork ever happens in a process that initialised MPI.
#pragma once

#include <sys/types.h>

namespace coop::detail::process {

class KeeperLauncher {
 public:
  virtual ~KeeperLauncher() = default;
  // launch() starts a keeper of this program whose stdin, stdout, stderr,
  // call pipe, result pipe and output counts (output_counts.hpp) are
  // fds[0..5] (the caller closes its copies afterwards) and returns its
  // pid. Throws coop::Error when it cannot.
  virtual pid_t launch(const int (&fds)[6]) = 0;
  // wait() is waitpid(pid, &status, block ? 0 : WNOHANG) for a keeper that
  // launch() started: pid once it ended (status set), 0 while it runs, -1
  // when it is not known.
  virtual pid_t wait(pid_t pid, int& status, bool block) = 0;
};

// set_keeper_launcher() makes every ProcessVM of this process start its
// keepers through `launcher` (nullptr: fork + exec, the default). Call it
// before any ProcessVM starts; the launcher must outlive them.
void set_keeper_launcher(KeeperLauncher* launcher);
KeeperLauncher* keeper_launcher();
// wait_keeper() is waitpid(pid, &status, block ? 0 : WNOHANG) for a keeper,
// through the launcher when one is set (EINTR is retried when blocking).
pid_t wait_keeper(pid_t pid, int& status, bool block);

}  // namespace coop::detail::process
