// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/invocation.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <atomic>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

namespace patio::detail {

/// Runs invocations as coroutines on their caller's executor, at most
/// `max_running` at once, the rest in a bounded FIFO queue. Shared by the
/// tasks it runs, so that a task finishing after its executor is gone is safe.
///
/// Coroutine tasks are not spawned one by one: each executor's tasks wait in
/// a ready list, and a runner coroutine (spawned after the handler that
/// started them) awaits them one after another, resuming each caller as its
/// task ends. A task that suspends keeps its runner; the tasks behind it get
/// a new runner at the end of the current handler. A runner ends when its
/// list is empty, so no idle runner keeps an io_context's run() going.
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
  struct ready_list;
  class check_ready;

  void spawn(std::shared_ptr<invocation> inv);
  // The ready lists, by executor; under mutex_.
  std::shared_ptr<ready_list> ready_list_for(const asio::any_io_executor& ex);
  void release_if_idle(const std::shared_ptr<ready_list>& list);
  static asio::awaitable<void> run_ready(std::shared_ptr<task_limiter> self, std::shared_ptr<ready_list> list,
                                         std::shared_ptr<asio::cancellation_signal> signal);
  void launch_runner(const std::shared_ptr<ready_list>& list);
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
  std::vector<std::shared_ptr<ready_list>> ready_lists_;
};

}  // namespace patio::detail
