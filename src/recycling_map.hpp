// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <unordered_map>
#include <utility>
#include <vector>

namespace patio::detail {

/// An unordered_map that keeps the nodes of erased entries for the next
/// insertions: a connection that inserts and erases an entry per call
/// allocates no node once it has seen its peak number of entries.
template <class Key, class T>
class recycling_map {
  using map = std::unordered_map<Key, T>;

 public:
  using iterator = typename map::iterator;

  /// Inserts (key, value) unless key is present.
  /// @returns whether it was inserted.
  bool emplace(const Key& key, T value) {
    if (spare_.empty()) return entries_.emplace(key, std::move(value)).second;
    auto node = std::move(spare_.back());
    spare_.pop_back();
    node.key() = key;
    node.mapped() = std::move(value);
    auto result = entries_.insert(std::move(node));
    if (!result.inserted) keep(std::move(result.node));
    return result.inserted;
  }

  /// Removes the entry at `it`; its value is moved out.
  T take(iterator it) {
    auto node = entries_.extract(it);
    T value = std::move(node.mapped());
    keep(std::move(node));
    return value;
  }

  /// Removes `key`'s entry if present.
  /// @returns whether there was one.
  bool erase(const Key& key) {
    const auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    take(it);
    return true;
  }

  iterator find(const Key& key) { return entries_.find(key); }
  iterator end() noexcept { return entries_.end(); }
  [[nodiscard]] bool contains(const Key& key) const { return entries_.contains(key); }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// The entries, for iteration or a copy.
  [[nodiscard]] const map& entries() const noexcept { return entries_; }

  /// Removes every entry, and the kept nodes with them.
  /// @returns the entries.
  map release() noexcept {
    map out = std::move(entries_);
    entries_.clear();
    spare_.clear();
    return out;
  }

 private:
  void keep(typename map::node_type node) {
    node.mapped() = T{};  // what the value holds goes now, not when the node is reused
    spare_.push_back(std::move(node));
  }

  map entries_;
  std::vector<typename map::node_type> spare_;
};

}  // namespace patio::detail
