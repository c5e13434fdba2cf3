// SPDX-License-Identifier: MIT
// patio's first quickstart: a synchronous task on a thread pool, called
// through the in-process broker. Gathers 100 concurrent calls of
// mul(1, 2, 3) and prints their results.
#include <patio/patio.hpp>

#include <fmt/ranges.h>

#include <cstdint>
#include <vector>

// Like patio's `def mul(*args)`: every positional argument lands in `args`.
std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

asio::awaitable<void> amain(patio::registry& rpc) {
  patio::thread_pool_executor executor{rpc, 4};
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
