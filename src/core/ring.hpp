// ring.hpp: a double-ended queue of pointers on a growable ring buffer.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

namespace coop::detail {

template <class T> class Ring {
 public:
  bool empty() const { return head_ == tail_; }
  std::size_t size() const { return tail_ - head_; }
  void push_back(T v) {
    if (size() == cap_) grow();
    buf_[tail_++ & (cap_ - 1)] = v;
  }
  void push_front(T v) {
    if (size() == cap_) grow();
    buf_[--head_ & (cap_ - 1)] = v;
  }
  T pop_front() { return buf_[head_++ & (cap_ - 1)]; }
  T front() const { return buf_[head_ & (cap_ - 1)]; }
  template <class Fn> void for_each(Fn&& fn) const {
    for (std::size_t i = head_; i != tail_; ++i) fn(buf_[i & (cap_ - 1)]);
  }

 private:
  void grow() {
    std::size_t cap = cap_ ? cap_ * 2 : 64;
    auto buf = std::make_unique<T[]>(cap);
    for (std::size_t i = 0; i < size(); ++i) buf[i] = buf_[(head_ + i) & (cap_ - 1)];
    tail_ = size();
    head_ = 0;
    buf_ = std::move(buf);
    cap_ = cap;
  }
  std::unique_ptr<T[]> buf_;
  std::size_t cap_ = 0;
  // Free-running indices: they wrap, and `& (cap_ - 1)` maps them into buf_.
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace coop::detail
