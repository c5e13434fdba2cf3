// SPDX-License-Identifier: MIT
#pragma once

#include <string_view>

namespace patio::detail {

/// A per-type address, unique across translation units: cheaper than
/// std::type_info and available without RTTI.
using type_id = const void*;

template <class T>
inline constexpr char type_tag = 0;

template <class T>
constexpr type_id type_of() noexcept {
  return &type_tag<T>;
}

// Both compilers spell a template argument inside __PRETTY_FUNCTION__:
//   g++:   "... [with T = ns::point; std::string_view = ...]"
//   clang: "... [T = ns::point]"
constexpr std::string_view pretty_argument(std::string_view pretty, std::string_view key) noexcept {
  auto start = pretty.find(key);
  if (start == std::string_view::npos) return pretty;
  start += key.size();
  auto end = pretty.find(';', start);
  if (end == std::string_view::npos) end = pretty.rfind(']');
  if (end == std::string_view::npos || end < start) return pretty.substr(start);
  return pretty.substr(start, end - start);
}

/// The compiler's spelling of T, e.g. "ns::point". Not stable across
/// compilers for library types; used for diagnostics and for the names of
/// function objects.
template <class T>
constexpr std::string_view type_name() noexcept {
  return pretty_argument(__PRETTY_FUNCTION__, "T = ");
}

/// The qualified name of the function F points to, e.g. "ns::mul".
template <auto F>
constexpr std::string_view function_name() noexcept {
  auto name = pretty_argument(__PRETTY_FUNCTION__, "F = ");
  if (!name.empty() && name.front() == '&') name.remove_prefix(1);
  return name;
}

/// Lambdas have compiler-made names that differ between compilers and between
/// lambdas of one function; they cannot be named automatically.
template <class T>
constexpr bool is_lambda() noexcept {
  auto name = type_name<T>();
  return name.find("<lambda") != std::string_view::npos || name.find("(lambda at") != std::string_view::npos ||
         name.find("(unnamed") != std::string_view::npos;
}

}  // namespace patio::detail
