#include <cos/dispatch.hpp>

namespace coop::detail {

int default_in_flight(bool remote) {
  Scheduler& s = Scheduler::current();
  return remote && s.slots() > 0 ? s.slots() : 1;
}

}  // namespace coop::detail
