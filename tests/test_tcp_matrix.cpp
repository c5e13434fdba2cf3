// SPDX-License-Identifier: MIT
// The TCP brokers' behaviour matrix: every transport (plain TCP, TLS, mutual
// TLS) against every call outcome (a result either way, the serial wrap, a
// remote exception, a timeout, a missing route). Both sides serve the same
// tasks, so each outcome is checked in both directions on one connection.
//
// No check here (nor in test_tcp_broker.cpp) has a co_await inside a Catch
// assertion: g++ 12 evaluates it three times there (CHECK repeats its
// expression in __builtin_constant_p and in a never-taken `false && ...`),
// so the call would run thrice. Await into a variable, then check.
#include "tcp_fixtures.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace patio::test::tcp;
using clock_type = std::chrono::steady_clock;
using namespace asio::experimental::awaitable_operators;

// The three transports. Both sides share a key, so the handshake runs inside
// TLS too.
struct plain_tcp {
  static patio::tcp_options server() { return {.key = "matrix"}; }
  static patio::tcp_options client() { return plain_options("matrix"); }
};

struct tls_tcp {
  static patio::tcp_options server() { return {.key = "matrix", .tls = server_tls()}; }
  static patio::tcp_options client() { return client_options(trusting("ca.pem", "localhost"), "matrix"); }
};

struct mutual_tls_tcp {
  static patio::tcp_options server() { return {.key = "matrix", .tls = server_tls(true)}; }
  static patio::tcp_options client() { return client_options(with_client_certificate(), "matrix"); }
};

/// Both brokers of one connection, each serving the test tasks ("who"
/// answers "server" or "client").
template <class Mode>
struct connected_pair {
  asio::io_context io;
  serving_side server_side{"server"};
  serving_side client_side{"client"};
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, Mode::server()};
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, Mode::client()};
  std::uint16_t port = server.listen("127.0.0.1", 0);

  void connect() { client.connect("127.0.0.1", port); }
};

/// The first call over a fresh connection also waits for it to come up.
template <class Broker>
asio::awaitable<void> calls_reach(Broker* caller, std::string peer) {
  const auto who = co_await caller->template call<std::string>({.timeout = 10s}, "who");
  CHECK(who == peer);
  const auto product = co_await caller->template call<std::int64_t>({.timeout = 5s}, "mul", 6, 7);
  CHECK(product == 42);
}

/// `n` calls one after another, each with a result of its own.
template <class Broker>
asio::awaitable<void> sequential_calls(Broker* caller, int n) {
  for (int i = 1; i <= n; ++i) {
    const auto product = co_await caller->template call<std::int64_t>({.timeout = 5s}, "mul", i, 3);
    CHECK(product == 3 * i);
  }
}

/// `n` calls in flight at once.
template <class Broker>
asio::awaitable<void> concurrent_calls(Broker* caller, int n) {
  std::vector<asio::awaitable<std::int64_t>> calls;
  for (int i = 0; i < n; ++i) calls.push_back(caller->template call<std::int64_t>({.timeout = 5s}, "mul", i, 5));
  const auto results = co_await patio::gather(std::move(calls));
  for (int i = 0; i < n; ++i) CHECK(results[i] == 5 * i);
}

template <class Broker>
asio::awaitable<void> remote_exception(Broker* caller) {
  try {
    co_await caller->call({.timeout = 5s}, "fail", "bad input");
    FAIL("no exception");
  } catch (const patio::remote_error& e) {
    CHECK(e.type_name() == "std::invalid_argument");
    CHECK(std::string(e.what()) == "bad input");
    CHECK(e.value() == patio::errc::remote_error);
  }
}

/// A slow task past the call's timeout: timeout_error at the timeout, not
/// long after; and the connection goes on serving.
template <class Broker>
asio::awaitable<void> times_out(Broker* caller) {
  constexpr auto timeout = 200ms;
  const auto start = clock_type::now();
  try {
    co_await caller->call({.timeout = timeout}, "slow", 30'000);
    FAIL("no exception");
  } catch (const patio::timeout_error&) {
    const auto elapsed = clock_type::now() - start;
    CHECK(elapsed >= timeout - 5ms);
    CHECK(elapsed < timeout + 5s);  // loose for a loaded machine; the task would take 30 s
  }
  const auto product = co_await caller->template call<std::int64_t>({.timeout = 5s}, "mul", 2, 2);
  CHECK(product == 4);
}

/// A name nobody offers, with the peer connected: no_route_error once the
/// call's timeout has passed.
template <class Broker>
asio::awaitable<void> has_no_route(Broker* caller) {
  constexpr auto timeout = 200ms;
  const auto start = clock_type::now();
  try {
    co_await caller->call({.timeout = timeout}, "nobody_offers_this", 1);
    FAIL("no exception");
  } catch (const patio::no_route_error& e) {
    const auto elapsed = clock_type::now() - start;
    CHECK(elapsed >= timeout - 5ms);
    CHECK(elapsed < timeout + 5s);
    CHECK_THAT(e.what(), Catch::Contains("nobody_offers_this"));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("tcp matrix: calls both ways, serial wrap, remote errors, timeouts and missing routes",
                   "[tcp][tls][matrix]", plain_tcp, tls_tcp, mutual_tls_tcp) {
  connected_pair<TestType> pair;
  auto& server = pair.server;
  auto& client = pair.client;

  SECTION("the client calls the server's functions and the server calls the client's") {
    pair.connect();
    auto test = [&]() -> asio::awaitable<void> {
      co_await calls_reach(&client, "server");
      co_await calls_reach(&server, "client");
      CHECK(client.connections() == 1);
      CHECK(server.connections() == 1);
      // Both directions at once over the one connection.
      co_await (concurrent_calls(&client, 50) && concurrent_calls(&server, 50));
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(pair.io, test());
  }

  SECTION("serials cross the wrap from 4294967294 to 1 on both sides") {
    // The next serials are 4294967293, 4294967294, 1, 2, ...
    patio::detail::set_last_serial(server, 4294967294u - 2);
    patio::detail::set_last_serial(client, 4294967294u - 2);
    pair.connect();
    auto test = [&]() -> asio::awaitable<void> {
      co_await sequential_calls(&client, 6);
      co_await sequential_calls(&server, 6);
      co_await concurrent_calls(&client, 20);
      co_await concurrent_calls(&server, 20);
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(pair.io, test());
  }

  SECTION("a task's exception arrives as remote_error with its type and message") {
    pair.connect();
    auto test = [&]() -> asio::awaitable<void> {
      co_await remote_exception(&client);
      co_await remote_exception(&server);
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(pair.io, test());
  }

  SECTION("a slow task fails with timeout_error at the call's timeout") {
    pair.connect();
    auto test = [&]() -> asio::awaitable<void> {
      co_await calls_reach(&client, "server");  // connected: the timeout measures the call alone
      co_await times_out(&client);
      co_await times_out(&server);
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(pair.io, test());
  }

  SECTION("a function no peer offers fails with no_route_error after the timeout") {
    pair.connect();
    auto test = [&]() -> asio::awaitable<void> {
      co_await calls_reach(&client, "server");
      co_await has_no_route(&client);
      co_await has_no_route(&server);
      CHECK(client.connections() == 1);  // the connection was there all along
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(pair.io, test());
  }
}
