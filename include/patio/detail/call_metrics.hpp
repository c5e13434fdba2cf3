// SPDX-License-Identifier: MIT
#pragma once

#include <patio/metrics.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace patio::detail {

/// One function's counters. Updated with relaxed atomics from whichever
/// thread a call ends on; read by snapshots.
struct function_counters {
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> succeeded{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> latency_ns{0};
  std::array<std::atomic<std::uint64_t>, latency_buckets> latency_counts{};

  enum class outcome { succeeded, error, timeout };

  void end(outcome o, std::chrono::nanoseconds latency) noexcept {
    latency_counts[latency_bucket(latency)].fetch_add(1, std::memory_order_relaxed);
    latency_ns.fetch_add(static_cast<std::uint64_t>(latency.count()), std::memory_order_relaxed);
    auto& counter = o == outcome::succeeded ? succeeded : o == outcome::error ? errors : timeouts;
    // Release, so that a snapshot that sees this end (acquire) also sees the
    // start counted in `calls`: in flight never goes negative.
    counter.fetch_add(1, std::memory_order_release);
  }

  [[nodiscard]] function_metrics read(std::string name) const noexcept;
};

/// The per-function counters of one broker or executor: the calling path
/// (detail::calls) starts each call here, a snapshot reads them all.
class call_metrics {
 public:
  using clock = std::chrono::steady_clock;

  /// One call in progress: ends as an error unless told otherwise, so a call
  /// whose coroutine is destroyed before it finishes still ends. Holds its
  /// function's counters, which outlive the broker if need be.
  class call {
   public:
    explicit call(std::shared_ptr<function_counters> counters) noexcept
        : counters_(std::move(counters)), started_(clock::now()) {}
    call(const call&) = delete;
    call& operator=(const call&) = delete;
    ~call() { counters_->end(outcome_, clock::now() - started_); }

    void succeeded() noexcept { outcome_ = function_counters::outcome::succeeded; }
    void timed_out() noexcept { outcome_ = function_counters::outcome::timeout; }

   private:
    std::shared_ptr<function_counters> counters_;
    clock::time_point started_;
    function_counters::outcome outcome_ = function_counters::outcome::error;
  };

  call_metrics();
  call_metrics(const call_metrics&) = delete;
  call_metrics& operator=(const call_metrics&) = delete;
  call_metrics(call_metrics&&) = delete;
  call_metrics& operator=(call_metrics&&) = delete;
  ~call_metrics() = default;

  /// Counts a call to `name` as started.
  [[nodiscard]] call start(std::string_view name) {
    auto counters = counters_for(name);
    counters->calls.fetch_add(1, std::memory_order_relaxed);
    return call(std::move(counters));
  }

  [[nodiscard]] metrics_snapshot snapshot() const;

 private:
  /// A function's name and counters. Entries are only ever added.
  struct entry {
    std::string name;
    std::size_t hash;
    std::shared_ptr<function_counters> counters;
  };

  /// An open-addressing table of entries, read without a lock: a slot goes
  /// from null to an entry once (release), and a full table is replaced by a
  /// bigger one rather than changed, the old one kept until destruction. So
  /// the calling path costs no lock, only the counters' own atomics.
  struct table {
    explicit table(std::size_t capacity) : mask(capacity - 1), slots(new std::atomic<const entry*>[capacity]) {
      for (std::size_t i = 0; i < capacity; ++i) slots[i].store(nullptr, std::memory_order_relaxed);
    }
    std::size_t mask;
    std::unique_ptr<std::atomic<const entry*>[]> slots;
  };

  static const entry* find(const table& t, std::string_view name, std::size_t hash) noexcept {
    for (std::size_t i = hash & t.mask;; i = (i + 1) & t.mask) {
      const entry* e = t.slots[i].load(std::memory_order_acquire);
      if (!e || (e->hash == hash && e->name == name)) return e;
    }
  }

  std::shared_ptr<function_counters> counters_for(std::string_view name) {
    const std::size_t hash = std::hash<std::string_view>{}(name);
    if (const entry* e = find(*table_.load(std::memory_order_acquire), name, hash)) return e->counters;
    return add(name, hash);
  }

  std::shared_ptr<function_counters> add(std::string_view name, std::size_t hash);

  mutable std::mutex mutex_;                     // adding entries, snapshots
  std::vector<std::unique_ptr<entry>> entries_;  // in the order added
  std::vector<std::unique_ptr<table>> tables_;   // the last is current
  std::atomic<const table*> table_;
};

}  // namespace patio::detail
