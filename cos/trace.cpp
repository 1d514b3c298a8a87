#include "trace.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace coop::tool {

void write_trace(const std::string& path, const std::vector<std::string>& names,
                 std::vector<TraceEvent> events, clock::time_point origin,
                 const std::vector<std::string>& command) {
  using json = nlohmann::ordered_json;
  std::sort(events.begin(), events.end(), [](const TraceEvent& a, const TraceEvent& b) {
    return a.start != b.start ? a.start < b.start : a.point < b.point;
  });
  auto micros = [&](clock::time_point t) {
    return std::chrono::duration<double, std::micro>(t - origin).count();
  };

  json trace_events = json::array();
  std::map<std::string, int> pid_of;                            // host -> pid, 1-based
  std::map<std::string, std::vector<clock::time_point>> lanes;  // host -> end of each slot's last attempt
  for (const TraceEvent& e : events) {
    auto [it, fresh] = pid_of.emplace(e.host, static_cast<int>(pid_of.size()) + 1);
    int pid = it->second;
    if (fresh) {
      trace_events.push_back(
          {{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"args", {{"name", "host " + e.host}}}});
    }
    // The first slot of this host that is free by the time the attempt starts.
    std::vector<clock::time_point>& ends = lanes[e.host];
    std::size_t lane = 0;
    while (lane < ends.size() && ends[lane] > e.start) ++lane;
    if (lane == ends.size()) {
      ends.push_back(e.end);
      trace_events.push_back({{"name", "thread_name"},
                              {"ph", "M"},
                              {"pid", pid},
                              {"tid", static_cast<int>(lane) + 1},
                              {"args", {{"name", "slot " + std::to_string(lane + 1)}}}});
    } else {
      ends[lane] = e.end;
    }
    json args = json::object();
    for (std::size_t i = 0; i < names.size() && i < e.values.size(); ++i) args[names[i]] = e.values[i];
    args["status"] = e.status;
    args["attempt"] = e.attempt;
    double ts = micros(e.start);
    trace_events.push_back({{"name", "point " + std::to_string(e.point)},
                            {"cat", e.status},
                            {"ph", "X"},
                            {"ts", ts},
                            {"dur", std::max(0.0, micros(e.end) - ts)},
                            {"pid", pid},
                            {"tid", static_cast<int>(lane) + 1},
                            {"args", std::move(args)}});
  }
  json doc = {{"traceEvents", std::move(trace_events)},
              {"displayTimeUnit", "ms"},
              {"otherData", {{"tool", "cos sweep"}, {"command", command}}}};
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write the trace " + path + ": " + std::strerror(errno));
  out << doc.dump(1, ' ', false, json::error_handler_t::replace) << "\n";
  out.flush();
  if (!out) throw std::runtime_error("cannot write the trace " + path);
}

}  // namespace coop::tool
