#include "posix/time_slice.hpp"

#include <sys/syscall.h>
#include <unistd.h>

namespace coop::posix {
namespace {

struct SchedAttr {  // struct sched_attr of <linux/sched/types.h>
  std::uint32_t size, policy;
  std::uint64_t flags;
  std::int32_t nice;
  std::uint32_t priority;
  std::uint64_t runtime, deadline, period;
};
constexpr std::uint32_t sched_other = 0, sched_batch = 3;
constexpr std::uint64_t reset_on_fork = 1;

bool fair_attr(SchedAttr& a) {
  a = SchedAttr{};
  if (::syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0) return false;
  return a.policy == sched_other || a.policy == sched_batch;
}

}  // namespace

void ask_time_slice(std::chrono::nanoseconds slice) noexcept {
  SchedAttr a;
  if (!fair_attr(a) || slice.count() <= 0) return;
  a.size = sizeof a;
  a.flags = reset_on_fork;
  a.runtime = static_cast<std::uint64_t>(slice.count());
  ::syscall(SYS_sched_setattr, 0, &a, 0);
}

std::chrono::nanoseconds time_slice() noexcept {
  SchedAttr a;
  if (!fair_attr(a)) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(a.runtime));
}

}  // namespace coop::posix
