// host_name.hpp: the name of this machine, for the host of local slots.
#pragma once

#include <unistd.h>

#include <climits>
#include <string>

namespace coop::detail {

inline std::string this_host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace coop::detail
