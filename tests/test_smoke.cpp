// SPDX-License-Identifier: MIT
#include "support.hpp"

#include <catch2/catch.hpp>

namespace {
std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}
}  // namespace

TEST_CASE("a memory broker call returns the task's result", "[memory_broker]") {
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::thread_pool_executor executor{rpc, 2};
  patio::memory_broker broker{executor};
  auto r = patio::test::run(broker.call<std::int64_t>("mul", 1, 2, 3));
  CHECK(r == 6);
}
