// tid_table.hpp: finds a task's record from its tid in constant time.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <vector>

#include <cos/ids.hpp>

namespace coop::detail {

// TidTable maps tids to pointers. Tids are handed out in increasing order, so
// the table is a vector of fixed pages; a page whose tids have all gone is
// freed, which keeps memory proportional to the tasks alive, not to all the
// tasks ever spawned.
template <class T> class TidTable {
 public:
  T* find(Tid tid) const {
    if (tid < 0) return nullptr;
    auto p = static_cast<std::size_t>(tid) / page_size;
    if (p >= pages_.size() || !pages_[p]) return nullptr;
    return pages_[p]->slots[static_cast<std::size_t>(tid) % page_size];
  }
  void insert(Tid tid, T* value) {
    auto p = static_cast<std::size_t>(tid) / page_size;
    if (p >= pages_.size()) pages_.resize(p + 1);
    if (!pages_[p]) pages_[p] = std::make_unique<Page>();
    Page& page = *pages_[p];
    page.slots[static_cast<std::size_t>(tid) % page_size] = value;
    ++page.used;
    page.filled = std::max(page.filled, static_cast<std::size_t>(tid) % page_size + 1);
  }
  void erase(Tid tid) noexcept {
    auto p = static_cast<std::size_t>(tid) / page_size;
    Page& page = *pages_[p];
    page.slots[static_cast<std::size_t>(tid) % page_size] = nullptr;
    // A page goes once its last tid was handed out and every tid left it.
    if (--page.used == 0 && page.filled == page_size) pages_[p].reset();
  }
  template <class Fn> void for_each(Fn&& fn) const {
    for (const auto& page : pages_) {
      if (!page) continue;
      for (T* v : page->slots) {
        if (v) fn(v);
      }
    }
  }

 private:
  static constexpr std::size_t page_size = 1024;
  struct Page {
    std::array<T*, page_size> slots{};
    std::size_t used = 0;
    std::size_t filled = 0;
  };
  std::vector<std::unique_ptr<Page>> pages_;
};

}  // namespace coop::detail
