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

/// @cond internals
namespace detail {
/// For brokers: starts `inv` (its target and caller_executor set) on `ex`;
/// the caller then waits with inv->async_wait().
/// @throws executor_refused_error as the executor refuses it.
void start_invocation(executor& ex, std::shared_ptr<invocation> inv);
}  // namespace detail
/// @endcond

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
  /// Subclasses shut down in their own destructor.
  virtual ~executor() = default;

  /// Starts the workers. Idempotent; the constructors already call it.
  virtual void setup() {}

  /// Stops taking calls, fails the queued ones with executor_refused_error
  /// (errc::shut_down), cancels running coroutine tasks and waits for running
  /// threads to finish their task. Idempotent; never hangs unless a
  /// synchronous task itself never returns.
  virtual void shutdown() = 0;

  /// Whether this executor runs anything: network brokers offer its
  /// registry's functions to peers only if so.
  /// @returns true; false for the null executor.
  [[nodiscard]] virtual bool runs_tasks() const noexcept { return true; }

  /// @returns the registry whose functions this executor runs.
  [[nodiscard]] patio::registry& registry() const noexcept { return registry_; }
  /// @returns the options it was made with.
  [[nodiscard]] const executor_options& options() const noexcept { return options_; }
  /// @returns how many tasks run at once: `options().max_workers`.
  [[nodiscard]] std::size_t max_workers() const noexcept { return options_.max_workers; }

  /// patio's spelling of call(): runs the function registered as the first
  /// argument's name through this executor and waits for its result.
  /// @param args the name, then the function's arguments (a patio::kwargs
  ///             last for keyword arguments).
  /// @returns the result converted to R; by default a dynamic patio::value.
  /// @throws patio::unknown_function_error, patio::bad_arguments_error,
  /// patio::remote_error, patio::type_mismatch_error,
  /// patio::executor_refused_error; as call().
  /// @par Cancellation
  /// As call(): cancelling the awaiting coroutine abandons the task.
  /// @par Object lifetimes
  /// The arguments are copied (or moved) before submit() returns; the
  /// executor must outlive the returned awaitable.
  template <class R = value, class... Args>
  asio::awaitable<R> submit(Args&&... args) {
    return this->template call<R>(std::forward<Args>(args)...);
  }

  /// submit() with per-call options, such as a timeout.
  /// @param options per-call options (call_options).
  /// @param name    the registered name.
  /// @param args    the function's arguments.
  /// @returns the result converted to R.
  /// @throws as submit(); patio::timeout_error at the deadline.
  /// @par Cancellation
  /// As call().
  /// @par Object lifetimes
  /// As submit().
  template <class R = value, class... Args>
  asio::awaitable<R> submit(call_options options, std::string_view name, Args&&... args) {
    return this->template call<R>(options, name, std::forward<Args>(args)...);
  }

  /// submit() by function: as call(F*, Args&&...).
  /// @param fn   a registered function; its first name is called.
  /// @param args arguments, checked against fn's parameters at compile time.
  /// @returns an awaitable of fn's result type.
  /// @throws patio::unknown_function_error if fn is not registered; else as
  /// submit().
  /// @par Cancellation
  /// As call().
  /// @par Object lifetimes
  /// As submit().
  template <detail::function_type F, class... Args>
  auto submit(F* fn, Args&&... args) {
    return call(fn, std::forward<Args>(args)...);
  }

  /// Runs `inv`, whose target is resolved, and waits for it. Brokers use it.
  /// @param inv the call; its result or error is set when this completes.
  /// @returns an awaitable that completes when the task is done.
  /// @throws patio::executor_refused_error when the executor does not take it.
  /// @par Cancellation
  /// Cancelling the awaiting coroutine abandons the task: it is cancelled
  /// where the executor can.
  /// @par Object lifetimes
  /// `inv` is shared with the task; the executor must outlive the awaitable.
  asio::awaitable<void> execute(std::shared_ptr<detail::invocation> inv);

  /// Part of the calling interface (call() and submit() use it): resolves
  /// the name in the registry, sets the deadline, then execute().
  /// @param inv     the call, named.
  /// @param options per-call options (call_options).
  /// @returns an awaitable that completes when the task is done.
  /// @throws patio::unknown_function_error; as execute().
  /// @par Cancellation
  /// As execute().
  /// @par Object lifetimes
  /// As execute().
  asio::awaitable<void> dispatch(std::shared_ptr<detail::invocation> inv, call_options options);

 protected:
  /// For subclasses.
  /// @param r       the functions it runs; must outlive the executor.
  /// @param options the shared options.
  executor(patio::registry& r, executor_options options) : registry_(r), options_(options) {}

  /// Starts running `inv` without waiting for it; when done, the executor
  /// hands it to detail::invocation::complete().
  /// @param inv the call, its target resolved.
  /// @throws patio::executor_refused_error to refuse it.
  virtual void start(std::shared_ptr<detail::invocation> inv) = 0;

 private:
  friend void detail::start_invocation(executor& ex, std::shared_ptr<detail::invocation> inv);

  patio::registry& registry_;
  executor_options options_;
};

}  // namespace patio
