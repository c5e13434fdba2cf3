// SPDX-License-Identifier: MIT
#pragma once

#include <patio/codec.hpp>
#include <patio/detail/type_name.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace patio::detail {

class function_base;
class task_limiter;

/// A completion waiting for an invocation, with its handler type erased.
class waiter_base {
 public:
  virtual ~waiter_base() = default;
  virtual asio::any_io_executor executor() const = 0;
  virtual void complete(std::exception_ptr error) = 0;
};

template <class Handler>
class waiter final : public waiter_base {
 public:
  waiter(Handler handler, asio::any_io_executor fallback)
      : handler_(std::move(handler)), executor_(asio::get_associated_executor(handler_, fallback)) {}

  asio::any_io_executor executor() const override { return executor_; }
  void complete(std::exception_ptr error) override { std::move(handler_)(std::move(error)); }

 private:
  Handler handler_;
  asio::any_io_executor executor_;
};

/// Told when the caller of an invocation gives up: a broker that sent the
/// call somewhere (a TCP connection) tells the other side.
class abandon_listener {
 public:
  abandon_listener() = default;
  abandon_listener(const abandon_listener&) = delete;
  abandon_listener& operator=(const abandon_listener&) = delete;
  abandon_listener(abandon_listener&&) = delete;
  abandon_listener& operator=(abandon_listener&&) = delete;
  virtual ~abandon_listener() = default;

  /// Runs once, on the caller's executor; `tag` is the invocation's
  /// abandon_tag (which call it was).
  virtual void abandoned(std::uint64_t tag) noexcept = 0;
};

/// Destroys a waiter: in place (in its invocation's storage), or on the heap.
struct waiter_deleter {
  bool in_place = false;
  void operator()(waiter_base* w) const noexcept {
    if (in_place)
      w->~waiter_base();
    else
      delete w;
  }
};
using waiter_ptr = std::unique_ptr<waiter_base, waiter_deleter>;

/// Whether a T fits storage of `Size` bytes aligned for any scalar.
template <class T, std::size_t Size>
inline constexpr bool fits_storage = sizeof(T) <= Size && alignof(T) <= alignof(std::max_align_t);

/// One call on its way through an executor: the arguments, the slot for the
/// result, and the rendezvous between the side that runs the task and the
/// caller waiting for it. Shared between both, so whichever gives up first
/// (a timed-out caller, a shut-down executor) leaves the other safe.
///
/// The executing side reads the arguments, sets a result or an error, then
/// calls complete() once. The caller awaits async_wait(), which ends with the
/// result's error (if any), a timeout at the deadline, or on cancellation.
class invocation : public std::enable_shared_from_this<invocation> {
 public:
  using clock = std::chrono::steady_clock;

  virtual ~invocation() = default;

  // ---- request ---------------------------------------------------------

  /// The function to run and its name; set by whoever routes the call.
  std::shared_ptr<const function_base> target;
  std::string name;

  /// When the caller stops waiting; clock::time_point::max() for never.
  clock::time_point deadline = clock::time_point::max();

  /// Where the caller waits; coroutine tasks of the async executor run here.
  /// Set before the invocation is started (no other thread sees it yet, so
  /// no lock).
  void set_caller_executor(asio::any_io_executor ex) noexcept { caller_executor_ = std::move(ex); }

  /// The caller's executor, or an empty one once the caller gave up: a worker
  /// may hold the invocation after the caller's io_context is gone, and must
  /// not keep it referenced.
  [[nodiscard]] asio::any_io_executor caller_executor() const {
    std::lock_guard lock(mutex_);
    return caller_executor_;
  }

  /// The exact std::tuple type the arguments are held in, or nullptr when
  /// they only exist encoded.
  [[nodiscard]] virtual type_id args_type() const noexcept = 0;

  /// The held argument tuple (of args_type()), to be moved from once.
  virtual void* typed_args() noexcept = 0;

  /// The positional arguments as a MessagePack array, allocated in `zone`
  /// if they need memory of their own.
  virtual msgpack::object args_object(lazy_zone& zone) const = 0;

  /// The keyword arguments, or nullptr when there are none.
  [[nodiscard]] virtual const kwargs* keywords() const noexcept = 0;

  // ---- result ----------------------------------------------------------

  /// The result type the caller holds without conversion, or nullptr.
  [[nodiscard]] virtual type_id result_type() const noexcept = 0;

  /// Moves the result from `*result`, which is of result_type().
  virtual void set_typed_result(void* result) = 0;

  /// Converts `result` to what the caller wants. May throw
  /// type_mismatch_error, which the executing side stores with set_error.
  virtual void set_object_result(const msgpack::object& result) = 0;

  void set_error(std::exception_ptr error) noexcept { error_ = std::move(error); }
  [[nodiscard]] bool has_error() const noexcept { return static_cast<bool>(error_); }

  // ---- completion --------------------------------------------------------

  /// The caller no longer waits: running it is wasted work.
  [[nodiscard]] bool abandoned() const noexcept {
    std::lock_guard lock(mutex_);
    return state_ == state::abandoned;
  }

  [[nodiscard]] bool expired() const noexcept {
    return deadline != clock::time_point::max() && clock::now() >= deadline;
  }

  /// Nobody waits for it any more, or its deadline passed: it must never
  /// start, nor hold a place in a queue.
  [[nodiscard]] bool dead() const noexcept { return abandoned() || expired(); }

  /// The caller's executor if the invocation may still start (not
  /// abandoned, not expired), else an empty one: dead() and
  /// caller_executor() under one lock.
  [[nodiscard]] asio::any_io_executor executor_if_alive() const {
    if (expired()) return {};
    std::lock_guard lock(mutex_);
    return caller_executor_;
  }

  /// Called once by the executing side after the result or error is set.
  ///
  /// Takes the executing side's reference: when the caller resumes, the
  /// executing side holds none, so the invocation (and the exception it may
  /// carry) is released on the caller's side, never under a caller that is
  /// still reading it.
  static void complete(std::shared_ptr<invocation>&& self) noexcept;

  /// Like complete(), called on the caller's executor outside of anything
  /// the caller may be inside of (the top of a handler): the caller resumes
  /// at once, in this call, instead of in a handler posted for it.
  static void complete_here(std::shared_ptr<invocation>&& self) noexcept;

  /// Like complete(), with an error that the executing side raised before
  /// running anything (a refusal, a shutdown).
  static void fail(std::shared_ptr<invocation>&& self, std::exception_ptr error) noexcept {
    self->set_error(std::move(error));
    complete(std::move(self));
  }

  /// What cancels the running task (its runner's signal), set by the
  /// executor while the task runs. On the caller's executor.
  asio::cancellation_signal* task_signal = nullptr;

  /// Cancels the task, if it runs (terminal cancellation). On the caller's
  /// executor.
  void cancel_task() const noexcept {
    if (task_signal) task_signal->emit(asio::cancellation_type::terminal);
  }

  /// Called once, on the caller's executor, when the caller gives up: for
  /// executors that stop a task another way (the process pool kills it).
  /// Set before the invocation is started.
  std::function<void()> on_abandon;

  /// Like on_abandon, without an allocation per call: `l`, if it still
  /// exists, is told `tag` once, on the caller's executor, when the caller
  /// gives up. May be called from any thread while the caller waits.
  /// @returns false when the caller has already given up or the call has
  ///   ended: there is nothing to listen for (nor to send).
  bool listen_for_abandon(std::weak_ptr<abandon_listener> l, std::uint64_t tag) noexcept;

  /// Set by a broker that found no peer offering the call and holds it
  /// until one comes: meanwhile its deadline fails the call with
  /// patio::no_route_error, not patio::timeout_error.
  std::atomic<bool> awaiting_route{false};

  /// Waits for completion. Completes with no error when the result is
  /// ready, else with the task's error, a patio::timeout_error at the
  /// deadline, or asio::error::operation_aborted on cancellation.
  ///
  /// @par Per-operation cancellation
  /// Any cancellation type abandons the invocation.
  template <class CompletionToken>
  auto async_wait(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::exception_ptr)>(
        [self = shared_from_this()](auto handler) mutable {
          // The slot first: the handler is moved from below.
          auto slot = asio::get_associated_cancellation_slot(handler);
          // Only abandon() clears the caller's executor, and it cannot run before
          // start_wait(): no lock needed to read it here.
          auto w = self->make_waiter(std::move(handler), self->caller_executor_);
          self->start_wait(std::move(w), slot);
        },
        token);
  }

  /// Ends the wait as cancelling it would (asio::error::operation_aborted),
  /// without a cancellation slot: for a broker that holds the invocation.
  /// On the waiter's executor; nothing happens unless it waits.
  void cancel_wait() noexcept;

  /// Starts `inv` with `start(inv)` and waits for it: as
  /// set_caller_executor() (the awaiting handler's executor), the start,
  /// then async_wait(), in one asynchronous operation. An exception thrown
  /// by `start` completes the wait with it.
  template <class Start, class CompletionToken>
  static auto async_run(std::shared_ptr<invocation> inv, Start start, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(std::exception_ptr)>(
        [self = std::move(inv), start = std::move(start)](auto handler) mutable {
          auto slot = asio::get_associated_cancellation_slot(handler);
          // Not started yet: nobody else sees the invocation, no lock.
          self->caller_executor_ = asio::get_associated_executor(handler);
          try {
            start(std::shared_ptr<invocation>(self));
          } catch (...) {
            self->set_error(std::current_exception());
            self->refused();
          }
          auto w = self->make_waiter(std::move(handler), self->caller_executor_);
          self->start_wait(std::move(w), slot);
        },
        token);
  }

 protected:
  std::exception_ptr error_;

 private:
  enum class state { pending, waiting, done, abandoned };

  /// The waiter for `handler`, in the invocation's own storage when it fits
  /// (an invocation is waited for once): no allocation for the usual
  /// completion handlers.
  template <class Handler>
  waiter_ptr make_waiter(Handler handler, const asio::any_io_executor& fallback) {
    using type = waiter<Handler>;
    if constexpr (fits_storage<type, waiter_storage_size>) {
      if (!waiter_storage_used_) {
        waiter_storage_used_ = true;
        return waiter_ptr(new (waiter_storage_) type(std::move(handler), fallback), waiter_deleter{true});
      }
    }
    return waiter_ptr(new type(std::move(handler), fallback), waiter_deleter{false});
  }

  void start_wait(waiter_ptr w, asio::cancellation_slot slot);
  void refused() noexcept;
  /// complete() and complete_here(): `on_caller_executor` says which.
  static void finish(std::shared_ptr<invocation>&& self, bool on_caller_executor) noexcept;
  void abandon(std::exception_ptr reason) noexcept;
  static void deliver(std::shared_ptr<invocation> self, waiter_ptr w, std::exception_ptr error,
                      bool here = false) noexcept;

  static constexpr std::size_t waiter_storage_size = 160;

  // task_limiter's list of running tasks, under its mutex: the list holds
  // each task it links (running_self_).
  friend class task_limiter;
  std::shared_ptr<invocation> running_self_;
  invocation* running_prev_ = nullptr;
  invocation* running_next_ = nullptr;

  mutable std::mutex mutex_;
  asio::any_io_executor caller_executor_;
  state state_ = state::pending;
  bool waiter_storage_used_ = false;
  // Before waiter_, which may live in it and is destroyed first.
  alignas(std::max_align_t) std::byte waiter_storage_[waiter_storage_size]{};
  waiter_ptr waiter_;
  // The deadline timer belongs to its own pending wait, not to the
  // invocation: a worker may hold the invocation after the caller's
  // io_context is gone, and a timer must not outlive its io_context.
  struct deadline_timer {
    explicit deadline_timer(const asio::any_io_executor& ex, clock::time_point at) : timer(ex, at) {}
    asio::steady_timer timer;
  };
  std::weak_ptr<deadline_timer> timer_;
  std::weak_ptr<abandon_listener> listener_;  // under mutex_
  std::uint64_t abandon_tag_ = 0;             // under mutex_
  asio::cancellation_slot slot_;
};

/// The caller's half of an invocation: the result, typed as it wants it.
template <class R>
class typed_result : public invocation {
 public:
  [[nodiscard]] type_id result_type() const noexcept override { return type_of<R>(); }

  void set_typed_result(void* result) override {
    if constexpr (!std::is_void_v<R>) result_.emplace(std::move(*static_cast<R*>(result)));
  }

  void set_object_result(const msgpack::object& result) override {
    if constexpr (std::is_same_v<R, value>) {
      result_.emplace(result);
    } else if constexpr (!std::is_void_v<R>) {
      R out{};
      convert_to(result, out, name + ": result: ");
      result_.emplace(std::move(out));
    }
  }

  /// The result after async_wait() succeeded. An error is moved out: the
  /// invocation, which may be released later on another thread (a timer's
  /// handler), holds no reference to the exception the caller now has.
  R take_result() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    if constexpr (!std::is_void_v<R>) return std::move(*result_);
  }

 private:
  struct nothing {};
  std::optional<std::conditional_t<std::is_void_v<R>, nothing, R>> result_;
};

/// How an argument is held while the call travels: by value, and strings
/// as std::string, so nothing dangles when the caller stops waiting.
template <class A>
struct stored {
  using type = std::decay_t<A>;
};
template <>
struct stored<const char*> {
  using type = std::string;
};
template <>
struct stored<char*> {
  using type = std::string;
};
template <>
struct stored<std::string_view> {
  using type = std::string;
};
template <class A>
using stored_t = typename stored<std::decay_t<A>>::type;

/// An invocation made in this process from C++ arguments.
template <class R, class... A>
class local_invocation final : public typed_result<R> {
 public:
  template <class... Args>
  explicit local_invocation(Args&&... args) : args_(std::forward<Args>(args)...) {}

  static constexpr bool kwargs_only_last() {
    constexpr bool flags[] = {false, is_kwargs<A>...};
    for (std::size_t i = 1; i < sizeof...(A); ++i)
      if (flags[i]) return false;
    return true;
  }
  static_assert(kwargs_only_last(), "patio: patio::kwargs must be the last argument of a call");

  [[nodiscard]] type_id args_type() const noexcept override { return type_of<std::tuple<A...>>(); }

  [[nodiscard]] const kwargs* keywords() const noexcept override {
    if constexpr (sizeof...(A) > 0) {
      if constexpr (is_kwargs<std::tuple_element_t<sizeof...(A) - 1, std::tuple<A...>>>)
        return &std::get<sizeof...(A) - 1>(args_);
    }
    return nullptr;
  }
  void* typed_args() noexcept override { return &args_; }
  /// A varargs argument is spread into the array, as Python's `*args` is.
  msgpack::object args_object(lazy_zone& lazy) const override {
    const std::size_t count = std::apply([](const auto&... a) { return (std::size_t{0} + ... + width(a)); }, args_);
    msgpack::object out;
    out.type = msgpack::type::ARRAY;
    out.via.array.size = static_cast<std::uint32_t>(count);
    if (count == 0) {
      out.via.array.ptr = nullptr;
      return out;
    }
    out.via.array.ptr = lazy.objects(count);
    std::size_t i = 0;
    std::apply([&](const auto&... a) { (put(out.via.array.ptr, i, a, lazy), ...); }, args_);
    return out;
  }

 private:
  template <class T>
  static std::size_t width(const T& a) noexcept {
    if constexpr (is_varargs<T>)
      return a.size();
    else if constexpr (is_kwargs<T>)
      return 0;
    else
      return 1;
  }

  template <class T>
  static void put(msgpack::object* out, std::size_t& i, const T& a, lazy_zone& zone) {
    if constexpr (is_varargs<T>) {
      for (const auto& element : a) out[i++] = zone.object(element);
    } else if constexpr (is_kwargs<T>) {
      // travels apart, as the keyword map
    } else {
      out[i++] = zone.object(a);
    }
  }

  std::tuple<A...> args_;
};

template <class R, class... Args>
std::shared_ptr<typed_result<R>> make_invocation(Args&&... args) {
  return std::make_shared<local_invocation<R, stored_t<Args>...>>(std::forward<Args>(args)...);
}

}  // namespace patio::detail
