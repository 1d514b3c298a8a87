#include "remote/symbol_name.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "posix/text.hpp"

namespace coop::detail {
namespace {

// Looks the symbol whose value is `want` (an address minus its object's load
// bias) up in the .symtab of an ELF64 file.
std::string from_symtab(const std::string& path, std::uintptr_t want) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() < sizeof(Elf64_Ehdr)) return "";
  Elf64_Ehdr eh;
  std::memcpy(&eh, file.data(), sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) return "";
  if (eh.e_shoff == 0 || eh.e_shoff + std::uint64_t(eh.e_shnum) * sizeof(Elf64_Shdr) > file.size()) return "";
  auto section = [&](std::size_t i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, file.data() + eh.e_shoff + i * sizeof sh, sizeof sh);
    return sh;
  };
  for (std::size_t i = 0; i < eh.e_shnum; ++i) {
    Elf64_Shdr sh = section(i);
    if (sh.sh_type != SHT_SYMTAB || sh.sh_link >= eh.e_shnum) continue;
    Elf64_Shdr strtab = section(sh.sh_link);
    if (sh.sh_offset + sh.sh_size > file.size() || strtab.sh_offset + strtab.sh_size > file.size()) return "";
    for (std::size_t k = 0; k < sh.sh_size / sizeof(Elf64_Sym); ++k) {
      Elf64_Sym sym;
      std::memcpy(&sym, file.data() + sh.sh_offset + k * sizeof sym, sizeof sym);
      if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value != want) continue;
      if (sym.st_name >= strtab.sh_size) continue;
      return posix::demangle(file.data() + strtab.sh_offset + sym.st_name);
    }
  }
  return "";
}

// The loaded object whose segments hold an address: its file and load bias.
struct Owner {
  std::uintptr_t address = 0;
  std::string path{};
  std::uintptr_t bias = 0;
  bool found = false;
};

int find_owner(dl_phdr_info* info, std::size_t, void* data) {
  auto* owner = static_cast<Owner*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type != PT_LOAD || owner->address < lo || owner->address >= lo + ph.p_memsz) continue;
    // The main program has no name here; its file is /proc/self/exe.
    owner->path = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "/proc/self/exe";
    owner->bias = info->dlpi_addr;
    owner->found = true;
    return 1;
  }
  return 0;
}

}  // namespace

std::string symbol_name(const void* address) {
  Dl_info info{};
  if (::dladdr(address, &info) && info.dli_sname && info.dli_saddr == address) {
    return posix::demangle(info.dli_sname);
  }
  Owner owner{reinterpret_cast<std::uintptr_t>(address)};
  ::dl_iterate_phdr(&find_owner, &owner);
  if (!owner.found) return "";
  return from_symtab(owner.path, owner.address - owner.bias);
}

}  // namespace coop::detail
