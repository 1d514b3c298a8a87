// spawn_options.hpp: Spawn, the options of a spawn.
#pragma once

#include <chrono>
#include <optional>

#include <cos/ids.hpp>

namespace coop {

// Spawn holds the options of a spawn; every field is optional.
//
// Example:
//   coop::spawn(coop::Spawn{.remote = true, .timeout = 30s, .retries = 1}, simulate, p);
struct Spawn {
  bool remote = false;         // run on a VM slot (locally when there is no VM)
  std::optional<HostId> host{};  // remote: only on this host (coop::Error if the VM has no such host)
  bool block = true;           // remote: wait (yielding) for a free slot, or a place queued behind a busy one (VM::queue)
  bool enqueue = true;         // with block = false: queue instead of failing
  int priority = 0;            // queued spawns: higher first, FIFO within equal
  // remote: once started, fail with coop::Timeout after this long (the slot
  // is stopped where the backend can).
  std::optional<std::chrono::nanoseconds> timeout{};
  int retries = 0;             // remote: run again after coop::WorkerLost, this many times
};

}  // namespace coop
