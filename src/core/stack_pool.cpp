#include "core/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <cos/errors.hpp>

#ifdef COS_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace coop::detail {
namespace {

constexpr std::size_t canary_words = StackPool::canary_words;
constexpr std::uint64_t canary_word = StackPool::canary_word;

#ifdef COS_HAVE_VALGRIND_H
// Valgrind follows stack switches only between stacks it was told about.
void register_stack(Stack& s) { s.valgrind_id = VALGRIND_STACK_REGISTER(s.bottom(), s.top()); }
void deregister_stack(const Stack& s) { VALGRIND_STACK_DEREGISTER(s.valgrind_id); }
#else
void register_stack(Stack&) {}
void deregister_stack(const Stack&) {}
#endif

}  // namespace

std::size_t StackPool::page_size() noexcept {
  static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

Stack StackPool::map(std::size_t size, bool guard) {
  Stack s;
  s.size = size;
  s.guard = guard ? page_size() : 0;
  void* p = ::mmap(nullptr, s.size + s.guard, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) {
    throw Error("coop: cannot map a task stack of " + std::to_string(size) +
                " bytes: " + std::strerror(errno));
  }
  s.base = static_cast<char*>(p);
#if defined(__SANITIZE_ADDRESS__)
  __asan_unpoison_memory_region(s.base, s.size + s.guard);  // see allocate()
#endif
  if (guard && ::mprotect(s.base, s.guard, PROT_NONE) != 0) {
    int err = errno;
    ::munmap(p, s.size + s.guard);
    throw Error(std::string("coop: cannot protect a stack guard page: ") + std::strerror(err) +
                " (too many live tasks for vm.max_map_count?)");
  }
  for (std::size_t i = 0; i < canary_words; ++i) {
    std::memcpy(s.bottom() + i * 8, &canary_word, 8);
  }
  register_stack(s);
  return s;
}

void StackPool::unmap(Stack s) noexcept {
  if (!s) return;
  deregister_stack(s);
  ::munmap(s.base, s.size + s.guard);
}

StackPool::StackPool(std::size_t size, bool guard_pages, std::size_t max_cached)
    : size_(size), guard_(guard_pages), max_cached_(max_cached) {}

StackPool::~StackPool() {
  for (Stack& s : free_) unmap(s);
}

Stack StackPool::allocate() {
  Stack s;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else {
    s = map(size_, guard_);
  }
#if defined(__SANITIZE_ADDRESS__)
  // The last task on this memory never returned from its deepest frames, so
  // their redzones are still poisoned in ASan's shadow; that holds for a
  // reused stack and for a fresh mapping where an unmapped stack used to be.
  __asan_unpoison_memory_region(s.bottom(), s.size);
#endif
  return s;
}

void StackPool::release(Stack s) noexcept {
  if (free_.size() < max_cached_) {
    try {
      free_.push_back(s);
      return;
    } catch (...) {
    }
  }
  unmap(s);
}

}  // namespace coop::detail
