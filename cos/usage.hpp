// usage.hpp: UsageError, bad input on the command line (exit status 2).
#pragma once

#include <stdexcept>

namespace coop::tool {

// UsageError is bad input from the user: an unknown placeholder, a malformed
// range, an unreadable file. The tool prints its message and exits with 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace coop::tool
