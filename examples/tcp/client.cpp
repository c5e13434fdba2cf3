// SPDX-License-Identifier: MIT
// The example TCP client: calls mul(1, 2, 3) 100 times at once on a server
// and prints the results. It executes nothing itself (a null executor).
//
//   client [--host 127.0.0.1] [--port 15383] [--key KEY]
#include <patio/patio.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;

asio::awaitable<void> amain(patio::tcp_client_broker& client) {
  std::vector<asio::awaitable<std::int64_t>> calls;
  for (int i = 0; i < 100; ++i) calls.push_back(client.call<std::int64_t>({.timeout = 10s}, "mul", 1, 2, 3));
  fmt::print("{}\n", co_await patio::gather(std::move(calls)));
  co_await client.close();
}

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::uint16_t port = patio::default_port;
  std::string key;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--host")
      host = argv[i + 1];
    else if (flag == "--port")
      port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
    else if (flag == "--key")
      key = argv[i + 1];
    else {
      fmt::print(stderr, "usage: client [--host H] [--port P] [--key K]\n");
      return 2;
    }
  }

  patio::registry rpc;
  patio::null_executor executor{rpc};
  asio::io_context io;
  patio::tcp_client_broker client{io.get_executor(), executor, {.key = key, .reconnect_delay = 100ms}};
  client.connect(host, port);
  asio::co_spawn(io, amain(client), patio::rethrow);
  io.run();
}
