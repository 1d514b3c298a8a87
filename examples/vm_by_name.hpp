// vm_by_name.hpp: the one place where the examples turn `--vm NAME --slots N`
// into a VM, so that each example reads the same on a laptop and a cluster.
#pragma once

#include <memory>
#include <string>

#include <cos/cos.hpp>

namespace examples {

// make_vm(name, slots): "none" is no VM (nullptr: remote spawns run as local
// microthreads), "thread" a ThreadVM and "process" a ProcessVM of `slots`
// slots, "mpi" an MpiVM over every worker rank of the mpirun job (`slots` is
// not used there: start it with `mpirun -n N`, N-1 slots). Throws coop::Error
// for a name it does not know, and MpiVM's own error outside mpirun.
inline std::shared_ptr<coop::VM> make_vm(const std::string& name, int slots) {
  if (name == "none") return nullptr;
  if (name == "thread") return std::make_shared<coop::ThreadVM>(slots);
  if (name == "process") return std::make_shared<coop::ProcessVM>(slots);
  if (name == "mpi") return std::make_shared<coop::MpiVM>();
  throw coop::Error("--vm: unknown VM '" + name + "' (none, thread, process or mpi)");
}

}  // namespace examples
