// text.hpp: small text helpers for messages, shared by the library and the
// `cos` tool (one copy of each, here).
#pragma once

#include <string>
#include <typeinfo>
#include <vector>

#include <cos/export.hpp>

namespace coop::posix {

// signal_name(9) is "SIGKILL"; an unknown signal is "signal N".
COS_API std::string signal_name(int sig);

// describe_status() says how a process ended from its wait status:
// "exited with status 3", "killed by signal 9 (SIGKILL)".
COS_API std::string describe_status(int wait_status);

// last_line() is the last non-empty line of `text` without its surrounding
// blanks, cut to `limit` characters (with "...") when longer; 0: no limit.
COS_API std::string last_line(const std::string& text, std::size_t limit = 0);

// join_names({"a", "b"}) is "a, b".
COS_API std::string join_names(const std::vector<std::string>& names, const char* separator = ", ");

// demangle() is the readable name of a type, or of a mangled symbol name
// (itself when it does not demangle), for messages.
COS_API std::string demangle(const std::type_info& type);
COS_API std::string demangle(const char* mangled);

}  // namespace coop::posix
