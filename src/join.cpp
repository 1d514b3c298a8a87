#include <cos/join.hpp>

#include "detail/engine.hpp"

namespace coop {

std::optional<Joined> join(std::span<const Tid> among, Wait wait) {
  detail::Engine& e = detail::Engine::current_checked("coop::join");
  detail::TaskRecord* rec = e.join_among(among, wait);
  if (!rec) return std::nullopt;
  detail::JoinedTask joined{&e, rec, &rec->value, rec->remote};
  detail::ReleaseGuard guard{joined};
  Joined j;
  j.tid = rec->tid;
  j.host = rec->host;
  j.timing = rec->timing;
  j.output = std::move(rec->output);
  j.value = std::move(rec->value);
  return j;
}

}  // namespace coop
