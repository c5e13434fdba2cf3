// SPDX-License-Identifier: MIT
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace patio {

/// Completion token for asio::co_spawn that rethrows a coroutine's
/// exception out of io_context::run(), instead of dropping it as
/// asio::detached does.
struct rethrow_t {
  /// The completion of an `awaitable<void>`.
  /// @param e the coroutine's exception, if any.
  /// @throws what `e` holds.
  void operator()(std::exception_ptr e) const {
    if (e) std::rethrow_exception(e);
  }
  /// The completion of an `awaitable<T>`; the result is dropped.
  /// @param e the coroutine's exception, if any.
  /// @throws what `e` holds.
  template <class T>
  void operator()(std::exception_ptr e, T&&) const {
    if (e) std::rethrow_exception(e);
  }
};
/// `asio::co_spawn(io, amain(), patio::rethrow)`.
inline constexpr rethrow_t rethrow{};

/// Runs every awaitable concurrently on the current executor, like Python's
/// asyncio.gather, and returns their results in order. If any throws, the
/// first exception (in order of the tasks) is rethrown after all are done.
/// @param tasks the awaitables; each is spawned once.
/// @returns their results, in the order of `tasks`.
/// @throws the first exception of the tasks, in their order.
/// @par Cancellation
/// Not supported: a cancellation of the awaiting coroutine reaches neither
/// gather nor the spawned tasks, and gather completes when all are done.
/// Give the calls a timeout (call_options) to bound them.
/// @par Object lifetimes
/// The tasks own their state (the calls copy their arguments); what the
/// tasks refer to (a broker, an executor) must outlive them, even if the
/// awaiting coroutine is destroyed first.
template <class T>
asio::awaitable<std::vector<T>> gather(std::vector<asio::awaitable<T>> tasks) {
  struct state {
    std::mutex mutex;
    std::vector<std::optional<T>> results;
    std::vector<std::exception_ptr> errors;
    std::size_t remaining;
    std::function<void()> done;
  };
  auto s = std::make_shared<state>();
  s->results.resize(tasks.size());
  s->errors.resize(tasks.size());
  s->remaining = tasks.size();
  auto ex = co_await asio::this_coro::executor;
  if (!tasks.empty()) {
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
        [&](auto handler) {
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          s->done = [shared, ex] { asio::post(ex, std::move(*shared)); };
          for (std::size_t i = 0; i < tasks.size(); ++i) {
            asio::co_spawn(ex, std::move(tasks[i]), [s, i](std::exception_ptr e, T v) {
              std::unique_lock lock(s->mutex);
              if (e)
                s->errors[i] = e;
              else
                s->results[i].emplace(std::move(v));
              if (--s->remaining == 0) {
                lock.unlock();
                s->done();
              }
            });
          }
        },
        asio::use_awaitable);
  }
  for (auto& e : s->errors)
    if (e) std::rethrow_exception(e);
  std::vector<T> out;
  out.reserve(s->results.size());
  for (auto& r : s->results) out.push_back(std::move(*r));
  co_return out;
}

}  // namespace patio
