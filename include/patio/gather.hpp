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
  void operator()(std::exception_ptr e) const {
    if (e) std::rethrow_exception(e);
  }
  template <class T>
  void operator()(std::exception_ptr e, T&&) const {
    if (e) std::rethrow_exception(e);
  }
};
inline constexpr rethrow_t rethrow{};

/// Runs every awaitable concurrently on the current executor, like Python's
/// asyncio.gather, and returns their results in order. If any throws, the
/// first exception (in order of the tasks) is rethrown after all are done.
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
