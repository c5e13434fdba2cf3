// SPDX-License-Identifier: MIT
#pragma once

#include <patio/call_options.hpp>
#include <patio/codec.hpp>
#include <patio/detail/call_metrics.hpp>
#include <patio/detail/invocation.hpp>
#include <patio/error.hpp>
#include <patio/function.hpp>
#include <patio/metrics.hpp>
#include <patio/registry.hpp>

#include <asio/awaitable.hpp>

#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

/// @file
/// call(), the calling interface of every broker and executor.

namespace patio::detail {

/// @cond internals
/// Whether an argument of type A initialises a parameter of type P without
/// narrowing: the compile-time check of calls by function.
template <class P, class A>
concept fits = requires(A&& a) {
  P{std::forward<A>(a)};
};

template <class P, class A>
struct param_fits : std::bool_constant<fits<P, A>> {};

template <class... P>
struct params_of {
  using layout = param_layout<P...>;

  template <std::size_t I>
  using param = std::remove_cvref_t<std::tuple_element_t<I, std::tuple<P...>>>;

  template <std::size_t I, class A>
  static constexpr bool fits_at() {
    if constexpr (I < layout::fixed)
      return fits<param<I>, A>;
    else if constexpr (layout::variadic)
      return fits<typename param<layout::positional - 1>::value_type, A>;
    else
      return false;
  }

  /// Whether the last of A... is a patio::kwargs.
  template <class... A>
  static constexpr bool kwargs_given() {
    if constexpr (sizeof...(A) == 0)
      return false;
    else
      return is_kwargs<std::remove_cvref_t<std::tuple_element_t<sizeof...(A) - 1, std::tuple<A...>>>>;
  }

  template <class... A>
  static constexpr bool accepts() {
    constexpr bool with_kwargs = kwargs_given<A...>();
    constexpr std::size_t positional = sizeof...(A) - (with_kwargs ? 1 : 0);
    if constexpr ((with_kwargs && !layout::takes_kwargs) || positional < layout::required || positional > layout::max) {
      return false;
    } else {
      return []<std::size_t... I>(std::index_sequence<I...>) {
        return (fits_at<I, std::tuple_element_t<I, std::tuple<A...>>>() && ...);
      }
      (std::make_index_sequence<positional>{});
    }
  }

  /// The parameter tuple, built from arguments that passed accepts(), with
  /// views (std::string_view) held as owning strings: the call outlives the
  /// caller's arguments.
  template <class... A>
  static std::tuple<stored_t<P>...> build(A&&... a) {
    auto args = std::forward_as_tuple(std::forward<A>(a)...);
    constexpr std::size_t positional = sizeof...(A) - (kwargs_given<A...>() ? 1 : 0);
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return std::tuple<stored_t<P>...>{build_one<I, positional>(args)...};
    }
    (std::index_sequence_for<P...>{});
  }

 private:
  template <std::size_t I, std::size_t Given, class Tuple>
  static stored_t<param<I>> build_one(Tuple& args) {
    if constexpr (layout::takes_kwargs && I == layout::count - 1) {
      if constexpr (Given < std::tuple_size_v<Tuple>)
        return kwargs(std::get<std::tuple_size_v<Tuple> - 1>(std::move(args)));
      else
        return kwargs{};
    } else if constexpr (layout::variadic && I == layout::positional - 1) {
      return [&]<std::size_t... J>(std::index_sequence<J...>) {
        using element = typename param<I>::value_type;
        return param<I>(std::vector<element>{element{std::get<I + J>(std::move(args))}...});
      }
      (std::make_index_sequence<(Given > I ? Given - I : 0)>{});
    } else if constexpr (I < Given) {
      return stored_t<param<I>>{std::get<I>(std::move(args))};
    } else {
      return stored_t<param<I>>{};
    }
  }
};

template <class Tuple>
struct params_of_tuple;
template <class... P>
struct params_of_tuple<std::tuple<P...>> {
  using type = params_of<P...>;
};

template <class F>
using params_for = typename params_of_tuple<typename callable_traits<F>::params>::type;

template <class F>
using result_for = std::remove_cvref_t<typename callable_traits<F>::result_type>;
/// @endcond

/// The calling side shared by executors (`submit`) and brokers (`call`).
/// Derived provides `registry()` and
/// `asio::awaitable<void> dispatch(std::shared_ptr<invocation>, call_options)`.
template <class Derived>
class calls {
 public:
  /// Calls the function registered as `name` with `args`.
  /// @param name the registered name.
  /// @param args the arguments; a patio::kwargs last for keyword arguments.
  /// @returns its result converted to R; by default a dynamic patio::value.
  /// @throws patio::error subclasses: no_route_error, bad_arguments_error,
  /// remote_error (the task threw), type_mismatch_error, timeout_error, ...
  /// @par Cancellation
  /// Cancelling the awaiting coroutine abandons the call: the task is
  /// cancelled where the executor can, and asio::error::operation_aborted
  /// is thrown.
  /// @par Object lifetimes
  /// The arguments are copied (or moved) before call() returns; the broker
  /// or executor must outlive the returned awaitable.
  template <class R = value, class... Args>
  asio::awaitable<R> call(std::string_view name, Args&&... args) {
    return call<R>(call_options{}, name, std::forward<Args>(args)...);
  }

  /// As above, with per-call options such as a timeout.
  /// @param options per-call options (call_options).
  /// @param name    the registered name.
  /// @param args    the arguments; a patio::kwargs last for keyword arguments.
  /// @returns its result converted to R.
  /// @throws as above; patio::timeout_error when the timeout passes.
  /// @par Cancellation
  /// As above; a timeout cancels the task as call_options::timeout says.
  /// @par Object lifetimes
  /// As above.
  template <class R = value, class... Args>
  asio::awaitable<R> call(call_options options, std::string_view name, Args&&... args) {
    auto inv = make_invocation<R>(std::forward<Args>(args)...);
    inv->name = name;
    return run<R>(static_cast<Derived*>(this), std::move(inv), options, nullptr);
  }

  /// Calls `fn` by the name it is registered under. The result type is
  /// fn's; the arguments are checked against fn's parameters at compile time
  /// and travel as exactly fn's parameter types.
  /// @param fn   a registered function; called by the first name it was
  ///             registered under.
  /// @param args arguments that convert to fn's parameters without narrowing.
  /// @returns fn's result.
  /// @throws patio::unknown_function_error if fn is not registered; else as
  /// call(name, args).
  /// @par Cancellation
  /// As call(name, args).
  /// @par Object lifetimes
  /// As call(name, args).
  template <function_type F, class... Args>
  asio::awaitable<result_for<F*>> call(F* fn, Args&&... args) {
    return call(call_options{}, fn, std::forward<Args>(args)...);
  }

  /// Calls `fn` by name, with per-call options such as a timeout.
  /// @param options per-call options (call_options).
  /// @param fn      a registered function.
  /// @param args    arguments that convert to fn's parameters.
  /// @returns fn's result.
  /// @throws as call(fn, args); patio::timeout_error when the timeout passes.
  /// @par Cancellation
  /// As call(name, args).
  /// @par Object lifetimes
  /// As call(name, args).
  template <function_type F, class... Args>
  asio::awaitable<result_for<F*>> call(call_options options, F* fn, Args&&... args) {
    using params = params_for<F*>;
    static_assert(params::template accepts<Args...>(),
                  "patio: these arguments do not fit the function's parameters (count, or a type that does not "
                  "convert without narrowing)");
    using R = result_for<F*>;
    using tuple_t = decltype(params::build(std::forward<Args>(args)...));
    auto inv = [&]<class... P>(std::tuple<P...>*) -> std::shared_ptr<typed_result<R>> {
      return std::make_shared<local_invocation<R, P...>>(params::build(std::forward<Args>(args)...));
    }(static_cast<tuple_t*>(nullptr));
    std::exception_ptr unknown;
    try {
      inv->name = static_cast<Derived*>(this)->registry().name_of(fn);
    } catch (...) {
      unknown = std::current_exception();
    }
    return run<R>(static_cast<Derived*>(this), std::move(inv), options, unknown);
  }

  /// What the calls made through this object did so far, per function:
  /// calls, errors, timeouts, in flight and a latency histogram (see
  /// patio/metrics.hpp). Safe from any thread, while calls run.
  /// @returns a copy of the counters at this moment.
  [[nodiscard]] metrics_snapshot metrics() const { return metrics_.snapshot(); }

 private:
  template <class R>
  static asio::awaitable<R> run(Derived* self, std::shared_ptr<typed_result<R>> inv, call_options options,
                                std::exception_ptr early) {
    if (early) std::rethrow_exception(early);
    // Touches only the counters once the call is under way: the broker may
    // be gone by the time a cancelled call ends.
    auto counted = static_cast<calls*>(self)->metrics_.start(inv->name);
    try {
      co_await self->dispatch(inv, options);
      if constexpr (std::is_void_v<R>) {
        inv->take_result();
        counted.succeeded();
        co_return;
      } else {
        R result = inv->take_result();
        counted.succeeded();
        co_return result;
      }
    } catch (const timeout_error&) {
      counted.timed_out();
      throw;
    }
  }

  call_metrics metrics_;
};

}  // namespace patio::detail
