// vm_factory.hpp: the one place of the tool that knows the VM backends.
// Everything else in `cos sweep` sees a std::shared_ptr<coop::VM>.
#pragma once

#include <cstddef>
#include <memory>

#include <cos/vm.hpp>

#include "sweep.hpp"

namespace coop::tool {

// check_vm_options() checks --slots and --hosts before anything starts;
// throws UsageError for a slot count that is not positive, a bad host list,
// or either option under mpirun (the ranks are the slots there).
void check_vm_options(const SweepOptions& options);

// make_vm() starts the VM a sweep of `points` points runs on: worker
// processes on one host (--slots, by default one per core, never more than
// there are points) or on named hosts (--hosts); under mpirun an MpiVM
// over the worker ranks (rank 0 writes the rows). Throws std::runtime_error
// when the workers cannot be started.
std::shared_ptr<VM> make_vm(const SweepOptions& options, std::size_t points);

}  // namespace coop::tool
