// stack_pool.hpp: stacks for local tasks, reused after their tasks end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace coop::detail {

// Stack is one mapping: an optional guard page at `base`, then `size` usable
// bytes. It grows down from top().
struct Stack {
  char* base = nullptr;
  std::size_t size = 0;   // usable bytes, above the guard page
  std::size_t guard = 0;  // 0 or one page
  unsigned valgrind_id = 0;
  char* bottom() const { return base + guard; }
  char* top() const { return base + guard + size; }
  explicit operator bool() const { return base != nullptr; }
};

// StackPool hands out stacks of one size. Stacks are mapped lazily committed
// (MAP_NORESERVE: a page costs memory only once touched) and kept for reuse
// when their task ends, up to `max_cached`. A canary at the bottom of each
// stack catches an overflow that guard pages would otherwise have to.
class StackPool {
 public:
  StackPool(std::size_t size, bool guard_pages, std::size_t max_cached = 1024);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  Stack allocate();             // throws coop::Error when the kernel refuses
  void release(Stack s) noexcept;
  // intact() is false when a task wrote over the canary at the stack's bottom.
  // Checks the canary's highest word (an overflow reaches it first) and its
  // lowest (in case a large frame jumped over the first).
  static bool intact(const Stack& s) noexcept {
    std::uint64_t lo, hi;
    __builtin_memcpy(&lo, s.bottom(), sizeof lo);
    __builtin_memcpy(&hi, s.bottom() + (canary_words - 1) * sizeof hi, sizeof hi);
    return lo == canary_word && hi == canary_word;
  }
  static constexpr std::uint64_t canary_word = 0xC05C05C05C05C05Full;
  static constexpr std::size_t canary_words = 8;
  std::size_t stack_size() const { return size_; }

  static std::size_t page_size() noexcept;
  static Stack map(std::size_t size, bool guard);  // a fresh stack, not pooled
  static void unmap(Stack s) noexcept;

 private:
  std::size_t size_;
  bool guard_;
  std::size_t max_cached_;
  std::vector<Stack> free_;
};

}  // namespace coop::detail
