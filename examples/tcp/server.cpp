// SPDX-License-Identifier: MIT
// The example TCP server: offers mul(*args) on a thread pool, and serves
// until SIGINT or SIGTERM (or --serve-for seconds).
//
//   server [--address 0.0.0.0] [--port 15383] [--key KEY] [--serve-for SECONDS]
#include <patio/patio.hpp>

#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

struct settings {
  std::string address = "0.0.0.0";
  std::uint16_t port = patio::default_port;
  std::string key;
  int serve_for = 0;  // seconds; 0 for until a signal
};

asio::awaitable<void> serve(patio::tcp_server_broker& server, settings s) {
  auto ex = co_await asio::this_coro::executor;
  asio::signal_set signals(ex, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int) {
    if (!ec) asio::co_spawn(ex, server.close(), asio::detached);
  });
  asio::steady_timer limit(ex);
  if (s.serve_for > 0) {
    limit.expires_after(std::chrono::seconds(s.serve_for));
    limit.async_wait([&](std::error_code ec) {
      if (!ec) asio::co_spawn(ex, server.close(), asio::detached);
    });
  }
  co_await server.join();
  signals.cancel();
  limit.cancel();
}

int main(int argc, char** argv) {
  settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--address")
      s.address = argv[i + 1];
    else if (flag == "--port")
      s.port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
    else if (flag == "--key")
      s.key = argv[i + 1];
    else if (flag == "--serve-for")
      s.serve_for = std::atoi(argv[i + 1]);
    else {
      fmt::print(stderr, "usage: server [--address A] [--port P] [--key K] [--serve-for SECONDS]\n");
      return 2;
    }
  }

  patio::registry rpc{{.project = "patio-example", .auto_naming = false}};
  rpc.add("mul", mul);
  patio::thread_pool_executor executor{rpc, 4};

  asio::io_context io;
  patio::tcp_server_broker server{io.get_executor(), executor, {.key = s.key}};
  const auto port = server.listen(s.address, s.port);
  fmt::print("serving mul on {}:{}\n", s.address, port);
  std::fflush(stdout);
  asio::co_spawn(io, serve(server, s), patio::rethrow);
  io.run();
}
