// SPDX-License-Identifier: MIT
#pragma once

#include <patio/codec.hpp>

#include <fmt/format.h>

#include <algorithm>

/// @file
/// fmt support for patio::value: `fmt::print("{}", v)` prints v.to_string().

/// @cond internals
/// Formats a patio::value as its to_string(): `fmt::print("{}", v)`.
/// Inside ranges too: `[6, 6, 6]`, not quoted.
template <>
struct fmt::formatter<patio::value> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }

  template <class FormatContext>
  auto format(const patio::value& v, FormatContext& ctx) const {
    auto text = v.to_string();
    return std::copy(text.begin(), text.end(), ctx.out());
  }
};
/// @endcond
