// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/type_name.hpp>

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace patio {
class value;
class kwargs;
template <class T>
class varargs;
}  // namespace patio

namespace patio::detail {

template <class T>
struct describer;

/// A compiler-independent spelling of a parameter or result type, in the
/// codec's vocabulary ("int64", "str", "[float64]", "{str: int32}"). Used in
/// error messages and in the signature hash of strict registries, so it must
/// not depend on the compiler.
template <class T>
std::string describe() {
  return describer<std::remove_cvref_t<T>>::get();
}

template <class T>
struct describer {
  static std::string get() {
    if constexpr (std::is_same_v<T, void>) {
      return "nil";
    } else if constexpr (std::is_same_v<T, bool>) {
      return "bool";
    } else if constexpr (std::is_integral_v<T>) {
      return std::string(std::is_signed_v<T> ? "int" : "uint") + std::to_string(sizeof(T) * 8);
    } else if constexpr (std::is_floating_point_v<T>) {
      return "float" + std::to_string(sizeof(T) * 8);
    } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, const char*> ||
                         std::is_same_v<T, std::string_view>) {
      return "str";
    } else if constexpr (std::is_same_v<T, value>) {
      return "value";
    } else {
      return std::string(type_name<T>());
    }
  }
};

template <class T, std::size_t N>
struct describer<T[N]> {
  static std::string get() {
    if constexpr (std::is_same_v<std::remove_cv_t<T>, char>) return "str";
    return "[" + describe<T>() + "]";
  }
};

template <>
struct describer<std::vector<std::byte>> {
  static std::string get() { return "bytes"; }
};

template <class T, class A>
struct describer<std::vector<T, A>> {
  static std::string get() { return "[" + describe<T>() + "]"; }
};

template <class T>
struct describer<varargs<T>> {
  static std::string get() { return "..." + describe<T>(); }
};

template <>
struct describer<kwargs> {
  static std::string get() { return "**kwargs"; }
};

template <class T>
struct describer<std::optional<T>> {
  static std::string get() { return describe<T>() + "?"; }
};

template <class K, class V, class C, class A>
struct describer<std::map<K, V, C, A>> {
  static std::string get() { return "{" + describe<K>() + ": " + describe<V>() + "}"; }
};

template <class K, class V, class H, class E, class A>
struct describer<std::unordered_map<K, V, H, E, A>> {
  static std::string get() { return "{" + describe<K>() + ": " + describe<V>() + "}"; }
};

template <class... T>
struct describer<std::tuple<T...>> {
  static std::string get() {
    std::string out = "(";
    bool first = true;
    ((out += (first ? "" : ", ") + describe<T>(), first = false), ...);
    return out + ")";
  }
};

}  // namespace patio::detail
