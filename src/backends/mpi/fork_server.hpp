// fork_server.hpp: the process that forks a serving rank's worker keepers.
// Open MPI warns against fork() in a process that initialised MPI (with
// InfiniBand, UCX or libfabric a child can corrupt registered memory), so a
// rank forks this small server before MPI_Init, as Python's multiprocessing
// forkserver does, and every worker of the rank's ProcessVM is started by
// it (src/backends/process/launcher.hpp is the seam).
#pragma once

namespace coop::detail::mpi {

// start_fork_server() forks the server (once, before MPI_Init) and makes it
// the keeper launcher of this process's ProcessVMs. The server dies with
// the rank (PR_SET_PDEATHSIG), and its keepers, tied to it the same way,
// then end their workers. Throws coop::Error when it cannot fork.
void start_fork_server();

}  // namespace coop::detail::mpi
