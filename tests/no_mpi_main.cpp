// no_mpi_main.cpp: in a build without MPI (COS_WITH_MPI=OFF) everything
// else works, under_mpi() is false and MpiVM() is an error that names the
// option (tests/CMakeLists.txt runs it only in such a build).
#include <cos/cos.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  coop::init(argc, argv);
  if (coop::under_mpi() || coop::mpi_size() != 1) return 1;
  try {
    coop::MpiVM vm;
  } catch (const coop::Error& e) {
    std::printf("%s\n", e.what());
    return std::string(e.what()).find("COS_WITH_MPI") == std::string::npos ? 1 : 0;
  }
  return 1;
}
