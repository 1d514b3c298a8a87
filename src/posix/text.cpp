#include "posix/text.hpp"

#include <sys/wait.h>

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <memory>

namespace coop::posix {

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    std::string s = "killed by signal " + std::to_string(sig);
    if (::sigabbrev_np(sig)) s += " (" + signal_name(sig) + ")";
    return s;
  }
  return "ended with wait status " + std::to_string(status);
}

std::string last_line(const std::string& text, std::size_t limit) {
  std::size_t end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return {};
  std::size_t begin = text.rfind('\n', end);
  begin = begin == std::string::npos ? 0 : begin + 1;
  begin = text.find_first_not_of(" \t", begin);
  std::string line = text.substr(begin, end + 1 - begin);
  if (limit > 3 && line.size() > limit) line = line.substr(0, limit - 3) + "...";
  return line;
}

std::string join_names(const std::vector<std::string>& names, const char* separator) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += separator;
    out += n;
  }
  return out;
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                              std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

std::string demangle(const std::type_info& type) { return demangle(type.name()); }

}  // namespace coop::posix
