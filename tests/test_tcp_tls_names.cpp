// SPDX-License-Identifier: MIT
// Which certificates a TLS client accepts: the name it checks, the dates.
#include "tcp_fixtures.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace {

using namespace std::chrono_literals;

using patio::test::tcp::cert;
using patio::test::tcp::mul;

patio::tcp_options server_options() {
  return {.tls =
              patio::tls_options{.certificate_chain_file = cert("server.pem"), .private_key_file = cert("server.key")}};
}

patio::tcp_options client_options(std::string server_name, bool verify) {
  return {.reconnect_delay = 50ms,
          .tls = patio::tls_options{
              .ca_file = cert("ca.pem"), .server_name = std::move(server_name), .verify_server_name = verify}};
}

/// Whether a client with `options` connecting to `host` reaches the server.
asio::awaitable<bool> reaches(asio::io_context& io, std::string host, std::uint16_t port, patio::tcp_options options) {
  patio::registry rpc;
  patio::null_executor executor{rpc};
  patio::tcp_client_broker client{io.get_executor(), executor, std::move(options)};
  client.connect(std::move(host), port);
  bool ok = false;
  try {
    ok = co_await client.call<std::int64_t>({.timeout = 1s}, "mul", 2, 3) == 6;
  } catch (const patio::no_route_error&) {
  }
  co_await client.close();
  co_return ok;
}

}  // namespace

TEST_CASE("tcp over TLS: by default the client checks the host it connects to", "[tcp][tls]") {
  asio::io_context io;
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::async_executor executor{rpc};
  patio::tcp_server_broker server{io.get_executor(), executor, server_options()};
  // All of 127.0.0.0/8 is loopback; the certificate names 127.0.0.1 only.
  const auto port = server.listen("0.0.0.0", 0);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await reaches(io, "127.0.0.1", port, client_options({}, true)));
    CHECK(co_await reaches(io, "localhost", port, client_options({}, true)));
    CHECK_FALSE(co_await reaches(io, "127.0.0.2", port, client_options({}, true)));
    // An explicit name wins over the host; switching the check off lets any
    // name through, but never an untrusted chain (tests/test_tcp_broker.cpp).
    CHECK(co_await reaches(io, "127.0.0.2", port, client_options("localhost", true)));
    CHECK_FALSE(co_await reaches(io, "127.0.0.1", port, client_options("elsewhere.example", true)));
    CHECK(co_await reaches(io, "127.0.0.2", port, client_options({}, false)));
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp over TLS: a client refuses a server whose certificate has expired", "[tcp][tls]") {
  asio::io_context io;
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::async_executor executor{rpc};
  patio::tcp_options options{.tls = patio::tls_options{.certificate_chain_file = cert("expired.pem"),
                                                       .private_key_file = cert("expired.key")}};
  patio::tcp_server_broker expired{io.get_executor(), executor, std::move(options)};
  const auto port = expired.listen("127.0.0.1", 0);

  auto test = [&]() -> asio::awaitable<void> {
    // Same CA, same names: only the dates are wrong. Skipping the name
    // check does not let it through either.
    CHECK_FALSE(co_await reaches(io, "localhost", port, client_options({}, true)));
    CHECK_FALSE(co_await reaches(io, "localhost", port, client_options({}, false)));
    co_await expired.close();
  };
  patio::test::run(io, test());
}
