// units.hpp: durations, host lists and parameter values as the command line
// spells them.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>

namespace coop::tool {

// parse_duration() reads "500ms", "30s", "1.5m", "2h", "250us" or a bare
// number of seconds; throws UsageError (naming `option`) for anything else
// or a duration that is not positive.
std::chrono::nanoseconds parse_duration(std::string_view text, std::string_view option);

// parse_hosts() reads "a=2,b=4" into slots per host; throws UsageError for a
// malformed list, a repeated host or a count that is not positive.
std::map<std::string, int> parse_hosts(std::string_view text);

// canonical_value() is the form in which two spellings of one parameter
// value compare equal: a number in its shortest form ("1.0" and "1" are
// "1"), anything else as written.
std::string canonical_value(std::string_view value);

// is_number() says whether `text` is a whole decimal number (strtod syntax,
// finite).
bool is_number(std::string_view text, double* value = nullptr);

}  // namespace coop::tool
