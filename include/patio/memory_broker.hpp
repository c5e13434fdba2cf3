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
  /// @param executor runs the calls; must outlive the broker.
  /// @throws what the executor's setup() throws (std::system_error when a
  /// thread cannot start).
  explicit memory_broker(patio::executor& executor);
  /// Closes the broker (see close()).
  ~memory_broker();

  memory_broker(const memory_broker&) = delete;
  memory_broker& operator=(const memory_broker&) = delete;

  /// Explicit start, for symmetry with network brokers. Idempotent: the
  /// constructor has already started the broker.
  /// @returns an awaitable that completes at once.
  /// @throws patio::closed_error if the broker is closed.
  /// @par Cancellation
  /// Nothing to cancel: it completes without suspending.
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> setup();

  /// Stops taking calls (later ones fail with patio::closed_error), shuts the
  /// executor down as patio does, and wakes join(). Idempotent.
  /// @returns an awaitable that completes once the executor is shut down.
  /// @par Cancellation
  /// Nothing to cancel: it completes without suspending.
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> close();

  /// Completes when the broker is closed: "serve until stopped".
  /// @returns an awaitable that completes on close().
  /// @par Cancellation
  /// Cancelling the awaiting coroutine ends the wait with operation_aborted.
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> join();

  /// @returns whether close() was called (or the broker destroyed).
  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  /// @returns the executor calls run on.
  [[nodiscard]] patio::executor& executor() const noexcept { return executor_; }
  /// @returns the executor's registry.
  [[nodiscard]] patio::registry& registry() const noexcept { return executor_.registry(); }

  /// Part of the calling interface (call() uses it): routes `inv` to the
  /// executor.
  /// @param inv     the call, named.
  /// @param options per-call options (call_options).
  /// @returns an awaitable that completes when the task is done.
  /// @throws patio::closed_error if the broker is closed;
  /// patio::no_route_error if no function has that name; as
  /// executor::execute().
  /// @par Cancellation
  /// As call().
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> dispatch(std::shared_ptr<detail::invocation> inv, call_options options);

 private:
  void close_now();

  patio::executor& executor_;
  std::atomic<bool> closed_{false};
  detail::event closed_event_;
};

}  // namespace patio
