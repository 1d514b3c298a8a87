#include <cos/detail/value_box.hpp>

#include <cos/errors.hpp>

#include "posix/text.hpp"

namespace coop::detail {

using posix::demangle;

void ValueBox::throw_taken(Tid tid) const {
  throw Error("coop: the value of task " + std::to_string(tid) + " was already taken");
}

void ValueBox::throw_type(Tid tid, const std::type_info& wanted) const {
  throw Error("coop: task " + std::to_string(tid) + " returned " + demangle(ops_->type) +
              ", not the " + demangle(wanted) + " asked for");
}

}  // namespace coop::detail
