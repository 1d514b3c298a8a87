// env_seconds.hpp: durations that an environment variable may override, for
// the backends' time limits (COS_WORKER_START_TIMEOUT, COS_FINALIZE_TIMEOUT).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <cos/errors.hpp>

namespace coop::detail {

// seconds_from_env() is the value of the environment variable `name` in
// seconds, or `fallback` when it is unset or empty; anything but a positive
// number (at most 1e6) is a coop::Error that names `who` and the variable.
inline std::chrono::nanoseconds seconds_from_env(const char* name, std::chrono::nanoseconds fallback,
                                                 const char* who) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  double seconds = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(seconds > 0) || seconds > 1e6) {
    throw Error(std::string(who) + ": " + name + "='" + text + "' is not a positive number of seconds");
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(seconds * 1e9));
}

// seconds_text(1.5 s) is "1.5 s".
inline std::string seconds_text(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace coop::detail
