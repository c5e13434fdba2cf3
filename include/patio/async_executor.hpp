// SPDX-License-Identifier: MIT
#pragma once

#include <patio/executor.hpp>

#include <memory>

namespace patio {

namespace detail {
class task_limiter;
}

/// Runs tasks as coroutines on the caller's executor (for a broker, the one
/// it delivers the call on), at most `max_workers` at once; the rest wait in
/// a bounded queue. Meant for coroutine functions; a synchronous function
/// runs inline on the I/O thread, so keep such functions short or use the
/// thread_pool_executor.
///
/// A timeout or cancellation of the call cancels the task (terminal
/// cancellation) at its next suspension point. When the caller's
/// io_context runs on several threads, call from a strand.
class async_executor final : public executor {
 public:
  explicit async_executor(patio::registry& r, std::size_t max_workers = 4)
      : async_executor(r, executor_options{.max_workers = max_workers}) {}
  async_executor(patio::registry& r, executor_options options);
  ~async_executor() override;

  void shutdown() override;

 private:
  void start(std::shared_ptr<detail::invocation> inv) override;

  std::shared_ptr<detail::task_limiter> limiter_;
};

}  // namespace patio
