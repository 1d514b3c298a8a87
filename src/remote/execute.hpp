// execute.hpp: running a registered call in this process, for the parts of
// the remote layer beside detail::execute (remote.hpp): a spawner call run
// in the spawner, and an object's methods on its slot.
#pragma once

#include <cos/vm.hpp>

namespace coop::detail {

// record_exception() fills the failure fields of `m` (error_type, payload)
// from the exception being handled; call it only inside a catch block.
void record_exception(Message& m);

// execute_in_spawner() runs `call` as execute() does, but as a part of the
// spawner (a spawner call): no scratch directory and no mirrors of its own,
// which belong to remote tasks on slots.
Message execute_in_spawner(const Call& call);

}  // namespace coop::detail
