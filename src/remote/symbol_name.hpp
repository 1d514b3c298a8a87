// symbol_name.hpp: the name of a function from its address, for messages.
#pragma once

#include <string>

namespace coop::detail {

// symbol_name() is the demangled name of the function at `address`, or ""
// when neither the dynamic symbols (dladdr) nor the ELF symbol table of the
// file it was loaded from (unless stripped) know it. Slow: for error paths.
std::string symbol_name(const void* address);

}  // namespace coop::detail
