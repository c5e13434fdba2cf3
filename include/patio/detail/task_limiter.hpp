// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/invocation.hpp>

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_set>

namespace patio::detail {

/// Runs invocations as coroutines on their caller's executor, at most
/// `max_running` at once, the rest in a bounded FIFO queue. Shared by the
/// tasks it runs, so that a task finishing after its executor is gone is safe.
class task_limiter : public std::enable_shared_from_this<task_limiter> {
 public:
  task_limiter(std::size_t max_running, std::size_t max_queue);

  /// @throws executor_refused_error when shut down or the queue is full.
  void start(std::shared_ptr<invocation> inv);

  /// Fails queued invocations, cancels running ones. Idempotent.
  void shutdown();

  [[nodiscard]] bool is_shut_down() {
    std::lock_guard lock(mutex_);
    return shut_down_;
  }

 private:
  void spawn(std::shared_ptr<invocation> inv);
  void finished(const std::shared_ptr<invocation>& inv);

  std::mutex mutex_;
  std::size_t max_running_;
  std::size_t max_queue_;
  std::size_t running_ = 0;
  bool shut_down_ = false;
  std::deque<std::shared_ptr<invocation>> queue_;
  std::unordered_set<std::shared_ptr<invocation>> active_;
};

}  // namespace patio::detail
