#include <cos/vm.hpp>

namespace coop {

VM::~VM() = default;

}  // namespace coop
