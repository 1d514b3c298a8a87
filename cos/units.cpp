#include "units.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "usage.hpp"

namespace coop::tool {

bool is_number(std::string_view text, double* value) {
  if (text.empty() || text.size() > 64) return false;
  std::string s(text);
  if (std::isspace(static_cast<unsigned char>(s.front()))) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  // strtod also takes hexadecimal floats; a parameter "0x10" is a name, not 16.
  if (s.find_first_of("xXpP") != std::string::npos) return false;
  if (value) *value = v;
  return true;
}

std::chrono::nanoseconds parse_duration(std::string_view text, std::string_view option) {
  std::string s(text);
  std::size_t unit_at = s.find_first_not_of("0123456789.+-eE");
  // "1e3ms" is fine, but the 'e' of a bare unit cannot start a number part.
  std::string number = s.substr(0, unit_at);
  std::string unit = unit_at == std::string::npos ? "" : s.substr(unit_at);
  double v = 0;
  double scale = 0;
  if (unit.empty() || unit == "s" || unit == "sec")
    scale = 1;
  else if (unit == "ms")
    scale = 1e-3;
  else if (unit == "us")
    scale = 1e-6;
  else if (unit == "ns")
    scale = 1e-9;
  else if (unit == "m" || unit == "min")
    scale = 60;
  else if (unit == "h")
    scale = 3600;
  if (scale == 0 || !is_number(number, &v)) {
    throw UsageError(std::string(option) + ": '" + s +
                     "' is not a duration (write it as 30s, 500ms, 1.5m, 2h or a number of seconds)");
  }
  double ns = v * scale * 1e9;
  if (!(ns >= 1)) throw UsageError(std::string(option) + ": the duration must be positive, got '" + s + "'");
  if (ns > 1e18) throw UsageError(std::string(option) + ": '" + s + "' is too long");
  return std::chrono::nanoseconds(static_cast<long long>(std::llround(ns)));
}

std::map<std::string, int> parse_hosts(std::string_view text) {
  std::map<std::string, int> hosts;
  std::string s(text);
  std::size_t pos = 0;
  auto bad = [&](const std::string& why) {
    return UsageError("--hosts '" + s + "': " + why +
                      " (expected NAME=SLOTS,NAME=SLOTS,... such as a=2,b=4)");
  };
  if (s.empty()) throw bad("no hosts");
  while (pos <= s.size()) {
    std::size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    std::size_t eq = item.find('=');
    if (eq == std::string::npos) throw bad("'" + item + "' has no '='");
    std::string name = item.substr(0, eq);
    std::string count = item.substr(eq + 1);
    if (name.empty()) throw bad("a host without a name");
    int n = 0;
    auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), n);
    if (ec != std::errc() || end != count.data() + count.size()) {
      throw bad("the slot count of host '" + name + "' is not a whole number");
    }
    if (n <= 0) {
      throw UsageError("--hosts: host '" + name + "' has " + count +
                       " slots; the slot count must be positive");
    }
    if (!hosts.emplace(name, n).second) throw bad("host '" + name + "' appears twice");
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return hosts;
}

std::string canonical_value(std::string_view value) {
  double v = 0;
  if (!is_number(value, &v)) return std::string(value);
  if (v == 0) v = 0;  // -0 and 0 are one point
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return std::string(value);
  return std::string(buf, end);
}

}  // namespace coop::tool
