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

/// @cond internals
namespace detail {
class task_limiter;
}
/// @endcond

/// Runs synchronous functions on `max_workers` threads of its own; the rest
/// wait in a bounded queue. The caller resumes on its own executor, so the
/// I/O thread never blocks on a task. Coroutine functions registered in the
/// same registry run as the async_executor runs them.
///
/// A timeout abandons a call: if it is still queued it never starts; if it
/// runs, it runs to its end (a thread cannot be stopped safely) and the
/// result is dropped. Use the process pool when tasks must be killable.
// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): executor already deletes copying and moving.
class thread_pool_executor final : public executor {
 public:
  /// A pool of `max_workers` threads, started at once, with the default
  /// queue bound.
  /// @param r           the functions it runs; must outlive the executor.
  /// @param max_workers how many threads (0 counts as 1).
  /// @throws std::system_error if a thread cannot be started.
  explicit thread_pool_executor(patio::registry& r, std::size_t max_workers = 4)
      : thread_pool_executor(r, executor_options{.max_workers = max_workers}) {}

  /// A pool with explicit options, started at once.
  /// @param r       the functions it runs; must outlive the executor.
  /// @param options threads and queue bound (executor_options).
  /// @throws std::system_error if a thread cannot be started.
  thread_pool_executor(patio::registry& r, executor_options options);

  /// Shuts the pool down and joins its threads (see shutdown()).
  ~thread_pool_executor() override;

  /// Starts the threads. Idempotent; does nothing after shutdown().
  void setup() override;

  /// Fails queued tasks with patio::executor_refused_error (errc::shut_down),
  /// refuses new ones, and joins the threads once their running tasks end.
  /// Idempotent.
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
