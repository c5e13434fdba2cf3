// SPDX-License-Identifier: MIT
// patio's second quickstart: a coroutine task on the async executor, which
// runs at most 4 of them at once on the caller's io_context. Gathers 100
// concurrent calls of mul(1, 2, 3) and prints their results.
#include <patio/patio.hpp>

#include <fmt/ranges.h>

#include <cstdint>
#include <vector>

asio::awaitable<std::int64_t> mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  co_return product;
}

asio::awaitable<void> amain(patio::registry& rpc) {
  patio::async_executor executor{rpc, 4};
  patio::memory_broker broker{executor};

  std::vector<asio::awaitable<patio::value>> calls;
  for (int i = 0; i < 100; ++i) calls.push_back(broker.call("mul", 1, 2, 3));
  fmt::print("{}\n", co_await patio::gather(std::move(calls)));
}

int main() {
  patio::registry rpc{{.project = "patio-example", .auto_naming = false}};
  rpc.add("mul", mul);

  asio::io_context io;
  asio::co_spawn(io, amain(rpc), patio::rethrow);
  io.run();
}
