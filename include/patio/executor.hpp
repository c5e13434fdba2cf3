// SPDX-License-Identifier: MIT
#pragma once

#include <patio/call_options.hpp>
#include <patio/detail/calls.hpp>
#include <patio/registry.hpp>

#include <asio/awaitable.hpp>

#include <cstddef>
#include <memory>

namespace patio {

class executor;

namespace detail {
/// For brokers: starts `inv` (its target and caller_executor set) on `ex`;
/// the caller then waits with inv->async_wait().
/// @throws executor_refused_error as the executor refuses it.
void start_invocation(executor& ex, std::shared_ptr<invocation> inv);
}  // namespace detail

/// Options shared by every executor. The defaults are patio's.
struct executor_options {
  /// How many tasks run at once: threads of a thread pool, concurrent
  /// coroutines of the async executor.
  std::size_t max_workers = 4;

  /// How many tasks may wait for a worker. Beyond it a call fails at once
  /// with patio::executor_refused_error (errc::queue_full): a bound on memory
  /// and a signal to shed load rather than a silent, growing backlog.
  std::size_t max_queue = 65536;
};

/// Runs functions of a registry. The base of every executor; brokers hold a
/// reference to one.
///
/// Executors can be used without a broker: `co_await ex.submit<int>("mul", 2, 3)`.
///
/// @par Object lifetimes
/// The registry must outlive the executor; the executor must outlive the
/// brokers that use it. Destroying an executor shuts it down.
class executor : public detail::calls<executor> {
 public:
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;
  virtual ~executor() = default;

  /// Starts the workers. Idempotent; the constructors already call it.
  virtual void setup() {}

  /// Stops taking calls, fails the queued ones with executor_refused_error
  /// (errc::shut_down), cancels running coroutine tasks and waits for running
  /// threads to finish their task. Idempotent; never hangs unless a
  /// synchronous task itself never returns.
  virtual void shutdown() = 0;

  /// Whether this executor runs anything: network brokers offer its
  /// registry's functions to peers only if so. False for the null executor.
  [[nodiscard]] virtual bool runs_tasks() const noexcept { return true; }

  [[nodiscard]] patio::registry& registry() const noexcept { return registry_; }
  [[nodiscard]] const executor_options& options() const noexcept { return options_; }
  [[nodiscard]] std::size_t max_workers() const noexcept { return options_.max_workers; }

  /// patio's spelling of call(): runs a registered function through this
  /// executor and waits for its result.
  template <class R = value, class... Args>
  asio::awaitable<R> submit(Args&&... args) {
    return this->template call<R>(std::forward<Args>(args)...);
  }
  template <class R = value, class... Args>
  asio::awaitable<R> submit(call_options options, std::string_view name, Args&&... args) {
    return this->template call<R>(options, name, std::forward<Args>(args)...);
  }
  template <detail::function_type F, class... Args>
  auto submit(F* fn, Args&&... args) {
    return call(fn, std::forward<Args>(args)...);
  }

  /// Runs `inv`, whose target is resolved, and waits for it. Brokers use it.
  /// @throws executor_refused_error when the executor does not take it.
  asio::awaitable<void> execute(std::shared_ptr<detail::invocation> inv);

  /// Part of the calling interface: resolves the name in the registry
  /// (unknown_function_error), then execute().
  asio::awaitable<void> dispatch(std::shared_ptr<detail::invocation> inv, call_options options);

 protected:
  executor(patio::registry& r, executor_options options) : registry_(r), options_(options) {}

  /// Starts running `inv` without waiting for it; when done, the executor
  /// hands it to detail::invocation::complete(). Throws executor_refused_error
  /// to refuse.
  virtual void start(std::shared_ptr<detail::invocation> inv) = 0;

 private:
  friend void detail::start_invocation(executor& ex, std::shared_ptr<detail::invocation> inv);

  patio::registry& registry_;
  executor_options options_;
};

}  // namespace patio
