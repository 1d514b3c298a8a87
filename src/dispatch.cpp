#include <cos/dispatch.hpp>

namespace coop::detail {

// One job per slot, and as many more as the VM can queue behind running
// ones (pipelining): those start without a round trip when a job ends.
int default_in_flight(bool remote) {
  Scheduler& s = Scheduler::current();
  if (!remote || s.slots() <= 0) return 1;
  return s.slots() + s.vm()->queue_capacity();
}

}  // namespace coop::detail
