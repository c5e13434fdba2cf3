// SPDX-License-Identifier: MIT
#pragma once

#include <patio/error.hpp>
#include <patio/function.hpp>

#include <atomic>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace patio {

/// Options of a registry. The defaults are patio's.
struct registry_options {
  /// Prefix of automatic names ("shop" gives "shop.pricing.quote"); empty
  /// for none. Callers and workers of one project should agree on it.
  std::string project{};

  /// When false, every function needs an explicit name.
  bool auto_naming = true;

  /// Appends a hash of the function's signature to automatic names, so that
  /// a caller built against a different signature finds no function.
  bool strict = false;
};

/// @cond internals
namespace detail {
/// The registry's text for a compiler-made qualified name: "::" becomes ".",
/// anonymous namespaces are spelt alike by both compilers.
std::string normalize_name(std::string_view qualified);
/// FNV-1a of `text`, as 16 hex digits.
std::string signature_hash(std::string_view text);
using identity = void (*)();
}  // namespace detail
/// @endcond

/// A map from names to type-erased callables: what an executor may run and
/// what a caller may name.
///
/// Register before any broker starts: the first one locks the registry, and
/// from then on it is immutable, so lookups from any thread are safe. Until
/// then it is not synchronised: change it from one thread.
///
/// @par Object lifetimes
/// The registry must outlive the executors and brokers that use it.
// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): only copying is deleted; moving is meant to be absent.
class registry {
  using map_type = std::map<std::string, function, std::less<>>;

 public:
  /// Iterates over (name, function) pairs in name order.
  using const_iterator = map_type::const_iterator;
  /// `std::pair<const std::string, patio::function>`.
  using value_type = map_type::value_type;

  /// An empty registry with the default options.
  registry() = default;
  /// An empty registry.
  /// @param options naming rules (registry_options).
  explicit registry(registry_options options) : options_(std::move(options)) {}

  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Registers `f` under `name`: a function, function pointer, lambda or
  /// function object; synchronous or returning asio::awaitable<T>.
  /// @param name the name callers use; not empty.
  /// @param f    the callable, copied or moved into the registry.
  /// @returns the name, stored in the registry.
  /// @throws patio::registry_error if the name is taken, empty, or the
  /// registry is locked.
  template <class F>
  // NOLINTNEXTLINE(performance-unnecessary-value-param): name is moved into insert(); clang-tidy 14 misses it here.
  const std::string& add(std::string name, F&& f) {
    return insert(std::move(name), detail::make_function(decay(std::forward<F>(f))), identity_of(f));
  }

  /// Registers the function `F` under its automatic name, derived at compile
  /// time from its qualified name: `project.ns.function`.
  /// @returns the name, stored in the registry.
  /// @throws patio::registry_error as add(name, f), and if auto naming is off.
  template <auto F>
  const std::string& add() {
    return add(auto_name<F>(), F);
  }

  /// Registers a named function object under an automatic name derived from
  /// its type. Plain functions go through add<&f>(); lambdas need a name.
  /// @param f the function object, copied or moved into the registry.
  /// @returns the name, stored in the registry.
  /// @throws patio::registry_error as add(name, f), and if auto naming is off.
  template <detail::class_type F>
  const std::string& add(F&& f) {
    static_assert(!detail::is_lambda<std::remove_cvref_t<F>>(),
                  "patio: a lambda has no stable name: register it with rpc.add(\"name\", lambda)");
    return add(auto_name_of_type<std::remove_cvref_t<F>>(), std::forward<F>(f));
  }

  /// The automatic name the function `F` gets in this registry.
  /// @returns e.g. "shop.pricing.quote".
  /// @throws patio::registry_error if auto naming is off.
  template <auto F>
  [[nodiscard]] std::string auto_name() const {
    using traits = detail::callable_traits<std::remove_pointer_t<decltype(F)>>;
    static_assert(traits::valid, "patio: add<F>() takes a function, e.g. rpc.add<&mul>()");
    return make_auto_name(detail::function_name<F>(), signature_of_type<std::decay_t<decltype(F)>>());
  }

  /// Map-like registration: `rpc["mul"] = mul;`
  class slot {
   public:
    /// Registers `f` under the slot's name, as registry::add(name, f).
    /// @param f the callable.
    /// @returns *this.
    /// @throws patio::registry_error as registry::add().
    template <class F>
    slot& operator=(F&& f) {
      registry_.add(std::move(name_), std::forward<F>(f));
      return *this;
    }

   private:
    friend class registry;
    slot(registry& r, std::string name) : registry_(r), name_(std::move(name)) {}
    registry& registry_;
    std::string name_;
  };
  /// `rpc["mul"] = mul;` registers mul as "mul".
  /// @param name the name the assignment registers under.
  /// @returns a slot to assign a callable to; it refers to this registry.
  slot operator[](std::string name) { return {*this, std::move(name)}; }

  /// Whether a function is registered as `name`.
  /// @param name a name.
  /// @returns true if find(name) finds it.
  [[nodiscard]] bool contains(std::string_view name) const { return map_.find(name) != map_.end(); }
  /// @returns how many functions are registered.
  [[nodiscard]] std::size_t size() const noexcept { return map_.size(); }
  /// @returns whether none is.
  [[nodiscard]] bool empty() const noexcept { return map_.empty(); }
  /// @returns the first (name, function) pair, in name order.
  [[nodiscard]] const_iterator begin() const noexcept { return map_.begin(); }
  /// @returns the end of the pairs.
  [[nodiscard]] const_iterator end() const noexcept { return map_.end(); }

  /// The non-throwing look-up.
  /// @param name a name.
  /// @returns the function named `name`, or nullptr; valid while it stays
  /// registered.
  [[nodiscard]] const function* find(std::string_view name) const;

  /// The throwing look-up.
  /// @param name a name.
  /// @returns the function named `name`; valid while it stays registered.
  /// @throws patio::unknown_function_error if there is none.
  [[nodiscard]] const function& at(std::string_view name) const;

  /// Every registered name.
  /// @returns the names, in name order.
  [[nodiscard]] std::vector<std::string> names() const;

  /// Removes `name`.
  /// @param name a name.
  /// @returns whether it was there.
  /// @throws patio::registry_error if the registry is locked.
  bool erase(std::string_view name);

  /// The names `fn` is registered under, in order of registration.
  /// @param fn a function.
  /// @returns its names; empty if it is not registered (or was registered
  /// as a function object).
  template <class R, class... P>
  [[nodiscard]] std::vector<std::string> names_of(R (*fn)(P...)) const {
    return names_of_identity(reinterpret_cast<detail::identity>(fn));
  }

  /// The first name `fn` was registered under.
  /// @param fn a function.
  /// @returns the name, stored in the registry.
  /// @throws patio::unknown_function_error if it is not registered.
  template <class R, class... P>
  [[nodiscard]] const std::string& name_of(R (*fn)(P...)) const {
    return name_of_identity(reinterpret_cast<detail::identity>(fn));
  }

  /// Makes the registry immutable; brokers do this when they start.
  /// Idempotent.
  void lock() noexcept { locked_.store(true, std::memory_order_release); }
  /// @returns whether lock() was called: add() and erase() then throw.
  [[nodiscard]] bool locked() const noexcept { return locked_.load(std::memory_order_acquire); }

  /// @returns the options it was made with.
  [[nodiscard]] const registry_options& options() const noexcept { return options_; }
  /// @returns the prefix of automatic names: `options().project`.
  [[nodiscard]] const std::string& project() const noexcept { return options_.project; }

 private:
  template <class F>
  static auto decay(F&& f) {
    if constexpr (std::is_function_v<std::remove_reference_t<F>>)
      return &f;
    else
      return std::decay_t<F>(std::forward<F>(f));
  }

  template <class F>
  static detail::identity identity_of(const F& f) {
    using D = std::decay_t<F>;
    if constexpr (std::is_function_v<std::remove_reference_t<F>>)
      return reinterpret_cast<detail::identity>(&f);
    else if constexpr (std::is_pointer_v<D> && std::is_function_v<std::remove_pointer_t<D>>)
      return reinterpret_cast<detail::identity>(f);
    else
      return nullptr;
  }

  template <class T>
  std::string auto_name_of_type() const {
    using traits = detail::callable_traits<T>;
    static_assert(traits::valid, "patio: cannot deduce the call operator of this function object");
    return make_auto_name(detail::type_name<T>(), signature_of_type<T>());
  }

  template <class T>
  static std::string signature_of_type() {
    using traits = detail::callable_traits<T>;
    return [&]<class... P>(std::tuple<P...>*) {
      std::string out = "(";
      bool first = true;
      ((out += (first ? "" : ", ") + detail::describe<P>(), first = false), ...);
      return out + ") -> " + detail::describe<std::remove_cvref_t<typename traits::result_type>>();
    }(static_cast<typename traits::params*>(nullptr));
  }

  std::string make_auto_name(std::string_view qualified, const std::string& signature) const;
  const std::string& insert(std::string name, std::shared_ptr<const detail::function_base> fn,
                            detail::identity identity);
  std::vector<std::string> names_of_identity(detail::identity id) const;
  const std::string& name_of_identity(detail::identity id) const;

  registry_options options_;
  map_type map_;
  std::vector<std::pair<detail::identity, std::string>> identities_;
  std::atomic<bool> locked_{false};
};

}  // namespace patio
