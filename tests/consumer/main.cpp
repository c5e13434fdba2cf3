// SPDX-License-Identifier: MIT
// Exits 0 when a call through an installed or vendored patio returns 6.
#include <patio/patio.hpp>

#include <cstdint>

namespace {

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

asio::awaitable<void> check(patio::registry& rpc, int& status) {
  patio::thread_pool_executor executor{rpc, 2};
  patio::memory_broker broker{executor};
  status = co_await broker.call<std::int64_t>("mul", 1, 2, 3) == 6 ? 0 : 1;
}

}  // namespace

int main() {
  patio::registry rpc;
  rpc.add("mul", mul);
  int status = 2;
  asio::io_context io;
  asio::co_spawn(io, check(rpc, status), patio::rethrow);
  io.run();
  return status;
}
