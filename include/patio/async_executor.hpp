// SPDX-License-Identifier: MIT
#pragma once

#include <patio/executor.hpp>

#include <memory>

namespace patio {

/// @cond internals
namespace detail {
class task_limiter;
}
/// @endcond

/// Runs tasks as coroutines on the caller's executor (for a broker, the one
/// it delivers the call on), at most `max_workers` at once; the rest wait in
/// a bounded queue. Meant for coroutine functions; a synchronous function
/// runs inline on the I/O thread, so keep such functions short or use the
/// thread_pool_executor.
///
/// A coroutine task starts once the handler that started it has returned,
/// in a runner: a coroutine that awaits the tasks of one executor one after
/// another (no `co_spawn` per task) and lets other handlers run every 16
/// tasks; a task that suspends keeps its runner, and the tasks behind it get
/// another at once. Each task starts with a fresh cancellation state.
///
/// A timeout or cancellation of the call cancels the task (terminal
/// cancellation) at its next suspension point. When the caller's
/// io_context runs on several threads, call from a strand.
// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): executor already deletes copying and moving.
class async_executor final : public executor {
 public:
  /// An executor running at most `max_workers` tasks at once, with the
  /// default queue bound.
  /// @param r           the functions it runs; must outlive the executor.
  /// @param max_workers how many tasks run at once (0 counts as 1).
  explicit async_executor(patio::registry& r, std::size_t max_workers = 4)
      : async_executor(r, executor_options{.max_workers = max_workers}) {}

  /// An executor with explicit options.
  /// @param r       the functions it runs; must outlive the executor.
  /// @param options concurrency and queue bound (executor_options).
  async_executor(patio::registry& r, executor_options options);

  /// Shuts the executor down (see shutdown()).
  ~async_executor() override;

  /// Fails queued tasks with patio::executor_refused_error (errc::shut_down)
  /// and refuses new ones. Idempotent.
  void shutdown() override;

 private:
  void start(std::shared_ptr<detail::invocation> inv) override;

  std::shared_ptr<detail::task_limiter> limiter_;
};

}  // namespace patio
