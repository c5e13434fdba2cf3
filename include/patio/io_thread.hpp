// SPDX-License-Identifier: MIT
#pragma once

#include <patio/call_options.hpp>
#include <patio/codec.hpp>
#include <patio/detail/calls.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

namespace patio {

/// @cond internals
namespace detail {

/// One blocking call: the waiting thread sleeps on `wake` until `done`.
/// Guarded by the owning io_thread's mutex.
struct blocking_call {
  std::condition_variable wake;
  bool done = false;
  bool stopped = false;  ///< io_thread::stop() cancelled it
  std::exception_ptr error;
  asio::cancellation_signal cancel;
  std::optional<asio::strand<asio::io_context::executor_type>> strand;
};

template <class T>
struct blocking_result : blocking_call {
  std::optional<T> value;
};

template <>
struct blocking_result<void> : blocking_call {};

}  // namespace detail
/// @endcond

/// Runs an asio::io_context on background threads so that code which is
/// not a coroutine (a plain `main`, a legacy thread) can make calls and wait
/// for their results, without writing Asio code:
///
/// @code
/// patio::io_thread io;                                  // one background thread
/// patio::thread_pool_executor executor{rpc, 4};
/// patio::memory_broker broker{executor};                // or a TCP broker on io.executor()
/// std::int64_t r = io.call<std::int64_t>(broker, {.timeout = 5s}, "mul", 2, 3);
/// @endcode
///
/// Any number of threads may block in call() or run() at once.
///
/// @par Deadlock guard
/// A blocking call made from one of an io_thread's own threads would wait for
/// the very thread it blocks; it throws patio::deadlock_error instead (as do
/// stop() and the blocking calls of another io_thread from such a thread:
/// inside a coroutine, `co_await` the call).
///
/// @par Object lifetimes
/// Declare the io_thread before the brokers that run on it, so they are
/// destroyed (and closed) while its threads still run. The destructor
/// stops it; it must not run on one of its own threads.
class io_thread {
 public:
  /// Starts the threads that run the io_context.
  /// @param threads how many (at least one).
  explicit io_thread(std::size_t threads = 1);

  /// stop().
  // NOLINTNEXTLINE(bugprone-exception-escape): stop() throws only on one of its own threads, documented to terminate.
  ~io_thread();

  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;

  /// The io_context the threads run: construct network brokers on it
  /// (`patio::tcp_client_broker broker{io.executor(), executor}`).
  /// @returns the io_context, which lives as long as the io_thread.
  [[nodiscard]] asio::io_context& context() noexcept { return context_; }
  /// @returns the io_context's executor, for brokers and `asio::co_spawn`.
  [[nodiscard]] asio::any_io_executor executor() noexcept { return context_.get_executor(); }

  /// @returns the number of threads running the io_context.
  [[nodiscard]] std::size_t threads() const noexcept { return thread_count_; }

  /// @returns whether the calling thread is one of this io_thread's.
  [[nodiscard]] bool running_in_this_thread() const noexcept;

  /// Runs `task` on the io_context and blocks the calling thread until it
  /// finishes.
  /// @param task the coroutine to run, e.g. `amain(broker)`.
  /// @returns what the task returned.
  /// @throws what the task threw, with its own type; patio::deadlock_error
  /// when called from an io_thread's thread; patio::closed_error after
  /// stop(), or when stop() ends the task before it finished.
  /// @par Cancellation
  /// The task has no deadline of its own: give the calls inside it one
  /// (call_options::timeout). stop() cancels it.
  /// @par Object lifetimes
  /// `task` runs on other threads: what it refers to must outlive run().
  template <class T>
  T run(asio::awaitable<T> task) {
    auto call = std::make_shared<detail::blocking_result<T>>();
    start(call, store(call, std::move(task)));
    wait(*call);
    if constexpr (!std::is_void_v<T>) return std::move(*call->value);
  }

  /// Calls `name` through `broker` (any patio broker, or an executor) and
  /// blocks until it ends: `io.call<int>(broker, "add", 2, 3)`.
  /// @param broker a broker or executor; must outlive the call.
  /// @param name   the registered name of the function.
  /// @param args   its arguments.
  /// @returns the result converted to R; a dynamic patio::value by default.
  /// @throws what `co_await broker.call<R>(name, args...)` throws (remote_error,
  /// timeout_error, no_route_error, ...), and what run() throws.
  template <class R = value, class Broker, class... Args>
  R call(Broker& broker, std::string_view name, Args&&... args) {
    return run(broker.template call<R>(name, std::forward<Args>(args)...));
  }

  /// As above, with per-call options: `io.call<int>(broker, {.timeout = 1s}, "add", 2, 3)`.
  /// @param broker  a broker or executor; must outlive the call.
  /// @param options per-call options (call_options::timeout is the call's deadline).
  /// @param name    the registered name of the function.
  /// @param args    its arguments.
  /// @returns the result converted to R.
  template <class R = value, class Broker, class... Args>
  R call(Broker& broker, call_options options, std::string_view name, Args&&... args) {
    return run(broker.template call<R>(options, name, std::forward<Args>(args)...));
  }

  /// Calls `fn` by the name it is registered under, its arguments checked
  /// at compile time: `io.call(broker, &add, 2, 3)`.
  /// @param broker a broker or executor; must outlive the call.
  /// @param fn     a function registered in the broker's registry.
  /// @param args   its arguments.
  /// @returns the function's result.
  /// @throws as call() by name, and patio::unknown_function_error if `fn` is not registered.
  template <class Broker, detail::function_type F, class... Args>
  detail::result_for<F*> call(Broker& broker, F* fn, Args&&... args) {
    return run(broker.call(fn, std::forward<Args>(args)...));
  }

  /// As above, with per-call options: `io.call(broker, {.timeout = 1s}, &add, 2, 3)`.
  /// @param broker  a broker or executor; must outlive the call.
  /// @param options per-call options.
  /// @param fn      a function registered in the broker's registry.
  /// @param args    its arguments.
  /// @returns the function's result.
  template <class Broker, detail::function_type F, class... Args>
  detail::result_for<F*> call(Broker& broker, call_options options, F* fn, Args&&... args) {
    return run(broker.call(options, fn, std::forward<Args>(args)...));
  }

  /// Stops: later blocking calls throw patio::closed_error; pending ones are
  /// cancelled and, if they have not ended within `grace`, end for their
  /// callers with patio::closed_error anyway. Then whatever else runs on the
  /// io_context (connections closing, say) gets until the same deadline to
  /// run out before the io_context stops and the threads are joined. What
  /// still runs then is destroyed with the io_context. Idempotent.
  /// @param grace how long pending calls, and then the io_context's other
  ///              work, get to end.
  /// @throws patio::deadlock_error from one of this io_thread's threads.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(1));

  /// @returns whether stop() was called.
  [[nodiscard]] bool stopped() const;

 private:
  template <class T>
  static asio::awaitable<void> store(std::shared_ptr<detail::blocking_result<T>> call, asio::awaitable<T> task) {
    if constexpr (std::is_void_v<T>)
      co_await std::move(task);
    else
      call->value.emplace(co_await std::move(task));
  }

  /// Refuses (deadlock_error, closed_error) or spawns `task` for `call`.
  void start(const std::shared_ptr<detail::blocking_call>& call, asio::awaitable<void> task);
  /// Blocks until `call` is done; rethrows its error.
  void wait(detail::blocking_call& call);
  void finish(const std::shared_ptr<detail::blocking_call>& call, std::exception_ptr error);

  asio::io_context context_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::size_t thread_count_;
  std::vector<std::thread> threads_;

  std::mutex join_mutex_;  // stop() from two threads joins once
  bool joined_ = false;
  mutable std::mutex mutex_;
  std::condition_variable drained_;
  std::condition_variable idle_;  // a thread's run() returned
  std::size_t running_;           // threads still in run()
  std::unordered_set<std::shared_ptr<detail::blocking_call>> pending_;
  bool stopped_ = false;
};

}  // namespace patio
