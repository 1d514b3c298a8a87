// ids.hpp: the names of tasks, hosts and remote tasks.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <utility>

#include <cos/export.hpp>

namespace coop {

// Tid names a task of one scheduler: -1 invalid, 0 the scheduler, 1 the main
// task, 2, 3, ... spawned tasks in spawn order (so a lower tid is older).
using Tid = std::int64_t;
inline constexpr Tid invalid_tid = -1;
inline constexpr Tid scheduler_tid = 0;
inline constexpr Tid main_tid = 1;

// HostId names a host of a VM (a machine, or a named group of slots).
// Comparable, hashable and printable; cheap to copy for short names.
class COS_API HostId {
 public:
  HostId() = default;
  explicit HostId(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  friend bool operator==(const HostId&, const HostId&) = default;
  friend auto operator<=>(const HostId&, const HostId&) = default;
  template <class Archive> void serialize(Archive& ar) { ar(name_); }

 private:
  std::string name_;
};
COS_API std::ostream& operator<<(std::ostream&, const HostId&);

// TaskId is a VM's own id of a remote task (unique within that VM).
class COS_API TaskId {
 public:
  TaskId() = default;
  explicit TaskId(std::uint64_t value) : value_(value) {}
  std::uint64_t value() const { return value_; }
  friend bool operator==(const TaskId&, const TaskId&) = default;
  friend auto operator<=>(const TaskId&, const TaskId&) = default;

 private:
  std::uint64_t value_ = 0;
};
COS_API std::ostream& operator<<(std::ostream&, const TaskId&);

}  // namespace coop

template <> struct std::hash<coop::HostId> {
  std::size_t operator()(const coop::HostId& h) const noexcept {
    return std::hash<std::string>{}(h.name());
  }
};
template <> struct std::hash<coop::TaskId> {
  std::size_t operator()(const coop::TaskId& t) const noexcept {
    return std::hash<std::uint64_t>{}(t.value());
  }
};
