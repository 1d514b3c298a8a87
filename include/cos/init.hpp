// init.hpp: coop::init, the first line of main in a program with worker processes.
#pragma once

#include <cos/export.hpp>

namespace coop {

// init(argc, argv) must be the first line of main in a program that uses
// ProcessVM (or MpiVM). ProcessVM starts its workers by running this same
// program again, marked as a worker; there init serves tasks until the
// spawner lets it go and then exits the process: it never returns. In any
// other process it records the command line and returns at once.
// Call it from the main thread, before any other thread starts.
//
// Example:
//   int main(int argc, char** argv) {
//     coop::init(argc, argv);
//     auto vm = std::make_shared<coop::ProcessVM>(4);
//     ...
//   }
COS_API void init(int& argc, char**& argv);

}  // namespace coop
