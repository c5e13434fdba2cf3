// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/invocation.hpp>

#include <asio/associated_cancellation_slot.hpp>
#include <asio/async_result.hpp>

#include <memory>
#include <mutex>
#include <vector>

namespace patio::detail {

/// A one-way latch any number of coroutines can await, set from any thread.
class event {
 public:
  /// Wakes every waiter, now and later. Idempotent.
  void set();
  [[nodiscard]] bool is_set() const;

  /// Completes when set(); with operation_aborted if cancelled first.
  template <class CompletionToken>
  auto async_wait(asio::any_io_executor fallback, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::exception_ptr)>(
        [this, fallback](auto handler) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          add(std::make_unique<waiter<decltype(handler)>>(std::move(handler), fallback), slot);
        },
        token);
  }

 private:
  struct entry {
    std::unique_ptr<waiter_base> waiter;
    asio::cancellation_slot slot;
  };
  void add(std::unique_ptr<waiter_base> w, asio::cancellation_slot slot);
  void cancel(waiter_base* w);

  mutable std::mutex mutex_;
  bool set_ = false;
  std::vector<entry> waiters_;
};

}  // namespace patio::detail
