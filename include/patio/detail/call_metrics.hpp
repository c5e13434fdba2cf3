// SPDX-License-Identifier: MIT
#pragma once

#include <patio/metrics.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

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

  call_metrics() = default;
  call_metrics(const call_metrics&) = delete;
  call_metrics& operator=(const call_metrics&) = delete;

  /// Counts a call to `name` as started.
  [[nodiscard]] call start(std::string_view name) {
    auto counters = counters_for(name);
    counters->calls.fetch_add(1, std::memory_order_relaxed);
    return call(std::move(counters));
  }

  [[nodiscard]] metrics_snapshot snapshot() const;

 private:
  struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using map = std::unordered_map<std::string, std::shared_ptr<function_counters>, name_hash, std::equal_to<>>;

  std::shared_ptr<function_counters> counters_for(std::string_view name) {
    {
      std::shared_lock lock(mutex_);
      if (auto it = functions_.find(name); it != functions_.end()) return it->second;
    }
    return add(name);
  }

  std::shared_ptr<function_counters> add(std::string_view name);

  mutable std::shared_mutex mutex_;
  map functions_;
};

}  // namespace patio::detail
