// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace patio {

/// Upper bounds (inclusive) of the call latency histogram's buckets: a fixed
/// 1-2.5-5 log scale from 10 µs to 10 s, the same for every broker, so
/// snapshots of different brokers and processes add up bucket by bucket.
/// Latencies above the last bound fall in one more bucket (Prometheus' +Inf).
inline constexpr std::array<std::chrono::nanoseconds, 19> latency_bucket_bounds{
    std::chrono::microseconds{10},  std::chrono::microseconds{25},   std::chrono::microseconds{50},
    std::chrono::microseconds{100}, std::chrono::microseconds{250},  std::chrono::microseconds{500},
    std::chrono::milliseconds{1},   std::chrono::microseconds{2500}, std::chrono::milliseconds{5},
    std::chrono::milliseconds{10},  std::chrono::milliseconds{25},   std::chrono::milliseconds{50},
    std::chrono::milliseconds{100}, std::chrono::milliseconds{250},  std::chrono::milliseconds{500},
    std::chrono::seconds{1},        std::chrono::milliseconds{2500}, std::chrono::seconds{5},
    std::chrono::seconds{10}};

/// Number of histogram buckets: one per bound, plus the overflow bucket.
inline constexpr std::size_t latency_buckets = latency_bucket_bounds.size() + 1;

/// The bucket a latency falls in: the first whose bound is >= `latency`, or
/// the overflow bucket (latency_buckets - 1).
constexpr std::size_t latency_bucket(std::chrono::nanoseconds latency) noexcept {
  std::size_t i = 0;
  while (i < latency_bucket_bounds.size() && latency > latency_bucket_bounds[i]) ++i;
  return i;
}

/// What one function's calls through one broker (or executor) did, as seen
/// by the caller. A call is counted when it starts; when it ends it is
/// counted once as succeeded, failed (`errors`) or timed out (`timeouts`),
/// and its latency, from start to end whatever the outcome, goes into the
/// histogram.
struct function_metrics {
  /// The function's registered name.
  std::string name{};
  /// Calls started.
  std::uint64_t calls = 0;
  /// Calls that returned a result.
  std::uint64_t succeeded = 0;
  /// Calls that failed with any error other than patio::timeout_error: the
  /// task threw, no route, bad arguments, a lost connection, cancellation...
  std::uint64_t errors = 0;
  /// Calls that failed with patio::timeout_error.
  std::uint64_t timeouts = 0;
  /// Calls started and not yet ended when the snapshot was taken.
  std::uint64_t in_flight = 0;
  /// Sum of the latencies of the calls that ended.
  std::chrono::nanoseconds latency_sum{};
  /// Calls that ended, per latency bucket (not cumulative): `latency_counts[i]`
  /// counts latencies in (bound[i-1], bound[i]]; the last entry counts those
  /// above every bound.
  std::array<std::uint64_t, latency_buckets> latency_counts{};

  /// @returns the calls that ended: succeeded + errors + timeouts.
  [[nodiscard]] std::uint64_t ended() const noexcept { return succeeded + errors + timeouts; }

  /// Adds `other`'s counts to this one's (the name stays).
  /// @param other the counts to add.
  /// @returns `*this`.
  function_metrics& operator+=(const function_metrics& other) noexcept;
};

/// The metrics of one broker or executor at one moment: one entry per
/// function called through it since it was made, sorted by name.
///
/// Counters are read one by one without stopping callers, so a snapshot
/// taken while calls run may be off by the calls ending during it; each
/// counter on its own only ever grows.
struct metrics_snapshot {
  /// One entry per function, sorted by name.
  std::vector<function_metrics> functions{};

  /// @param name a function's registered name.
  /// @returns the entry for `name`, or nullptr if no call to it was made.
  [[nodiscard]] const function_metrics* find(std::string_view name) const noexcept;

  /// @returns every function's counts added up, named "".
  [[nodiscard]] function_metrics total() const noexcept;
};

/// A human-readable table: one line per function with calls, succeeded,
/// errors, timeouts, in flight, mean latency and the bucket bounds that hold
/// the median (p50) and 99th percentile (p99), then a total line.
std::string to_text(const metrics_snapshot& snapshot);

/// A snapshot and the constant labels that tell it apart from others in one
/// Prometheus exposition, e.g. `{{"broker", "orders"}}`.
struct labelled_snapshot {
  /// Label names and values added to every sample of `snapshot`.
  std::vector<std::pair<std::string, std::string>> labels{};
  /// The snapshot to expose.
  metrics_snapshot snapshot{};
};

/// The Prometheus text exposition format (version 0.0.4): for each metric a
/// `# HELP` and `# TYPE` line, then one sample per function, labelled
/// `function="name"` (after the given labels):
///
/// - `<prefix>_calls_total` (counter), `<prefix>_call_errors_total` (counter),
///   `<prefix>_call_timeouts_total` (counter), `<prefix>_calls_in_flight` (gauge)
/// - `<prefix>_call_duration_seconds` (histogram): cumulative `_bucket`
///   samples with `le` from 1e-05 to 10 and `+Inf`, `_sum` and `_count`.
///
/// Label values are escaped (backslash, double quote, line feed).
/// @param prefix the metric name prefix, "patio" by default.
/// @throws std::invalid_argument if `prefix` or a label name is not a valid
/// Prometheus name, or a label is called "function" or "le".
std::string to_prometheus(const metrics_snapshot& snapshot, std::string_view prefix = "patio",
                          const std::vector<std::pair<std::string, std::string>>& labels = {});

/// Several snapshots in one exposition (each metric's HELP and TYPE once),
/// e.g. one per broker, told apart by their labels.
std::string to_prometheus(const std::vector<labelled_snapshot>& snapshots, std::string_view prefix = "patio");

}  // namespace patio
