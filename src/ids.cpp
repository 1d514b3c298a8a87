#include <cos/ids.hpp>

#include <ostream>

namespace coop {

std::ostream& operator<<(std::ostream& os, const HostId& h) { return os << h.name(); }
std::ostream& operator<<(std::ostream& os, const TaskId& t) { return os << "task#" << t.value(); }

}  // namespace coop
