// SPDX-License-Identifier: MIT
#pragma once

/// @file
/// A broker over Redis Streams: many callers, many workers, many
/// machines, calls that survive a worker's crash. Link `patio::redis`.

#include <patio/call_options.hpp>
#include <patio/detail/calls.hpp>
#include <patio/executor.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace patio {

/// @cond internals
namespace detail {
class redis_core;
}
/// @endcond

/// Options of a Redis broker. Every broker of one deployment must agree on
/// `project`; the rest is per process.
struct redis_options {
  /// Where Redis listens (host name or address) and which database to use.
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;  ///< Redis's TCP port
  int db = 0;                 ///< the database number (SELECT)

  /// AUTH: a password alone (requirepass), or an ACL user and password.
  std::string username{};
  std::string password{};  ///< empty: no AUTH

  /// The namespace of every key: `patio:{<project>}:...` (docs/redis.md).
  std::string project = "patio";

  /// A worker that has not finished or renewed an entry for this long is
  /// presumed dead, and a live worker claims the entry and runs it again.
  /// Running tasks renew their claim every third of it.
  std::chrono::milliseconds visibility_timeout{30'000};

  /// An entry delivered more than this many times (its workers kept dying)
  /// goes to the dead-letter stream, and its caller gets worker_crashed_error.
  std::uint32_t max_deliveries = 3;

  /// Worker: entries it runs at once, and entries it asks for per read.
  std::size_t max_in_flight = 256;
  std::size_t read_batch = 128;  ///< entries asked for per read (XREADGROUP COUNT)

  /// Workers advertise their functions every `heartbeat_interval`; an
  /// advertisement expires after `worker_ttl`, so a dead worker stops
  /// counting as a route.
  std::chrono::milliseconds heartbeat_interval{1'000};
  std::chrono::milliseconds worker_ttl{5'000};  ///< how long an advertisement lasts

  /// A call for a function no live worker offers fails at once with
  /// no_route_error (false), or is queued for a worker that may come later,
  /// up to the call's timeout (true).
  bool wait_for_route = false;

  /// A caller's reply stream expires this long after the caller stops
  /// renewing it (it went away).
  std::chrono::milliseconds reply_ttl{60'000};

  /// Entries kept in the dead-letter stream (older ones are trimmed).
  std::size_t dead_letter_max = 10'000;

  /// Connecting (TCP and AUTH) may take this long.
  std::chrono::milliseconds connect_timeout{5'000};

  /// After Redis goes away: first delay before reconnecting; it doubles up to
  /// max_reconnect_delay.
  std::chrono::milliseconds reconnect_delay{100};
  std::chrono::milliseconds max_reconnect_delay{5'000};  ///< the longest delay between attempts
};

/// Calls and serves functions through Redis Streams (patio's Redis broker).
///
/// Each broker is a caller; it is also a worker when its executor runs
/// tasks (not the null executor) and its registry is not empty. A call is an
/// entry in the stream of its function; workers read through one consumer
/// group, run it, write the reply to the caller's reply stream and only then
/// acknowledge it. Delivery is at least once: a task may run again after a
/// worker died or Redis lost its state (docs/redis.md).
///
/// @code
/// patio::redis_broker broker{io.get_executor(), executor, {.project = "shop"}};
/// co_await broker.setup();
/// auto r = co_await broker.call<std::int64_t>({.timeout = 5s}, "mul", 1, 2, 3);
/// @endcode
///
/// @par Object lifetimes
/// The executor (and its registry) must outlive the broker; destroying the
/// broker closes it without waiting.
class redis_broker : public detail::calls<redis_broker> {
 public:
  /// Locks the executor's registry and sets the executor up; connects only
  /// in setup().
  /// @param io       where the connections run (e.g. io_context::get_executor()).
  /// @param executor runs the tasks this broker serves; must outlive the broker.
  /// @param options  server, credentials, project and tuning (redis_options).
  /// @throws std::invalid_argument for options that cannot work.
  redis_broker(asio::any_io_executor io, patio::executor& executor, redis_options options = {});
  /// Closes the broker on its I/O thread without waiting, and shuts the
  /// executor down.
  ~redis_broker();

  redis_broker(const redis_broker&) = delete;
  redis_broker& operator=(const redis_broker&) = delete;

  /// Connects, authenticates, creates the consumer groups of the functions
  /// it serves and starts working. After it, the broker reconnects by itself
  /// whenever Redis goes away. Idempotent.
  /// @throws connection_error if Redis cannot be reached, auth_error if it
  /// refuses the credentials, closed_error after close().
  /// @returns an awaitable that completes once the broker works.
  /// @par Cancellation
  /// Cancelling the awaiting coroutine abandons the attempt.
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> setup();

  /// Stops: withdraws this worker's advertisement, fails calls still
  /// waiting with closed_error, closes the connections, shuts the executor
  /// down as patio does, wakes join(). Entries this worker was running stay
  /// pending in Redis and are run by another worker after the visibility
  /// timeout. Idempotent.
  /// @returns an awaitable that completes once closed.
  /// @par Cancellation
  /// Not meant to be cancelled: await it to its end.
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

  /// @returns whether the broker holds a working connection to Redis now.
  [[nodiscard]] bool connected() const;

  /// This broker's identity in Redis.
  /// @returns its consumer name, also the suffix of its reply stream.
  [[nodiscard]] const std::string& id() const noexcept;

  /// @returns the executor that runs the tasks this broker serves.
  [[nodiscard]] patio::executor& executor() const noexcept { return executor_; }
  /// @returns the executor's registry.
  [[nodiscard]] patio::registry& registry() const noexcept { return executor_.registry(); }

  /// Part of the calling interface (call() uses it): adds `inv` to its
  /// function's stream and waits for the reply until the call's deadline.
  /// @param inv     the call, named.
  /// @param options per-call options (call_options).
  /// @returns an awaitable that completes when the reply arrives.
  /// @throws patio::no_route_error, patio::timeout_error,
  /// patio::closed_error, patio::worker_crashed_error; the task's error.
  /// @par Cancellation
  /// As call().
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> dispatch(std::shared_ptr<detail::invocation> inv, call_options options);

 private:
  patio::executor& executor_;
  std::shared_ptr<detail::redis_core> core_;
};

}  // namespace patio
