#include <cos/detail/value_box.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

#include <cos/errors.hpp>

namespace coop::detail {

std::string demangle(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(type.name());
}

void ValueBox::throw_taken(Tid tid) const {
  throw Error("coop: the value of task " + std::to_string(tid) + " was already taken");
}

void ValueBox::throw_type(Tid tid, const std::type_info& wanted) const {
  throw Error("coop: task " + std::to_string(tid) + " returned " + demangle(ops_->type) +
              ", not the " + demangle(wanted) + " asked for");
}

}  // namespace coop::detail
