// SPDX-License-Identifier: MIT
#include <patio/detail/event.hpp>
#include <patio/detail/post.hpp>

#include <asio/error.hpp>

#include <algorithm>

namespace patio::detail {

namespace {
void post_completion(std::unique_ptr<waiter_base> w, asio::cancellation_slot slot, std::exception_ptr error) {
  // (The executor first: the handler below takes `w`.)
  const auto ex = w->executor();
  post_tracked(ex, [w = std::move(w), slot, error = std::move(error)]() mutable {
    if (slot.is_connected()) slot.clear();
    w->complete(std::move(error));
  });
}
}  // namespace

void event::set() {
  std::vector<entry> waiters;
  {
    std::lock_guard lock(mutex_);
    set_ = true;
    waiters.swap(waiters_);
  }
  for (auto& e : waiters) post_completion(std::move(e.waiter), e.slot, nullptr);
}

bool event::is_set() const {
  std::lock_guard lock(mutex_);
  return set_;
}

void event::add(std::unique_ptr<waiter_base> w, asio::cancellation_slot slot) {
  std::unique_lock lock(mutex_);
  if (set_) {
    lock.unlock();
    post_completion(std::move(w), {}, nullptr);
    return;
  }
  auto* raw = w.get();
  waiters_.push_back({std::move(w), slot});
  if (slot.is_connected()) slot.assign([this, raw](asio::cancellation_type) { cancel(raw); });
}

void event::cancel(waiter_base* w) {
  entry found;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(waiters_.begin(), waiters_.end(), [w](const auto& e) { return e.waiter.get() == w; });
    if (it == waiters_.end()) return;
    found = std::move(*it);
    waiters_.erase(it);
  }
  post_completion(std::move(found.waiter), found.slot,
                  std::make_exception_ptr(std::system_error(asio::error::operation_aborted)));
}

}  // namespace patio::detail
