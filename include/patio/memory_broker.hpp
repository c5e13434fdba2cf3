// SPDX-License-Identifier: MIT
#pragma once

#include <patio/call_options.hpp>
#include <patio/detail/calls.hpp>
#include <patio/detail/event.hpp>
#include <patio/executor.hpp>

#include <asio/awaitable.hpp>

#include <atomic>
#include <memory>

namespace patio {

/// Delivers calls to an executor in the same process. Arguments and results
/// still go through the codec, so a call converts and fails exactly as it
/// would over the network.
///
/// @code
/// patio::thread_pool_executor executor{rpc, 4};
/// patio::memory_broker broker{executor};
/// auto r = co_await broker.call<std::int64_t>("mul", 1, 2, 3);
/// @endcode
///
/// @par Object lifetimes
/// The executor (and its registry) must outlive the broker. Destroying the
/// broker closes it.
class memory_broker : public detail::calls<memory_broker> {
 public:
  /// Starts the broker: locks the executor's registry, sets the executor up.
  explicit memory_broker(patio::executor& executor);
  ~memory_broker();

  memory_broker(const memory_broker&) = delete;
  memory_broker& operator=(const memory_broker&) = delete;

  /// Explicit start, for symmetry with network brokers. Idempotent: the
  /// constructor has already started the broker.
  asio::awaitable<void> setup();

  /// Stops taking calls (later ones fail with patio::closed_error), shuts the
  /// executor down as patio does, and wakes join(). Idempotent.
  asio::awaitable<void> close();

  /// Completes when the broker is closed: "serve until stopped".
  /// @par Cancellation
  /// Cancelling the awaiting coroutine ends the wait with operation_aborted.
  asio::awaitable<void> join();

  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  [[nodiscard]] patio::executor& executor() const noexcept { return executor_; }
  [[nodiscard]] patio::registry& registry() const noexcept { return executor_.registry(); }

  /// Part of the calling interface: routes `inv` to the executor.
  /// @throws no_route_error if no function has that name.
  asio::awaitable<void> dispatch(std::shared_ptr<detail::invocation> inv, call_options options);

 private:
  void close_now();

  patio::executor& executor_;
  std::atomic<bool> closed_{false};
  detail::event closed_event_;
};

}  // namespace patio
