// trace.hpp: a timeline of every attempt of every point, as Chrome trace
// JSON (opens in Perfetto and chrome://tracing).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <cos/timing.hpp>

namespace coop::tool {

// TraceEvent is one attempt at one point.
struct TraceEvent {
  std::size_t point = 0;
  int attempt = 1;
  std::string host;
  clock::time_point start{};
  clock::time_point end{};
  std::string status;               // ok, failed, crashed, timeout, lost, error, interrupted
  std::vector<std::string> values;  // the point's parameters
};

// write_trace() writes the events to `path`: one complete ("X") event per
// attempt, pid = host, tid = slot. Slots are numbered per host by laying the
// attempts out so that none overlaps another on its slot. Times are in
// microseconds since `origin`. Throws std::runtime_error when the file
// cannot be written.
void write_trace(const std::string& path, const std::vector<std::string>& names,
                 std::vector<TraceEvent> events, clock::time_point origin,
                 const std::vector<std::string>& command);

}  // namespace coop::tool
