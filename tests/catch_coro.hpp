// SPDX-License-Identifier: MIT
// Catch2 v2 made safe for co_await inside CHECK and REQUIRE.
#pragma once
// Catch's own macros expand as if from a system header, without warnings
// about the expressions they decompose; so does this redefinition.
#pragma GCC system_header

#include <catch2/catch.hpp>

// g++ 12 evaluates a co_await in two places it must not: inside
// __builtin_constant_p, and in the short-circuited right operand of a
// do-while condition. Catch's CHECK and REQUIRE name their expression in
// both, so `CHECK(co_await call())` made the call three times. The same
// macro without those two uses (docs/guide.md, "Known compiler issues"):
#undef INTERNAL_CATCH_TEST
#define INTERNAL_CATCH_TEST(macroName, resultDisposition, ...)                                               \
  do {                                                                                                       \
    Catch::AssertionHandler catchAssertionHandler(macroName##_catch_sr, CATCH_INTERNAL_LINEINFO,             \
                                                  CATCH_INTERNAL_STRINGIFY(__VA_ARGS__), resultDisposition); \
    INTERNAL_CATCH_TRY {                                                                                     \
      CATCH_INTERNAL_START_WARNINGS_SUPPRESSION                                                              \
      CATCH_INTERNAL_SUPPRESS_PARENTHESES_WARNINGS                                                           \
      catchAssertionHandler.handleExpr(Catch::Decomposer() <= __VA_ARGS__);                                  \
      CATCH_INTERNAL_STOP_WARNINGS_SUPPRESSION                                                               \
    }                                                                                                        \
    INTERNAL_CATCH_CATCH(catchAssertionHandler)                                                              \
    INTERNAL_CATCH_REACT(catchAssertionHandler)                                                              \
  } while (false)
