// SPDX-License-Identifier: MIT
#include <patio/detail/invocation.hpp>
#include <patio/detail/post.hpp>
#include <patio/error.hpp>

#include <asio/error.hpp>

#include <utility>

namespace patio::detail {

void invocation::start_wait(waiter_ptr w, asio::cancellation_slot slot) {
  std::unique_lock lock(mutex_);
  if (state_ == state::done) {
    lock.unlock();
    deliver(shared_from_this(), std::move(w), nullptr);
    return;
  }
  waiter_ = std::move(w);
  state_ = state::waiting;
  if (deadline != clock::time_point::max()) {
    auto timer = std::make_shared<deadline_timer>(waiter_->executor(), deadline);
    timer_ = timer;
    timer->timer.async_wait([self = shared_from_this(), timer](std::error_code ec) {
      if (ec) return;
      if (self->awaiting_route)
        self->abandon(std::make_exception_ptr(no_route_error(self->name + ": no connected peer offers this function")));
      else
        self->abandon(std::make_exception_ptr(timeout_error(self->name + ": call timed out")));
    });
  }
  if (slot.is_connected()) {
    slot_ = slot;
    slot.assign([self = shared_from_this()](asio::cancellation_type) {
      self->abandon(std::make_exception_ptr(std::system_error(asio::error::operation_aborted)));
    });
  }
}

bool invocation::listen_for_abandon(std::weak_ptr<abandon_listener> l, std::uint64_t tag) noexcept {
  std::lock_guard lock(mutex_);
  if (state_ == state::abandoned || state_ == state::done) return false;
  listener_ = std::move(l);
  abandon_tag_ = tag;
  return true;
}

void invocation::cancel_wait() noexcept {
  abandon(std::make_exception_ptr(std::system_error(asio::error::operation_aborted)));
}

void invocation::refused() noexcept {
  std::lock_guard lock(mutex_);
  state_ = state::done;
}

void invocation::abandon(std::exception_ptr reason) noexcept {
  std::unique_lock lock(mutex_);
  if (state_ != state::waiting) return;
  state_ = state::abandoned;
  auto w = std::move(waiter_);
  // What refers to the caller's io_context goes now, here, on it: a worker
  // thread may drop the last reference to the invocation after that
  // io_context is gone.
  const auto caller = std::move(caller_executor_);
  const auto listener = std::exchange(listener_, {});
  const auto tag = abandon_tag_;
  lock.unlock();
  cancel_task();
  if (on_abandon) std::exchange(on_abandon, nullptr)();
  if (const auto l = listener.lock()) l->abandoned(tag);
  deliver(shared_from_this(), std::move(w), std::move(reason));
}

void invocation::complete(std::shared_ptr<invocation>&& self) noexcept { finish(std::move(self), false); }

void invocation::complete_here(std::shared_ptr<invocation>&& self) noexcept { finish(std::move(self), true); }

void invocation::finish(std::shared_ptr<invocation>&& self, bool on_caller_executor) noexcept {
  std::unique_lock lock(self->mutex_);
  if (self->state_ == state::abandoned || self->state_ == state::done) return;
  self->state_ = state::done;
  auto w = std::move(self->waiter_);
  // On the caller's executor, its waiter is normally there too.
  const bool here = on_caller_executor && w && w->executor() == self->caller_executor_;
  lock.unlock();
  if (w) deliver(std::move(self), std::move(w), nullptr, here);
}

namespace {

/// What resumes a caller. The waiter may live inside the invocation: it is
/// destroyed before the invocation (members go in reverse order).
struct delivery {
  std::shared_ptr<invocation> self;
  waiter_ptr w;
  std::exception_ptr error;
};

}  // namespace

void invocation::deliver(std::shared_ptr<invocation> self, waiter_ptr w, std::exception_ptr error, bool here) noexcept {
  // Through the caller's executor: the caller resumes there, never inside
  // the task's stack or on a worker thread, and the timer and the
  // cancellation slot are only touched there. `here` says this already is
  // that place.
  const auto resume = [](delivery& d) {
    if (auto timer = d.self->timer_.lock()) timer->timer.cancel();
    if (d.self->slot_.is_connected()) d.self->slot_.clear();
    d.w->complete(std::move(d.error));
  };
  if (here) {
    delivery d{std::move(self), std::move(w), std::move(error)};
    resume(d);
    return;
  }
  const auto ex = w->executor();  // before `w` moves into the handler
  post_tracked(ex, [resume, d = delivery{std::move(self), std::move(w), std::move(error)}]() mutable { resume(d); });
}

}  // namespace patio::detail
