// SPDX-License-Identifier: MIT
#pragma once

#include <patio/codec.hpp>
#include <patio/detail/invocation.hpp>

#include <asio/awaitable.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace patio {

/// @cond internals
namespace detail {

/// A plain function type, as `F` in `F* fn`.
template <class F>
concept function_type = std::is_function_v<F>;

/// A class (a function object), after removing references and cv.
template <class F>
concept class_type = std::is_class_v<std::remove_cvref_t<F>>;

template <class T>
struct awaitable_traits {
  static constexpr bool is_awaitable = false;
  using result = T;
};
template <class T, class E>
struct awaitable_traits<asio::awaitable<T, E>> {
  static constexpr bool is_awaitable = true;
  using result = T;
};

template <class R, class... P>
struct signature_traits {
  using return_type = R;
  using result_type = typename awaitable_traits<R>::result;
  using params = std::tuple<P...>;
  static constexpr bool is_coroutine = awaitable_traits<R>::is_awaitable;
};

/// The signature of a callable: function, function pointer or a class with a
/// single, non-template call operator.
template <class F, class = void>
struct callable_traits {
  static constexpr bool valid = false;
};
template <class R, class... P>
struct callable_traits<R(P...)> : signature_traits<R, P...> {
  static constexpr bool valid = true;
};
template <class R, class... P>
struct callable_traits<R(P...) noexcept> : callable_traits<R(P...)> {};
template <class R, class... P>
struct callable_traits<R (*)(P...)> : callable_traits<R(P...)> {};
template <class R, class... P>
struct callable_traits<R (*)(P...) noexcept> : callable_traits<R(P...)> {};
template <class C, class R, class... P>
struct callable_traits<R (C::*)(P...)> : callable_traits<R(P...)> {};
template <class C, class R, class... P>
struct callable_traits<R (C::*)(P...) const> : callable_traits<R(P...)> {};
template <class C, class R, class... P>
struct callable_traits<R (C::*)(P...) noexcept> : callable_traits<R(P...)> {};
template <class C, class R, class... P>
struct callable_traits<R (C::*)(P...) const noexcept> : callable_traits<R(P...)> {};
template <class F>
struct callable_traits<F, std::void_t<decltype(&F::operator())>> : callable_traits<decltype(&F::operator())> {};

template <class T>
inline constexpr bool is_optional = false;
template <class T>
inline constexpr bool is_optional<std::optional<T>> = true;

/// Parameter layout of a registered function: positional parameters, then
/// an optional varargs<T>, then an optional kwargs; how many positional
/// arguments it needs at least and at most (SIZE_MAX with varargs).
template <class... P>
struct param_layout {
  static constexpr std::size_t count = sizeof...(P);
  static constexpr bool takes_kwargs = [] {
    bool flags[] = {false, is_kwargs<std::remove_cvref_t<P>>...};
    return count > 0 && flags[count];
  }();
  static constexpr std::size_t positional = takes_kwargs ? count - 1 : count;
  static constexpr bool variadic = [] {
    bool flags[] = {false, is_varargs<std::remove_cvref_t<P>>...};
    return positional > 0 && flags[positional];
  }();
  static constexpr std::size_t fixed = variadic ? positional - 1 : positional;
  static constexpr std::size_t required = [] {
    bool optional[] = {false, is_optional<std::remove_cvref_t<P>>...};
    std::size_t n = fixed;
    while (n > 0 && optional[n]) --n;
    return n;
  }();
  static constexpr std::size_t max = variadic ? std::size_t(-1) : fixed;
};

/// Wraps the exception a task threw as patio::remote_error, keeping its
/// dynamic type name; a remote_error from a nested call passes unchanged.
std::exception_ptr wrap_task_exception(std::exception_ptr e) noexcept;

[[noreturn]] void throw_argument_count(const std::string& function, std::size_t required, std::size_t max,
                                       std::size_t given);
[[noreturn]] void throw_argument_type(const std::string& function, std::size_t position, const std::string& expected,
                                      const msgpack::object& given);
[[noreturn]] void throw_unexpected_keyword(const std::string& function, const kwargs& given);

template <class T>
T convert_argument(const msgpack::object& o, const std::string& function, std::size_t position) {
  T out{};
  try {
    o.convert(out);
  } catch (const std::exception&) {
    throw_argument_type(function, position, describe<T>(), o);
  }
  return out;
}

template <class T>
T convert_param(const msgpack::object_array& args, std::size_t index, const std::string& function) {
  if constexpr (is_varargs<T>) {
    using element = typename T::value_type;
    T rest;
    if (index < args.size) rest.reserve(args.size - index);
    for (auto i = index; i < args.size; ++i) rest.push_back(convert_argument<element>(args.ptr[i], function, i));
    return rest;
  } else {
    if (index >= args.size) return T{};  // an omitted trailing std::optional
    return convert_argument<T>(args.ptr[index], function, index);
  }
}

template <class T>
T make_param(const msgpack::object_array& args, const kwargs* keywords, std::size_t index,
             const std::string& function) {
  if constexpr (is_kwargs<T>)
    return keywords ? *keywords : kwargs{};
  else
    return convert_param<T>(args, index, function);
}

/// The arguments of `inv` as the parameter tuple of a function taking P...:
/// moved when the caller's types match exactly, else converted one by one.
/// @throws patio::bad_arguments_error naming function, position and types.
template <class... P>
std::tuple<std::decay_t<P>...> decode_args(invocation& inv, lazy_zone& zone) {
  using tuple_t = std::tuple<std::decay_t<P>...>;
  if (inv.args_type() == type_of<tuple_t>()) return std::move(*static_cast<tuple_t*>(inv.typed_args()));

  const msgpack::object args = inv.args_object(zone);
  if (args.type != msgpack::type::ARRAY) throw bad_arguments_error(inv.name + ": arguments are not an array");
  using layout = param_layout<P...>;
  const std::size_t given = args.via.array.size;
  if (given < layout::required || given > layout::max)
    throw_argument_count(inv.name, layout::required, layout::max, given);
  const kwargs* keywords = inv.keywords();
  if constexpr (!layout::takes_kwargs) {
    if (keywords && !keywords->empty()) throw_unexpected_keyword(inv.name, *keywords);
  }
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return tuple_t{make_param<std::decay_t<P>>(args.via.array, keywords, I, inv.name)...};
  }
  (std::index_sequence_for<P...>{});
}

template <class R>
void deliver_result(invocation& inv, R& result) {
  if (inv.result_type() == type_of<R>()) {
    inv.set_typed_result(&result);
  } else {
    lazy_zone zone;
    inv.set_object_result(zone.object(result));
  }
}

inline void deliver_void(invocation& inv) {
  if (inv.result_type() == type_of<void>()) {
    inv.set_typed_result(nullptr);
  } else {
    inv.set_object_result(msgpack::object());
  }
}

/// A registered callable with its type erased. Never throws out of invoke:
/// every failure ends up in the invocation.
class function_base {
 public:
  virtual ~function_base() = default;

  [[nodiscard]] virtual bool is_coroutine() const noexcept = 0;
  [[nodiscard]] virtual std::string signature() const = 0;
  [[nodiscard]] virtual std::size_t min_args() const noexcept = 0;
  [[nodiscard]] virtual std::size_t max_args() const noexcept = 0;

  /// Runs a synchronous function to completion in the calling thread.
  virtual void invoke(invocation& inv) const noexcept = 0;

  /// Runs a coroutine function; completes when it does.
  virtual asio::awaitable<void> invoke_async(std::shared_ptr<invocation> inv) const = 0;
};

template <class F, class Traits, class Params = typename Traits::params>
class function_impl;

template <class F, class Traits, class... P>
class function_impl<F, Traits, std::tuple<P...>> final : public function_base {
  using result = std::remove_cvref_t<typename Traits::result_type>;
  using layout = param_layout<P...>;

  static_assert(((!std::is_lvalue_reference_v<P> || std::is_const_v<std::remove_reference_t<P>>)&&...),
                "patio: parameters of registered functions must be values or const references");
  static_assert(((!is_varargs<std::remove_cvref_t<P>> || layout::variadic) && ...),
                "patio: varargs<T> must be the last positional parameter (only kwargs may follow it)");
  static_assert(((!is_kwargs<std::remove_cvref_t<P>> || layout::takes_kwargs) && ...),
                "patio: patio::kwargs must be the last parameter");

 public:
  explicit function_impl(F f) : f_(std::move(f)) {}

  [[nodiscard]] bool is_coroutine() const noexcept override { return Traits::is_coroutine; }

  [[nodiscard]] std::string signature() const override {
    std::string out = "(";
    bool first = true;
    ((out += (first ? "" : ", ") + describe<P>(), first = false), ...);
    return out + ") -> " + describe<result>();
  }

  [[nodiscard]] std::size_t min_args() const noexcept override { return layout::required; }
  [[nodiscard]] std::size_t max_args() const noexcept override { return layout::max; }

  void invoke(invocation& inv) const noexcept override {
    if constexpr (Traits::is_coroutine) {
      inv.set_error(
          std::make_exception_ptr(executor_refused_error(inv.name + ": a coroutine cannot run synchronously")));
    } else {
      try {
        lazy_zone zone;
        auto args = decode_args<P...>(inv, zone);
        if constexpr (std::is_void_v<result>) {
          try {
            std::apply(f_, std::move(args));
          } catch (...) {
            inv.set_error(wrap_task_exception(std::current_exception()));
            return;
          }
          deliver_void(inv);
        } else {
          std::optional<result> r;
          try {
            r.emplace(std::apply(f_, std::move(args)));
          } catch (...) {
            inv.set_error(wrap_task_exception(std::current_exception()));
            return;
          }
          deliver_result(inv, *r);
        }
      } catch (...) {
        inv.set_error(std::current_exception());
      }
    }
  }

  asio::awaitable<void> invoke_async(std::shared_ptr<invocation> inv) const override {
    if constexpr (!Traits::is_coroutine) {
      invoke(*inv);
      co_return;
    } else {
      lazy_zone zone;
      std::optional<std::tuple<std::decay_t<P>...>> args;
      try {
        args.emplace(decode_args<P...>(*inv, zone));
      } catch (...) {
        inv->set_error(std::current_exception());
        co_return;
      }
      std::exception_ptr task_error;
      std::optional<std::conditional_t<std::is_void_v<result>, char, result>> r;
      try {
        if constexpr (std::is_void_v<result>) {
          co_await std::apply(f_, std::move(*args));
          r.emplace();
        } else {
          r.emplace(co_await std::apply(f_, std::move(*args)));
        }
      } catch (...) {
        task_error = wrap_task_exception(std::current_exception());
      }
      if (task_error) {
        inv->set_error(task_error);
        co_return;
      }
      try {
        if constexpr (std::is_void_v<result>) {
          deliver_void(*inv);
        } else {
          deliver_result(*inv, *r);
        }
      } catch (...) {
        inv->set_error(std::current_exception());
      }
    }
  }

 private:
  mutable F f_;
};

template <class F>
std::shared_ptr<const function_base> make_function(F f) {
  using traits = callable_traits<F>;
  static_assert(traits::valid,
                "patio: cannot deduce the signature: register a function, a function pointer or an object "
                "with one non-template operator()");
  return std::make_shared<function_impl<F, traits>>(std::move(f));
}

}  // namespace detail
/// @endcond

/// A registered function, as the registry hands it out.
///
/// Copies are cheap and share the callable, which lives as long as the last
/// copy (a running task holds one).
class function {
 public:
  /// Wraps a type-erased callable; registry::add() makes them.
  /// @param impl the callable, not null.
  explicit function(std::shared_ptr<const detail::function_base> impl) noexcept : impl_(std::move(impl)) {}

  /// The parameter and result types.
  /// @returns e.g. "(int64, str) -> float64" in the codec's type vocabulary.
  [[nodiscard]] std::string signature() const { return impl_->signature(); }

  /// @returns true for functions returning asio::awaitable<T>.
  [[nodiscard]] bool is_coroutine() const noexcept { return impl_->is_coroutine(); }

  /// How many positional arguments a call needs at least.
  /// @returns the positional parameters but varargs and the trailing
  /// std::optional ones (which an absent argument leaves empty).
  [[nodiscard]] std::size_t min_args() const noexcept { return impl_->min_args(); }
  /// How many positional arguments a call takes at most.
  /// @returns the count, or SIZE_MAX for a varargs function.
  [[nodiscard]] std::size_t max_args() const noexcept { return impl_->max_args(); }

  /// The type-erased callable, for executors and brokers.
  /// @returns the shared callable.
  [[nodiscard]] const std::shared_ptr<const detail::function_base>& impl() const noexcept { return impl_; }

 private:
  std::shared_ptr<const detail::function_base> impl_;
};

}  // namespace patio
