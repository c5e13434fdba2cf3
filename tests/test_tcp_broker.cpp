// SPDX-License-Identifier: MIT
#include "support.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

asio::awaitable<std::string> slow(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
  co_return "done";
}

std::string fail(std::string what) { throw std::invalid_argument(what); }

asio::awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

/// One side: a registry with the test tasks, an async executor, and a broker.
struct serving_side {
  patio::registry rpc;
  patio::async_executor executor;

  explicit serving_side(std::string id = "server") : executor(register_all(rpc, std::move(id)), 8) {}

  static patio::registry& register_all(patio::registry& rpc, std::string id) {
    rpc.add("mul", mul);
    rpc.add("slow", slow);
    rpc.add("fail", fail);
    rpc.add("who", [id] { return id; });
    return rpc;
  }
};

struct calling_side {
  patio::registry rpc;
  patio::null_executor executor{rpc};
};

template <class E, class F>
std::string thrown_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<nothing thrown>";
}

}  // namespace

TEST_CASE("tcp: a client calls a server's functions", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 1, 2, 3) == 6);
    CHECK(co_await client.call({.timeout = 5s}, "mul", 2, 5) == patio::value(10));
    std::vector<asio::awaitable<std::int64_t>> calls;
    for (int i = 0; i < 100; ++i) calls.push_back(client.call<std::int64_t>({.timeout = 5s}, "mul", i, 2));
    const auto results = co_await patio::gather(std::move(calls));
    for (int i = 0; i < 100; ++i) CHECK(results[i] == 2 * i);
    CHECK(client.connections() == 1);
    CHECK(server.connections() == 1);

    // A task's exception, and bad arguments, come back typed.
    try {
      co_await client.call({.timeout = 5s}, "fail", "nope");
      FAIL("no exception");
    } catch (const patio::remote_error& e) {
      CHECK(e.type_name() == "std::invalid_argument");
      CHECK(std::string(e.what()) == "nope");
    }
    try {
      co_await client.call({.timeout = 5s}, "mul", "x");
      FAIL("no exception");
    } catch (const patio::bad_arguments_error& e) {
      CHECK_THAT(e.what(), Catch::Contains("argument 1: expected int64, got str"));
    }
    // A function the server does not offer has no route.
    try {
      co_await client.call({.timeout = 100ms}, "nope");
      FAIL("no exception");
    } catch (const patio::no_route_error&) {
    }
    // A remote task past the call's timeout.
    try {
      co_await client.call({.timeout = 100ms}, "slow", 5000);
      FAIL("no exception");
    } catch (const patio::timeout_error&) {
    }
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: the server calls a client's functions over the same connection", "[tcp]") {
  asio::io_context io;
  calling_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("::1", 0);  // IPv6 loopback
  serving_side client_side{"client"};
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  client.connect("::1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await server.call<std::string>({.timeout = 5s}, "who") == "client");
    CHECK(co_await server.call<std::int64_t>({.timeout = 5s}, "mul", 6, 7) == 42);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a call waits for a route until its timeout, then fails with no_route_error", "[tcp]") {
  asio::io_context io;
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, {.reconnect_delay = 20ms}};
  serving_side server_side;
  std::optional<patio::tcp_server_broker> server;

  // Find a free port, then start the server only after the call is made.
  std::uint16_t port = 0;
  {
    asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    const auto start = std::chrono::steady_clock::now();
    try {
      co_await client.call({.timeout = 150ms}, "mul", 1, 2);
      FAIL("no exception");
    } catch (const patio::no_route_error&) {
      CHECK(std::chrono::steady_clock::now() - start >= 140ms);
    }
    // Now a server comes up while the call waits: the call goes through.
    auto later = [&]() -> asio::awaitable<void> {
      co_await pause(100ms);
      server.emplace(io.get_executor(), server_side.executor);
      server->listen("127.0.0.1", port);
    };
    asio::co_spawn(io, later(), patio::rethrow);
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 3, 4) == 12);
    co_await client.close();
    co_await server->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a wrong key closes that connection only and the server serves the others", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.key = "right"}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side good_side, bad_side;
  patio::tcp_client_broker good{io.get_executor(), good_side.executor, {.key = "right"}};
  patio::tcp_client_broker bad{io.get_executor(), bad_side.executor, {.key = "wrong", .reconnect_delay = 50ms}};
  bad.connect("127.0.0.1", port);
  good.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await good.call<std::int64_t>({.timeout = 5s}, "mul", 2, 2) == 4);
    try {
      co_await bad.call({.timeout = 300ms}, "mul", 2, 2);
      FAIL("a client with the wrong key got through");
    } catch (const patio::no_route_error&) {
    }
    CHECK(bad.connections() == 0);
    CHECK(server.connections() == 1);
    CHECK(co_await good.call<std::int64_t>({.timeout = 5s}, "mul", 3, 3) == 9);
    co_await good.close();
    co_await bad.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: calls in flight fail at once when the connection drops, and the client reconnects", "[tcp]") {
  asio::io_context io;
  auto server_side = std::make_unique<serving_side>();
  auto server = std::make_unique<patio::tcp_server_broker>(io.get_executor(), server_side->executor);
  const auto port = server->listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, {.reconnect_delay = 20ms}};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 1, 1) == 1);
    auto drop = [&]() -> asio::awaitable<void> {
      co_await pause(100ms);
      co_await server->close();
    };
    asio::co_spawn(io, drop(), patio::rethrow);
    const auto start = std::chrono::steady_clock::now();
    try {
      co_await client.call({.timeout = 10s}, "slow", 5000);
      FAIL("no exception");
    } catch (const patio::connection_error& e) {
      CHECK(std::chrono::steady_clock::now() - start < 2s);  // at once, not at the timeout
      CHECK_THAT(e.what(), Catch::Contains("lost"));
    }
    // A new server on the same port: the client comes back by itself.
    server.reset();
    server_side = std::make_unique<serving_side>();
    server = std::make_unique<patio::tcp_server_broker>(io.get_executor(), server_side->executor);
    server->listen("127.0.0.1", port);
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 5, 5) == 25);
    co_await client.close();
    co_await server->close();
    // After close, calls fail with closed_error.
    CHECK_THROWS_AS(co_await client.call({.timeout = 1s}, "mul", 1), patio::closed_error);
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a frame over max_payload closes that connection and fails its call", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.max_payload = 1024}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 2, 3) == 6);
    const std::string big(4096, 'x');
    try {
      co_await client.call({.timeout = 5s}, "fail", big);
      FAIL("an oversized request went through");
    } catch (const patio::connection_error&) {
    }
    // The client reconnects, and small calls go through again.
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 3, 3) == 9);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: calls go round-robin among the servers that offer the function", "[tcp]") {
  asio::io_context io;
  serving_side a_side{"a"}, b_side{"b"};
  patio::tcp_server_broker a{io.get_executor(), a_side.executor};
  patio::tcp_server_broker b{io.get_executor(), b_side.executor};
  const auto a_port = a.listen("127.0.0.1", 0);
  const auto b_port = b.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  client.connect("127.0.0.1", a_port);
  client.connect("127.0.0.1", b_port);

  auto test = [&]() -> asio::awaitable<void> {
    // Wait for both routes.
    for (int i = 0; i < 500 && client.connections() < 2; ++i) co_await pause(10ms);
    REQUIRE(client.connections() == 2);
    std::map<std::string, int> seen;
    for (int i = 0; i < 10; ++i) ++seen[co_await client.call<std::string>({.timeout = 5s}, "who")];
    CHECK(seen["a"] == 5);
    CHECK(seen["b"] == 5);
    co_await client.close();
    co_await a.close();
    co_await b.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a peer that never speaks or speaks garbage is closed and others are served", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.handshake_timeout = 200ms}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    using asio::ip::tcp;
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    // Silent: closed at the handshake deadline.
    tcp::socket silent(io);
    co_await silent.async_connect(endpoint, asio::use_awaitable);
    const auto start = std::chrono::steady_clock::now();
    std::string sink(1024, '\0');
    std::error_code ec;
    for (;;) {  // the server's AUTH_DIGEST, then EOF
      co_await silent.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    CHECK(ec == asio::error::eof);
    CHECK(std::chrono::steady_clock::now() - start < 2s);

    // Garbage: an unknown packet type, closed at once.
    tcp::socket noisy(io);
    co_await noisy.async_connect(endpoint, asio::use_awaitable);
    const std::string garbage("\x63\x00\x00\x00\x00\x00\x00\x00\x01", 9);
    const auto sent = std::chrono::steady_clock::now();
    co_await asio::async_write(noisy, asio::buffer(garbage), asio::use_awaitable);
    for (;;) {
      co_await noisy.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    CHECK(ec == asio::error::eof);
    CHECK(std::chrono::steady_clock::now() - sent < 150ms);  // at once, not at the handshake deadline

    // A REQUEST before authenticating: never decoded, closed.
    tcp::socket early(io);
    co_await early.async_connect(endpoint, asio::use_awaitable);
    const std::string request = std::string("\x0a\x00\x00\x00\x01\x00\x00\x00\x01", 9) + "\xc0";
    co_await asio::async_write(early, asio::buffer(request), asio::use_awaitable);
    for (;;) {
      co_await early.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    CHECK(ec == asio::error::eof);

    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 7, 6) == 42);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

namespace {

std::string cert(const char* name) { return std::string(PATIO_TEST_CERTS) + "/" + name; }

patio::tls_options server_tls(bool require_client = false) {
  return {.certificate_chain_file = cert("server.pem"),
          .private_key_file = cert("server.key"),
          .ca_file = require_client ? cert("ca.pem") : std::string(),
          .require_client_certificate = require_client};
}

// Options are built in plain functions: g++ 12 miscompiles nested
// designated initializers of structs holding strings inside a coroutine
// (the strings end up pointing into the coroutine frame).
patio::tcp_options client_options(std::optional<patio::tls_options> tls, std::string key = {}) {
  return {.key = std::move(key), .reconnect_delay = 50ms, .tls = std::move(tls)};
}

patio::tls_options trusting(const char* ca, std::string server_name = {}) {
  return {.ca_file = cert(ca), .server_name = std::move(server_name)};
}

patio::tls_options with_client_certificate() {
  return {
      .certificate_chain_file = cert("client.pem"), .private_key_file = cert("client.key"), .ca_file = cert("ca.pem")};
}

/// Whether a client with `tls` reaches the server at `port` within 1 s.
asio::awaitable<bool> reaches(asio::io_context& io, std::uint16_t port, std::optional<patio::tls_options> tls) {
  calling_side side;
  patio::tcp_client_broker client{io.get_executor(), side.executor, client_options(std::move(tls))};
  client.connect("127.0.0.1", port);
  bool ok = false;
  try {
    ok = co_await client.call<std::int64_t>({.timeout = 1s}, "mul", 2, 3) == 6;
  } catch (const patio::no_route_error&) {
  }
  co_await client.close();
  co_return ok;
}

}  // namespace

TEST_CASE("tcp over TLS: the client verifies the server and refuses wrong CAs and names", "[tcp][tls]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.key = "k", .tls = server_tls()}};
  const auto port = server.listen("127.0.0.1", 0);

  auto test = [&]() -> asio::awaitable<void> {
    calling_side side;
    patio::tcp_client_broker client{io.get_executor(), side.executor,
                                    client_options(trusting("ca.pem", "localhost"), "k")};
    client.connect("127.0.0.1", port);
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 6, 7) == 42);

    // A CA that did not sign the server's certificate.
    CHECK_FALSE(co_await reaches(io, port, trusting("other-ca.pem")));
    // The right CA, but a name the certificate does not carry.
    CHECK_FALSE(co_await reaches(io, port, trusting("ca.pem", "elsewhere.example")));
    // Plain TCP against the TLS port.
    CHECK_FALSE(co_await reaches(io, port, std::nullopt));

    // The server kept serving the good client throughout.
    CHECK(co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 2, 2) == 4);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp over mutual TLS: the server refuses clients without a certificate from its CA", "[tcp][tls]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.tls = server_tls(true)}};
  const auto port = server.listen("127.0.0.1", 0);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await reaches(io, port, with_client_certificate()));
    CHECK_FALSE(co_await reaches(io, port, trusting("ca.pem")));
    // Plain TCP against the mutual-TLS port.
    CHECK_FALSE(co_await reaches(io, port, std::nullopt));
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a TLS client against a plain server fails and the server goes on", "[tcp][tls]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  auto test = [&]() -> asio::awaitable<void> {
    CHECK_FALSE(co_await reaches(io, port, trusting("ca.pem")));
    CHECK(co_await reaches(io, port, std::nullopt));
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tls options that cannot work are refused at construction", "[tcp][tls]") {
  asio::io_context io;
  calling_side side;
  CHECK_THROWS_AS(patio::tcp_server_broker(io.get_executor(), side.executor, {.tls = patio::tls_options{}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(patio::tcp_server_broker(io.get_executor(), side.executor,
                                           {.tls = patio::tls_options{.certificate_chain_file = cert("missing.pem"),
                                                                      .private_key_file = cert("server.key")}}),
                  std::system_error);
}
