// SPDX-License-Identifier: MIT
#pragma once

#include <patio/executor.hpp>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace patio {

namespace detail {
class task_limiter;
}

/// Runs synchronous functions on `max_workers` threads of its own; the rest
/// wait in a bounded queue. The caller resumes on its own executor, so the
/// I/O thread never blocks on a task. Coroutine functions registered in the
/// same registry run as the async_executor runs them.
///
/// A timeout abandons a call: if it is still queued it never starts; if it
/// runs, it runs to its end (a thread cannot be stopped safely) and the
/// result is dropped. Use the process pool when tasks must be killable.
class thread_pool_executor final : public executor {
 public:
  explicit thread_pool_executor(patio::registry& r, std::size_t max_workers = 4)
      : thread_pool_executor(r, executor_options{.max_workers = max_workers}) {}
  thread_pool_executor(patio::registry& r, executor_options options);
  ~thread_pool_executor() override;

  /// Starts the threads. Idempotent.
  void setup() override;
  void shutdown() override;

 private:
  void start(std::shared_ptr<detail::invocation> inv) override;
  void work();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<detail::invocation>> queue_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
  std::shared_ptr<detail::task_limiter> coroutines_;
};

}  // namespace patio
