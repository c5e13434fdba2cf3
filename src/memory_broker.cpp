// SPDX-License-Identifier: MIT
#include <patio/memory_broker.hpp>

#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace patio {

memory_broker::memory_broker(patio::executor& executor) : executor_(executor) {
  executor_.registry().lock();
  executor_.setup();
}

memory_broker::~memory_broker() { close_now(); }

asio::awaitable<void> memory_broker::setup() {
  if (closed()) throw closed_error("memory broker: cannot set up a closed broker");
  executor_.registry().lock();
  executor_.setup();
  co_return;
}

void memory_broker::close_now() {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  executor_.shutdown();
  closed_event_.set();
}

asio::awaitable<void> memory_broker::close() {
  close_now();
  co_return;
}

asio::awaitable<void> memory_broker::join() {
  auto ex = co_await asio::this_coro::executor;
  co_await closed_event_.async_wait(ex, asio::use_awaitable);
}

asio::awaitable<void> memory_broker::dispatch(std::shared_ptr<detail::invocation> inv, call_options options) {
  if (closed()) throw closed_error(inv->name + ": the broker is closed");
  const function* fn = executor_.registry().find(inv->name);
  if (!fn) throw no_route_error(inv->name + ": no function by this name in the broker's registry");
  inv->target = fn->impl();
  if (options.timeout) inv->deadline = detail::invocation::clock::now() + *options.timeout;
  // Not a coroutine: the caller awaits the executor's operation directly.
  return executor_.execute(std::move(inv));
}

}  // namespace patio
