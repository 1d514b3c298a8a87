// world.hpp: what the MPI backend knows of its job, and the one place that
// moves frames over MPI (both rank 0's MpiVM and the serving ranks use it).
// No MPI here: the MPI calls are libcos_mpi.so's (library.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cos/timing.hpp>

#include "backends/mpi/wait.hpp"
#include "backends/process/frame.hpp"

namespace coop::detail::mpi {

using namespace std::chrono_literals;

// rank_time_slice is the time slice every rank asks Linux for before
// MPI_Init (posix::ask_time_slice; why: world.cpp's mpi_init_hook).
inline constexpr std::chrono::nanoseconds rank_time_slice = 100us;

// Launcher is what the launcher's environment says, before MPI_Init.
struct Launcher {
  bool present = false;
  int rank = 0;
  int size = 1;
};
// launcher() reads OMPI_COMM_WORLD_RANK/SIZE (Open MPI), PMI_RANK/PMI_SIZE
// (MPICH's hydra, srun --mpi=pmi2), or PMIX_RANK with SLURM_NTASKS (srun
// --mpi=pmix). Never calls MPI.
Launcher launcher();
// launcher_variable() says whether an environment entry ("NAME=value") is
// one of those that mark a rank, so that a rank's worker processes, and
// the programs their tasks run, are not taken for ranks.
bool launcher_variable(std::string_view entry);

// World is the job, once MPI is initialised: this rank, the size, the host
// of every rank (known on rank 0), and the communicator of cos (a
// duplicate of MPI_COMM_WORLD, so a program's own MPI messages never mix
// with these).
struct World {
  bool initialised = false;
  bool finalized = false;
  int rank = 0;
  int size = 1;
  std::string host;                // this rank's host (COS_HOST, or the processor name)
  std::vector<std::string> hosts;  // every rank's, on rank 0
};
World& world();

// Incoming is one frame received from a rank.
struct Incoming {
  int source = -1;
  Frame frame;
};

// send() sends one frame to `dest` without blocking (MPI_Isend of the
// payload, tagged with the kind; the bytes are kept until MPI is done with
// them); throws FrameError for a payload over max_frame_payload.
// progress() completes earlier sends (MPI_Test); every poll calls it.
// pending_sends() counts those not done yet.
void send(int dest, FrameKind kind, std::string payload);
void progress();
std::size_t pending_sends();
// finish_sends() waits (backing off, not spinning) until every send is done.
void finish_sends();
// poll() returns a frame from any rank (or from `source`), or nullopt at
// once when none has arrived (MPI_Improbe, then MPI_Mrecv of its size
// straight into the frame's payload). Throws FrameError for a message whose
// tag is no frame kind.
std::optional<Incoming> poll(int source = -1);
// frame_arrived() says whether a frame from any rank waits to be taken
// (MPI_Iprobe), for a Backoff about to nap.
bool frame_arrived();

// end_job() ends this process's part in the job once (status 0:
// MPI_Finalize; else MPI_Abort of the whole job with that status).
void end_job(int status);

// serve_rank() is the loop of ranks 1..n-1 (serve.cpp): it runs the
// sessions that rank 0 opens until rank 0 says stop, finalizes MPI and
// exits the process with status 0.
[[noreturn]] void serve_rank();
// stop_ranks() ends the job from rank 0: ends a live session, tells every
// rank to stop, waits for the sends and finalizes MPI (atexit, once).
void stop_ranks();
// end_live_session() finalizes the MpiVM that is alive, if any (mpi_vm.cpp).
void end_live_session();

}  // namespace coop::detail::mpi
