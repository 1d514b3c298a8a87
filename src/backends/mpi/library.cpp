// library.cpp: finding and loading libcos_mpi.so (see library.hpp). No MPI here.
#include "backends/mpi/library.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <cos/errors.hpp>

namespace coop::detail::mpi {
namespace {

// The places to look, first found wins (CMake names the first two).
std::vector<std::string> candidates() {
  if (const char* path = std::getenv("COS_MPI_MODULE"); path && *path) return {path};
  std::vector<std::string> paths;
#ifdef COS_MPI_MODULE_BUILD_PATH
  paths.emplace_back(COS_MPI_MODULE_BUILD_PATH);
#endif
#ifdef COS_MPI_MODULE_INSTALL_PATH
  paths.emplace_back(COS_MPI_MODULE_INSTALL_PATH);
#endif
  paths.emplace_back("libcos_mpi.so");  // the loader's search path (LD_LIBRARY_PATH, the rpath)
  return paths;
}

const Library* loaded = nullptr;

const Library* load() {
  std::string tried;
  for (const std::string& path : candidates()) {
    // RTLD_GLOBAL: Open MPI loads its own components later, and they look
    // for libmpi's symbols among the global ones.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
      const char* why = ::dlerror();
      tried += "\n  " + path + ": " + (why ? why : "not loaded");
      continue;
    }
    auto entry = reinterpret_cast<LibraryEntry>(::dlsym(handle, library_entry));
    const Library* table = entry ? entry() : nullptr;
    if (table && table->version == library_version) return table;  // kept loaded for the process's life
    tried += "\n  " + path + ": not the libcos_mpi.so of this cos (no table of version " +
             std::to_string(library_version) + ")";
    ::dlclose(handle);
  }
  throw Error(
      "coop: this program runs under an MPI launcher, but cos's MPI module libcos_mpi.so cannot be loaded "
      "(install it beside libcos, or set COS_MPI_MODULE to its path); tried:" +
      tried);
}

}  // namespace

const Library& mpi_library() {
  if (!loaded) loaded = load();
  return *loaded;
}

bool mpi_library_loaded() { return loaded != nullptr; }

}  // namespace coop::detail::mpi
