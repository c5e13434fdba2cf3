// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/invocation.hpp>

#include <atomic>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>

namespace patio::detail {

/// Runs invocations as coroutines on their caller's executor, at most
/// `max_running` at once, the rest in a bounded FIFO queue. Shared by the
/// tasks it runs, so that a task finishing after its executor is gone is safe.
class task_limiter : public std::enable_shared_from_this<task_limiter> {
 public:
  task_limiter(std::size_t max_running, std::size_t max_queue);
  ~task_limiter();
  task_limiter(const task_limiter&) = delete;
  task_limiter& operator=(const task_limiter&) = delete;

  /// @throws executor_refused_error when shut down or the queue is full.
  void start(std::shared_ptr<invocation> inv);

  /// Fails queued invocations, cancels running ones. Idempotent.
  void shutdown();

  [[nodiscard]] bool is_shut_down() const noexcept { return shut_down_.load(std::memory_order_acquire); }

 private:
  void spawn(std::shared_ptr<invocation> inv);
  void finished(const std::shared_ptr<invocation>& inv);
  // The list of running tasks; under mutex_.
  void link(std::shared_ptr<invocation> inv) noexcept;
  [[nodiscard]] std::shared_ptr<invocation> unlink(invocation& inv) noexcept;

  std::mutex mutex_;
  std::size_t max_running_;
  std::size_t max_queue_;
  std::size_t running_ = 0;
  std::atomic<bool> shut_down_{false};  // set under mutex_, read without it
  std::deque<std::shared_ptr<invocation>> queue_;
  invocation* active_ = nullptr;  // the first running task
};

}  // namespace patio::detail
