// SPDX-License-Identifier: MIT
#pragma once

#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

#include <utility>

namespace patio::detail {

/// asio::post() from any thread, counted as work on `ex` until post() has
/// returned.
///
/// post() wakes the target io_context after it has queued the handler, so
/// the handler may already have run, and the io_context have run out of
/// work, stopped and been destroyed, while the posting thread is still
/// inside post(). Holding outstanding work across the call keeps run() from
/// returning until the posting thread is done with the io_context.
template <class Executor, class Handler>
void post_tracked(const Executor& ex, Handler&& handler) {
  // NOLINTNEXTLINE(readability-static-accessed-through-instance): Asio spells its properties this way.
  const auto work = asio::prefer(ex, asio::execution::outstanding_work.tracked);
  asio::post(ex, std::forward<Handler>(handler));
}

}  // namespace patio::detail
