// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <optional>

namespace patio {

/// Options of one call, given before the name:
/// `co_await broker.call<int>({.timeout = 100ms}, "slow")`.
struct call_options {
  /// How long the caller waits for the result; none by default (patio's
  /// behaviour). At the deadline the call fails with patio::timeout_error and
  /// the task is cancelled where the executor can: a coroutine task at its
  /// next suspension point, a queued task before it starts. A synchronous
  /// task already running on a thread runs to its end; its result is dropped.
  std::optional<std::chrono::steady_clock::duration> timeout{};
};

}  // namespace patio
