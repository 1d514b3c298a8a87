#include "vm_factory.hpp"

#include <sched.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>

#include <cos/errors.hpp>
#include <cos/mpi_vm.hpp>
#include <cos/process_vm.hpp>

#include "units.hpp"
#include "usage.hpp"

namespace coop::tool {
namespace {

int default_slots() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int slots_of(const SweepOptions& o) { return o.slots ? *o.slots : default_slots(); }

}  // namespace

void check_vm_options(const SweepOptions& o) {
  if (under_mpi()) {
    // Under mpirun the slots are the worker ranks and the hosts theirs.
    if (!o.hosts.empty()) {
      throw UsageError("--hosts cannot be used under mpirun: the points run on the worker ranks, and each rank's "
                       "host is its machine (or its COS_HOST); drop --hosts, or run without mpirun");
    }
    if (o.slots) {
      throw UsageError("--slots cannot be used under mpirun: the slots are the N-1 worker ranks of mpirun -n N");
    }
    return;
  }
  if (!o.hosts.empty()) {
    parse_hosts(o.hosts);
    return;
  }
  int slots = slots_of(o);
  if (slots <= 0) {
    throw UsageError("--slots " + std::to_string(slots) + ": the number of worker processes must be positive");
  }
}

std::shared_ptr<VM> make_vm(const SweepOptions& o, std::size_t points) {
  try {
    if (under_mpi()) return std::make_shared<MpiVM>();
    if (!o.hosts.empty()) return std::make_shared<ProcessVM>(parse_hosts(o.hosts));
    std::size_t slots = std::min<std::size_t>(static_cast<std::size_t>(slots_of(o)), std::max<std::size_t>(points, 1));
    return std::make_shared<ProcessVM>(static_cast<int>(slots));
  } catch (const Error& e) {
    throw std::runtime_error(std::string("cannot start the worker processes: ") + e.what());
  }
}

}  // namespace coop::tool
