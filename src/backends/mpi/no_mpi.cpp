// no_mpi.cpp: MpiVM in a build without MPI (COS_WITH_MPI=OFF, or no MPI
// found): every program still builds and links, under_mpi() is false, and
// an MpiVM is a clear error that names the option.
#include <cos/errors.hpp>
#include <cos/mpi_vm.hpp>

#include "backends/mpi/hook.hpp"

namespace coop {

struct MpiVM::Impl {};

MpiVM::MpiVM(MpiOptions) {
  throw Error(
      "coop::MpiVM: this cos was built without MPI; install Open MPI (libopenmpi-dev, openmpi-bin) and "
      "configure with -DCOS_WITH_MPI=ON");
}
MpiVM::~MpiVM() = default;
int MpiVM::slots() const { return 0; }
int MpiVM::free_slots() const { return 0; }
std::vector<HostId> MpiVM::hosts() const { return {}; }
std::vector<HostId> MpiVM::hosts_with_free_slots() const { return {}; }
std::optional<TaskId> MpiVM::start(const Call&, const std::optional<HostId>&) {
  throw Error("coop::MpiVM: this cos was built without MPI (COS_WITH_MPI=OFF)");
}
std::optional<Message> MpiVM::receive(std::chrono::nanoseconds) { return std::nullopt; }
HostId MpiVM::host_of(const TaskId&) const { throw Error("coop::MpiVM::host_of: unknown task"); }
std::optional<TaskId> MpiVM::queue(const Call&, const std::optional<HostId>&) {
  throw Error("coop::MpiVM: this cos was built without MPI (COS_WITH_MPI=OFF)");
}
void MpiVM::runs_long(const TaskId&) {}
void MpiVM::withdraw(const TaskId&) {}
int MpiVM::queue_capacity() const { return 0; }
int MpiVM::queue_room() const { return 0; }
std::vector<HostId> MpiVM::hosts_with_queue_room() const { return {}; }
void MpiVM::cancel(const TaskId&) {}
void MpiVM::send(const TaskId&, std::string) {}
void MpiVM::finalize() {}

bool under_mpi() { return false; }
int mpi_rank() { return 0; }
int mpi_size() { return 1; }
std::vector<std::string> mpi_rank_hosts() { return {}; }

}  // namespace coop

namespace coop::detail {

void mpi_init_hook() {}

}  // namespace coop::detail
