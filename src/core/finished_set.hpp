// finished_set.hpp: a parent's children that ended and wait for a join.
#pragma once

#include <cstddef>

#include <boost/intrusive/list.hpp>
#include <boost/intrusive/set.hpp>

#include <cos/ids.hpp>

namespace coop::detail {

namespace bi = boost::intrusive;
using NormalLink = bi::link_mode<bi::normal_link>;

// FinishedNode is the part of a task record that a FinishedSet links.
struct FinishedNode {
  Tid tid = invalid_tid;
  bi::list_member_hook<NormalLink> list_hook;
  bi::set_member_hook<NormalLink> tree_hook;
  bool in_tree = false;
};

// FinishedSet yields the oldest (lowest tid) finished child first, as
// PyOPUS's Join does. Children mostly end in the order they were spawned, so
// an ordered list takes every child that ends after all those already in it
// (O(1)); the others go to a balanced tree (O(log n)). The oldest is the
// smaller of the two heads.
class FinishedSet {
 public:
  bool empty() const { return list_.empty() && tree_.empty(); }
  std::size_t size() const { return list_.size() + tree_.size(); }

  void insert(FinishedNode& n) {
    if (list_.empty() || list_.back().tid < n.tid) {
      n.in_tree = false;
      list_.push_back(n);
    } else {
      n.in_tree = true;
      tree_.insert(n);
    }
  }
  FinishedNode& oldest() {
    if (tree_.empty()) return list_.front();
    if (list_.empty()) return *tree_.begin();
    return list_.front().tid < tree_.begin()->tid ? list_.front() : *tree_.begin();
  }
  void erase(FinishedNode& n) {
    if (n.in_tree) {
      tree_.erase(tree_.iterator_to(n));
    } else {
      list_.erase(list_.iterator_to(n));
    }
  }

 private:
  struct ByTid {
    bool operator()(const FinishedNode& a, const FinishedNode& b) const { return a.tid < b.tid; }
  };
  bi::list<FinishedNode,
           bi::member_hook<FinishedNode, bi::list_member_hook<NormalLink>, &FinishedNode::list_hook>,
           bi::constant_time_size<true>>
      list_;
  bi::set<FinishedNode,
          bi::member_hook<FinishedNode, bi::set_member_hook<NormalLink>, &FinishedNode::tree_hook>,
          bi::compare<ByTid>, bi::constant_time_size<true>>
      tree_;
};

}  // namespace coop::detail
