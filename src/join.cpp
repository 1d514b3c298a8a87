#include <cos/join.hpp>

#include "core/engine.hpp"

namespace coop {

std::optional<Joined> join(std::span<const Tid> among, Wait wait) {
  detail::Engine& e = detail::Engine::current_checked("coop::join");
  detail::TaskRecord* rec = e.join_among(among, wait);
  if (!rec) return std::nullopt;
  detail::JoinedTask joined{&e, rec, &rec->value, rec->external != nullptr};
  detail::ReleaseGuard guard{joined};
  Joined j;
  j.tid = rec->tid;
  if (rec->external) {
    detail::TaskInfo info = e.record_info(rec);
    j.host = std::move(info.host);
    j.timing = info.timing;
    j.output = std::move(info.output);
  }
  j.value_ = std::move(rec->value);
  return j;
}

}  // namespace coop
