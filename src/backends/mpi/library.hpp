// library.hpp: the MPI calls of the MPI backend, behind one table that a
// shared module (libcos_mpi.so, module.cpp, the only file that includes
// mpi.h) fills in. libcos loads the module only when a launcher started the
// process (mpi_library()), so a program that is not under mpirun never
// loads libmpi and its dependencies (about 0.9 ms at start-up), yet the
// same binary runs under mpirun.
//
// The table is plain C++ built by the same compiler as libcos (the module
// is part of the same build), and it owns every MPI handle: libcos sees
// ranks, tags and bytes, and the MPI error code of a call that failed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace coop::detail::mpi {

// MPI_SUCCESS for every MPI this module is built against (the standard
// fixes it at 0).
inline constexpr int library_ok = 0;

// The module's table, version `library_version`. Every entry that returns
// int returns the MPI error code of the call that failed, or library_ok.
// The communicator is the module's duplicate of MPI_COMM_WORLD.
struct Library {
  int version;
  // init() is MPI_Init_thread (serialized), then the duplicate communicator,
  // this rank and the size.
  int (*init)(int* rank, int* size);
  // error_text() is MPI_Error_string of a code.
  std::string (*error_text)(int code);
  // processor_name() is MPI_Get_processor_name ("" when it fails).
  std::string (*processor_name)();
  // gather() gives rank 0 each rank's `width` bytes, in rank order (the
  // others get nothing); bcast() gives every rank rank 0's `n` bytes;
  // barrier() waits for every rank. Collective: every rank calls them.
  int (*gather)(const char* mine, int width, std::vector<char>* all);
  int (*bcast)(char* bytes, int n);
  int (*barrier)();
  // isend() starts a non-blocking send of `bytes` with `tag` to `dest`;
  // the module keeps the bytes until the send is done. progress() tests
  // every send not done yet (MPI_Test) and forgets those that are;
  // pending() counts them.
  int (*isend)(int dest, int tag, std::string&& bytes);
  int (*progress)();
  std::size_t (*pending)();
  // probe() says whether a message from any rank waits (MPI_Iprobe).
  int (*probe)(bool* arrived);
  // take() takes the next message from `source` (-1: any rank) with any
  // tag, if one has arrived (MPI_Improbe, then MPI_Mrecv straight into
  // `bytes`): *got says whether it did.
  int (*take)(int source, bool* got, int* from, int* tag, std::string* bytes);
  // finalize() frees the communicator and finalizes MPI; abort() is
  // MPI_Abort of the whole job with `status`.
  int (*finalize)();
  void (*abort)(int status);
  // quiet_polls() stops Open MPI from yielding the core in every poll that
  // finds nothing (its mpi_yield_when_idle, on when the job has more ranks
  // than cores): cos yields in its own waits. Called once the collective
  // start-up is over; finalize() turns it back on. A no-op under another
  // MPI, or when the job sets OMPI_MCA_mpi_yield_when_idle itself.
  void (*quiet_polls)();
};
inline constexpr int library_version = 2;

// The module's one exported symbol, a function returning its table.
inline constexpr const char* library_entry = "cos_mpi_library";
using LibraryEntry = const Library* (*)();

// mpi_library() loads the module on its first call and returns its table;
// throws coop::Error when it cannot be loaded (it names the paths tried,
// dlopen's reason and COS_MPI_MODULE). The module is COS_MPI_MODULE when
// that is set, else libcos_mpi.so of this build's directory, of the
// install's library directory, or of the loader's search path, first found.
const Library& mpi_library();
// mpi_library_loaded() says whether this process has loaded it.
bool mpi_library_loaded();

}  // namespace coop::detail::mpi
