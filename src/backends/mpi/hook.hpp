// hook.hpp: coop::init's MPI step (world.cpp, or no_mpi.cpp in a build
// without MPI).
#pragma once

namespace coop::detail {

// mpi_init_hook() does nothing unless an MPI launcher started this
// process. Under one it initialises MPI; on ranks 1..n-1 it then serves
// tasks and exits the process (it never returns there).
void mpi_init_hook();

}  // namespace coop::detail
