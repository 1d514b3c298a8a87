// message_fifo.hpp: MessageFifo, the messages a VM has for receive(), in
// order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include <cos/vm.hpp>

namespace coop::detail {

// MessageFifo is a queue of Messages that allocates only while it grows: a
// std::deque<Message> holds two Messages per block, so a VM that takes in
// a result and a started per task and hands them on allocated and freed a
// block for every task. Its slots are reused: from the front whenever it
// has been emptied, and the taken ones are moved out once they are most of
// it (a queue that never empties does not grow without end).
class MessageFifo {
 public:
  bool empty() const { return head_ == tail_; }
  void push_back(Message&& m) {
    if (head_ == tail_) {
      head_ = tail_ = 0;
    } else if (head_ >= 32 && head_ * 2 >= tail_) {
      std::move(items_.begin() + static_cast<std::ptrdiff_t>(head_), items_.begin() + static_cast<std::ptrdiff_t>(tail_),
                items_.begin());
      tail_ -= head_;
      head_ = 0;
    }
    if (tail_ < items_.size()) {
      items_[tail_] = std::move(m);
    } else {
      items_.push_back(std::move(m));
    }
    ++tail_;
  }
  // take() moves the first message out (one move, straight into the
  // optional), or nullopt when there is none. What is left in its place is
  // a moved-from Message (empty strings), overwritten by a later push.
  std::optional<Message> take() {
    if (head_ == tail_) return std::nullopt;
    return std::optional<Message>(std::in_place, std::move(items_[head_++]));
  }
  void clear() {
    items_.clear();
    head_ = tail_ = 0;
  }

 private:
  std::vector<Message> items_;
  std::size_t head_ = 0, tail_ = 0;  // the queue is items_[head_, tail_)
};

}  // namespace coop::detail
