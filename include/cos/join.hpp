// join.hpp: join() collects finished children, as PyOPUS's Join does.
#pragma once

#include <optional>
#include <string>
#include <span>

#include <cos/detail/value_box.hpp>
#include <cos/export.hpp>
#include <cos/ids.hpp>
#include <cos/timing.hpp>

namespace coop {

enum class Wait { block, poll };
struct Joined;
COS_API std::optional<Joined> join(std::span<const Tid> among, Wait wait);

// Joined is a finished child that join() collected.
struct COS_API Joined {
  Tid tid = invalid_tid;
  std::optional<HostId> host{};  // where a remote child ran; nullopt for a local one
  Timing timing{};
  std::string output{};  // what a remote child printed, where the backend captures it

  // get<T>() moves the child's value out, or rethrows its exception. Never
  // yields; any thread may call it (a Joined is a plain value). Throws
  // coop::Error when T is not what the child returned, or on a second call.
  template <class T> T get() { return value_.take<T>(tid); }

 private:
  friend std::optional<Joined> join(std::span<const Tid>, Wait);
  detail::ValueBox value_;
};

// join(among, wait) collects one finished child of the calling task: the
// oldest (lowest tid) finished one among `among` (any child when empty).
// Wait::block yields until one finishes; Wait::poll never yields. Returns
// nullopt when the caller has no children (empty `among`) or, with
// Wait::poll, when none has finished. Throws coop::Error for tid 0, tid 1, a
// task that is not the caller's child, or one already joined. Only tasks of
// a scheduler may call it.
COS_API std::optional<Joined> join(std::span<const Tid> among = {}, Wait wait = Wait::block);
inline std::optional<Joined> join(std::initializer_list<Tid> among, Wait wait = Wait::block) {
  return join(std::span<const Tid>(among.begin(), among.size()), wait);
}

}  // namespace coop
