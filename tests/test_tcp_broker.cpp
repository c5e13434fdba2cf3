// SPDX-License-Identifier: MIT
// The TCP brokers beyond the transport matrix (tests/test_tcp_matrix.cpp):
// routing, reconnection, authentication failures both ways, hostile and
// broken peers over raw sockets, a peer process killed mid-call, IPv6, TLS
// verification, and mesh set-ups.
#include "tcp_fixtures.hpp"

#include <patio/detail/messages.hpp>
#include <patio/detail/msgpack.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/read_until.hpp>
#include <asio/redirect_error.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <sys/prctl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace patio::test::tcp;
namespace messages = patio::detail::messages;
using clock_type = std::chrono::steady_clock;

}  // namespace

TEST_CASE("tcp: a client calls a server's functions", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  client.connect("127.0.0.1", port);

  // Remote exceptions, timeouts and missing routes: tests/test_tcp_matrix.cpp.
  auto test = [&]() -> asio::awaitable<void> {
    const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 1, 2, 3);
    CHECK(product == 6);
    const auto untyped = co_await client.call({.timeout = 5s}, "mul", 2, 5);
    CHECK(untyped == patio::value(10));
    std::vector<asio::awaitable<std::int64_t>> calls;
    for (int i = 0; i < 100; ++i) calls.push_back(client.call<std::int64_t>({.timeout = 5s}, "mul", i, 2));
    const auto results = co_await patio::gather(std::move(calls));
    for (int i = 0; i < 100; ++i) CHECK(results[i] == 2 * i);
    CHECK(client.connections() == 1);
    CHECK(server.connections() == 1);

    // Bad arguments come back typed.
    try {
      co_await client.call({.timeout = 5s}, "mul", "x");
      FAIL("no exception");
    } catch (const patio::bad_arguments_error& e) {
      CHECK_THAT(e.what(), Catch::Contains("argument 1: expected int64, got str"));
    }
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
    const auto start = clock_type::now();
    try {
      co_await client.call({.timeout = 150ms}, "mul", 1, 2);
      FAIL("no exception");
    } catch (const patio::no_route_error&) {
      CHECK(clock_type::now() - start >= 140ms);
    }
    // Now a server comes up while the call waits: the call goes through.
    auto later = [&]() -> asio::awaitable<void> {
      co_await pause(100ms);
      server.emplace(io.get_executor(), server_side.executor);
      server->listen("127.0.0.1", port);
    };
    asio::co_spawn(io, later(), patio::rethrow);
    const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 3, 4);
    CHECK(product == 12);
    co_await client.close();
    co_await server->close();
  };
  patio::test::run(io, test());
}

TEST_CASE(
    "tcp: calls waiting for a route fail with closed_error when the broker closes, and one given up is never sent",
    "[tcp]") {
  asio::io_context io;
  calling_side client_side;
  std::uint16_t port = 0;
  {
    asio::ip::tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  patio::registry server_rpc;
  int counted = 0;
  server_rpc.add("count", [&] { return ++counted; });
  patio::async_executor server_executor(server_rpc);
  std::optional<patio::tcp_server_broker> server;

  auto test = [&]() -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    const auto ex = co_await asio::this_coro::executor;
    {
      // No server: calls without a timeout wait for a route until the
      // broker closes.
      patio::tcp_client_broker client{io.get_executor(), client_side.executor, {.reconnect_delay = 20ms}};
      client.connect("127.0.0.1", port);
      std::vector<std::exception_ptr> failures;
      for (int i = 0; i < 3; ++i)
        asio::co_spawn(ex, client.call<int>("count"), [&](std::exception_ptr e, int) { failures.push_back(e); });
      co_await pause(50ms);
      CHECK(failures.empty());
      co_await client.close();
      CHECK(co_await eventually([&] { return failures.size() == 3; }));
      for (const auto& e : failures) CHECK_THROWS_AS(std::rethrow_exception(e), patio::closed_error);
    }
    // A call given up while it waits for a route is not sent when one comes.
    patio::tcp_client_broker client{io.get_executor(), client_side.executor, {.reconnect_delay = 20ms}};
    client.connect("127.0.0.1", port);
    asio::steady_timer give_up(ex, 50ms);
    auto winner = co_await (client.call<int>("count") || give_up.async_wait(asio::use_awaitable));
    CHECK(winner.index() == 1);
    server.emplace(io.get_executor(), server_executor);
    server->listen("127.0.0.1", port);
    CHECK(co_await eventually([&] { return client.connections() == 1; }));
    CHECK(co_await client.call<int>("count") == 1);  // the only one that ran
    CHECK(counted == 1);
    co_await client.close();
    co_await server->close();
  };
  patio::test::run(io, test());
}

// ---- authentication -----------------------------------------------------------

namespace {

/// Captures what this process writes to stderr (the brokers' log) while it
/// lives; finish() restores stderr, echoes the capture there (nothing is
/// lost, a sanitizer's report included) and returns it.
class stderr_capture {
 public:
  stderr_capture() : file_(std::tmpfile()) {
    REQUIRE(file_);
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(::fileno(file_), STDERR_FILENO);
  }
  stderr_capture(const stderr_capture&) = delete;
  stderr_capture& operator=(const stderr_capture&) = delete;
  ~stderr_capture() { finish(); }

  std::string finish() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      ::dup2(saved_, STDERR_FILENO);
      ::close(saved_);
      saved_ = -1;
      std::rewind(file_);
      char buffer[4096];
      for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, file_)) > 0;) text_.append(buffer, n);
      std::fclose(file_);
      std::fwrite(text_.data(), 1, text_.size(), stderr);
    }
    return text_;
  }

 private:
  std::FILE* file_;
  int saved_ = -1;
  std::string text_;
};

}  // namespace

TEST_CASE("tcp: a wrong key closes that connection only and the server serves the others", "[tcp]") {
  stderr_capture log;
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
    const auto before = co_await good.call<std::int64_t>({.timeout = 5s}, "mul", 2, 2);
    CHECK(before == 4);
    try {
      co_await bad.call({.timeout = 300ms}, "mul", 2, 2);
      FAIL("a client with the wrong key got through");
    } catch (const patio::no_route_error&) {
    }
    CHECK(bad.connections() == 0);
    CHECK(server.connections() == 1);
    const auto after = co_await good.call<std::int64_t>({.timeout = 5s}, "mul", 3, 3);
    CHECK(after == 9);
    co_await good.close();
    co_await bad.close();
    co_await server.close();
  };
  patio::test::run(io, test());
  // The server said why it closed the connection.
  CHECK_THAT(log.finish(), Catch::Contains("failed: the client's proof does not match the key; closing"));
}

namespace {

std::string pack_bin(std::string_view data) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_bin(static_cast<std::uint32_t>(data.size()));
  p.pack_bin_body(data.data(), static_cast<std::uint32_t>(data.size()));
  return {out.data(), out.size()};
}

std::string handshake_frame(frame::type kind, const std::string& payload) {
  return frame::make(kind, 0, payload.data(), payload.size());
}

enum class server_proof { right_key, wrong_key, reflected };

/// A fake server for one connection: issues a nonce, skips checking the
/// client's proof, and answers with a proof `how`. @returns the client's
/// first packet after that proof: AUTH_OK, or nothing when it refused.
asio::awaitable<std::optional<packet>> fake_server(tcp::acceptor* acceptor, std::string key, server_proof how) {
  tcp::socket s(co_await asio::this_coro::executor);
  co_await acceptor->async_accept(s, asio::use_awaitable);
  const auto nonce = hs::random_bytes(hs::nonce_size);
  co_await write_bytes(s, handshake_frame(frame::type::auth_digest, pack_bin(nonce)));
  const auto request = co_await read_packet(s);
  REQUIRE(request);
  REQUIRE(request->header.kind == frame::type::auth_request);
  const auto oh = msgpack::unpack(request->payload.data(), request->payload.size());
  REQUIRE(oh.get().type == msgpack::type::ARRAY);
  REQUIRE(oh.get().via.array.size == 2);
  const auto& nc = oh.get().via.array.ptr[0].via.bin;
  const auto& pc = oh.get().via.array.ptr[1].via.bin;
  const std::string client_nonce(nc.ptr, nc.size), client_proof(pc.ptr, pc.size);
  // The server proof of docs/protocol.md, under `key`; or the client's own
  // proof sent back.
  const auto proof = how == server_proof::reflected
                         ? client_proof
                         : hs::hmac_sha256(key, "patio-cpp/1 server proof" + nonce + client_nonce);
  co_await write_bytes(s, handshake_frame(frame::type::auth_response, pack_bin(proof)));
  co_return co_await read_packet(s);
}

}  // namespace

TEST_CASE("tcp: a client refuses a server that cannot prove the key", "[tcp]") {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  calling_side side;
  patio::tcp_client_broker client{io.get_executor(), side.executor, plain_options("right")};

  // The fake server proves `key` (or reflects); the client knows "right".
  auto test = [&](std::string key, server_proof how) -> asio::awaitable<void> {
    bool served = false;
    std::optional<packet> after;
    auto serve = [&]() -> asio::awaitable<void> {
      after = co_await fake_server(&acceptor, key, how);
      served = true;
    };
    asio::co_spawn(io, serve(), patio::rethrow);
    client.connect("127.0.0.1", port);
    const auto served_in_time = co_await eventually([&] { return served; });
    REQUIRE(served_in_time);
    if (how == server_proof::right_key) {
      REQUIRE(after);
      CHECK(after->header.kind == frame::type::auth_ok);
    } else {
      CHECK_FALSE(after);  // closed: no AUTH_OK, no DISCOVER_REQUEST
      try {
        co_await client.call({.timeout = 300ms}, "mul", 1, 2);
        FAIL("the client used a server that did not prove the key");
      } catch (const patio::no_route_error&) {
      }
      CHECK(client.connections() == 0);
    }
    acceptor.close();
    co_await client.close();
  };

  SECTION("a fake server that proves the right key is accepted (the control)") {
    patio::test::run(io, test("right", server_proof::right_key));
  }
  SECTION("a server proving a different key") {
    stderr_capture log;
    patio::test::run(io, test("wrong", server_proof::wrong_key));
    CHECK_THAT(log.finish(), Catch::Contains("failed: the server's proof does not match the key; closing"));
  }
  SECTION("a server reflecting the client's own proof") {
    stderr_capture log;
    patio::test::run(io, test("right", server_proof::reflected));
    CHECK_THAT(log.finish(), Catch::Contains("failed: the server's proof does not match the key; closing"));
  }
}

TEST_CASE("tcp: a recorded handshake replayed on a new connection is refused", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.key = "secret"}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, plain_options("secret")};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    // An honest client's handshake, recorded.
    auto honest = co_await connect_raw(port);
    const auto record = co_await authenticate(honest, "secret");
    const auto next = co_await read_packet(honest);
    REQUIRE(next);
    CHECK(next->header.kind == frame::type::discover_request);  // it got through

    // The same bytes on a new connection: the server's nonce differs, so the
    // recorded proof does not match and the server closes without answering.
    auto replay = co_await connect_raw(port);
    const auto digest = co_await read_packet(replay);
    REQUIRE(digest);
    REQUIRE(digest->header.kind == frame::type::auth_digest);
    CHECK(digest->payload != record.digest);
    co_await write_bytes(replay, record.sent);
    const auto answer = co_await read_until_closed(replay);  // no AUTH_RESPONSE, no DISCOVER_REQUEST
    CHECK(answer == "");

    // The server goes on serving.
    const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 4, 5);
    CHECK(product == 20);
    honest.close();
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

// ---- broken peers ---------------------------------------------------------------

namespace {

/// A `kind` frame cut short: a header announcing 100 bytes of payload, and 10.
std::string truncated_frame(frame::type kind, std::uint32_t serial) {
  const auto header = frame::encode({kind, 100, serial});
  return std::string(reinterpret_cast<const char*>(header.data()), header.size()) + std::string(10, '\x90');
}

/// A raw peer authenticated with the empty key that offers `name` (if not
/// empty): it answers the server's DISCOVER_REQUEST, so it becomes a route.
asio::awaitable<tcp::socket> raw_route(std::uint16_t port, std::string name = {}) {
  auto s = co_await connect_raw(port);
  co_await authenticate(s, "");
  const auto discover = co_await read_packet(s);
  REQUIRE(discover);
  REQUIRE(discover->header.kind == frame::type::discover_request);
  std::vector<std::string> names;
  if (!name.empty()) names.push_back(std::move(name));
  co_await write_bytes(s, messages::discover_response_frame(names));
  co_return s;
}

}  // namespace

TEST_CASE("tcp: a truncated frame from an authenticated peer leaves the server serving the others", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, plain_options()};
  client.connect("127.0.0.1", port);

  SECTION("the peer sends 10 of 100 announced bytes and closes") {
    auto test = [&]() -> asio::awaitable<void> {
      const auto first = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 1, 1);
      CHECK(first == 1);
      auto raw = co_await raw_route(port);
      const auto raw_live = co_await eventually([&] { return server.connections() == 2; });
      CHECK(raw_live);
      co_await write_bytes(raw, truncated_frame(frame::type::request, 1));
      raw.close();
      const auto raw_gone = co_await eventually([&] { return server.connections() == 1; });
      CHECK(raw_gone);
      const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 2, 3);
      CHECK(product == 6);
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(io, test());
  }
  SECTION("the peer sends 10 of 100 announced bytes and stalls") {
    auto test = [&]() -> asio::awaitable<void> {
      auto raw = co_await raw_route(port);
      co_await write_bytes(raw, truncated_frame(frame::type::request, 1));
      for (int i = 0; i < 5; ++i) {
        const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", i, 3);
        CHECK(product == 3 * i);
      }
      const auto raw_live = co_await eventually([&] { return server.connections() == 2; });
      CHECK(raw_live);
      raw.close();
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(io, test());
  }
  SECTION("the server's call to the peer fails at once when the peer truncates its reply and closes") {
    auto test = [&]() -> asio::awaitable<void> {
      auto raw = co_await raw_route(port, "raw_task");
      auto truncate_reply = [&]() -> asio::awaitable<void> {
        for (;;) {
          auto p = co_await read_packet(raw);
          REQUIRE(p);
          if (p->header.kind != frame::type::request) continue;
          co_await write_bytes(raw, truncated_frame(frame::type::response, p->header.serial));
          raw.close();
          break;
        }
      };
      asio::co_spawn(io, truncate_reply(), patio::rethrow);
      const auto start = clock_type::now();
      CHECK_THROWS_AS(co_await server.call({.timeout = 20s}, "raw_task"), patio::connection_error);
      CHECK(clock_type::now() - start < 5s);  // at once, not at the timeout
      const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 2, 3);
      CHECK(product == 6);
      co_await client.close();
      co_await server.close();
    };
    patio::test::run(io, test());
  }
}

TEST_CASE("tcp: a peer that reuses the serial of a request still running is disconnected, and only it", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, plain_options()};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    const auto first = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 1, 1);
    CHECK(first == 1);
    auto raw = co_await raw_route(port);
    // Finished requests first, so the server holds spare entries for the
    // serials in flight: the reuse below must be caught with them too.
    for (std::uint32_t serial = 1; serial <= 3; ++serial) {
      auto quick = patio::detail::make_invocation<std::int64_t>(2, 3);
      quick->name = "mul";
      co_await write_bytes(raw, messages::request_frame(serial, *quick, 5.0));
      const auto reply = co_await read_packet(raw);
      REQUIRE(reply);
      CHECK(reply->header.kind == frame::type::response);
    }
    auto slow_call = patio::detail::make_invocation<std::string>(5000);
    slow_call->name = "slow";
    co_await write_bytes(raw, messages::request_frame(7, *slow_call, 10.0));
    co_await write_bytes(raw, messages::request_frame(7, *slow_call, 10.0));
    const auto raw_gone = co_await eventually([&] { return server.connections() == 1; });
    CHECK(raw_gone);
    const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 2, 3);
    CHECK(product == 6);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: request serials on the wire cross the wrap from 4294967294 to 1", "[tcp][protocol]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  patio::detail::set_last_serial(server, 4294967294u - 2);
  const auto port = server.listen("127.0.0.1", 0);

  auto test = [&]() -> asio::awaitable<void> {
    auto raw = co_await raw_route(port, "serial");
    // The raw peer answers "serial" with the serial its REQUEST carried.
    std::vector<packet> replies;
    bool ended = false;
    auto serve = [&]() -> asio::awaitable<void> {
      while (auto p = co_await read_packet(raw)) {
        if (p->header.kind == frame::type::request) {
          msgpack::sbuffer result;
          msgpack::pack(result, p->header.serial);
          co_await write_bytes(raw, messages::response_frame(p->header.serial, {result.data(), result.size()}));
        } else if (p->header.kind == frame::type::response || p->header.kind == frame::type::error) {
          replies.push_back(std::move(*p));
        }
      }
      ended = true;
    };
    asio::co_spawn(io, serve(), patio::rethrow);
    for (const std::uint32_t expected : {4294967293u, 4294967294u, 1u, 2u, 3u}) {
      const auto serial = co_await server.call<std::uint32_t>({.timeout = 5s}, "serial");
      CHECK(serial == expected);
    }

    // The other way: the server echoes the serials of the peer's requests,
    // 4294967294 and then 1.
    for (const std::uint32_t serial : {4294967294u, 1u}) {
      auto inv = patio::detail::make_invocation<std::int64_t>(static_cast<std::int64_t>(serial % 1000), 2);
      inv->name = "mul";
      co_await write_bytes(raw, messages::request_frame(serial, *inv, 5.0));
      const auto replied = co_await eventually([&] { return !replies.empty(); });
      REQUIRE(replied);
      const auto reply = messages::decode_reply(replies.front().header.kind, replies.front().payload);
      CHECK(replies.front().header.serial == serial);
      REQUIRE(reply.ok);
      CHECK(reply.result.as<std::int64_t>() == static_cast<std::int64_t>(serial % 1000) * 2);
      replies.clear();
    }
    raw.close();
    const auto ended_in_time = co_await eventually([&] { return ended; });
    CHECK(ended_in_time);
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
    const auto first = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 1, 1);
    CHECK(first == 1);
    auto drop = [&]() -> asio::awaitable<void> {
      co_await pause(100ms);
      co_await server->close();
    };
    asio::co_spawn(io, drop(), patio::rethrow);
    const auto start = clock_type::now();
    try {
      co_await client.call({.timeout = 20s}, "slow", 30'000);
      FAIL("no exception");
    } catch (const patio::connection_error& e) {
      CHECK(clock_type::now() - start < 5s);  // at once, not at the timeout
      CHECK_THAT(e.what(), Catch::Contains("lost"));
    }
    // A new server on the same port: the client comes back by itself.
    server.reset();
    server_side = std::make_unique<serving_side>();
    server = std::make_unique<patio::tcp_server_broker>(io.get_executor(), server_side->executor);
    server->listen("127.0.0.1", port);
    const auto after_restart = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 5, 5);
    CHECK(after_restart == 25);
    co_await client.close();
    co_await server->close();
    // After close, calls fail with closed_error.
    CHECK_THROWS_AS(co_await client.call({.timeout = 1s}, "mul", 1), patio::closed_error);
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a client calling in a loop rides out a server restart on the same port", "[tcp]") {
  asio::io_context io;
  auto server_side = std::make_unique<serving_side>();
  auto server = std::make_unique<patio::tcp_server_broker>(io.get_executor(), server_side->executor);
  const auto port = server->listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, plain_options()};
  client.connect("127.0.0.1", port);

  // Calls that start before the client is back on the new server may fail:
  // with connection_error (in flight when the server went), no_route_error
  // (no server until the deadline), or timeout_error (a route came up just
  // before the deadline, too late for the reply). Calls that start after it
  // is back must all succeed.
  int ok_before = 0, ok_after = 0, failed = 0;
  std::vector<std::string> unexpected;
  bool restarted = false, stop = false, stopped = false;
  auto keep_calling = [&]() -> asio::awaitable<void> {
    std::int64_t i = 0;
    while (!stop) {
      ++i;
      const bool back = restarted && client.connections() == 1;  // as the call starts
      try {
        const auto r = co_await client.call<std::int64_t>({.timeout = 300ms}, "mul", i, 2);
        if (r != 2 * i) unexpected.push_back("wrong result");
        ++(back ? ok_after : ok_before);
      } catch (const patio::error& e) {
        const auto code = e.value();
        if (!back &&
            (code == patio::errc::connection_lost || code == patio::errc::no_route || code == patio::errc::timeout))
          ++failed;
        else
          unexpected.push_back(e.code().message() + ": " + e.what() + (back ? " (after reconnecting)" : ""));
      } catch (const std::exception& e) {
        unexpected.push_back(e.what());
      }
      co_await pause(2ms);
    }
    stopped = true;
  };

  auto test = [&]() -> asio::awaitable<void> {
    asio::co_spawn(io, keep_calling(), patio::rethrow);
    const auto called_before = co_await eventually([&] { return ok_before >= 10; });
    REQUIRE(called_before);
    // The server goes away for longer than a call waits for a route, so some
    // calls fail; then a new one comes up on the same port.
    server.reset();
    co_await pause(500ms);
    server_side = std::make_unique<serving_side>();
    server = std::make_unique<patio::tcp_server_broker>(io.get_executor(), server_side->executor);
    server->listen("127.0.0.1", port);
    restarted = true;
    const auto called_after = co_await eventually([&] { return ok_after >= 10; });
    CHECK(called_after);
    stop = true;
    const auto stopped_in_time = co_await eventually([&] { return stopped; });
    CHECK(stopped_in_time);
    CHECK(failed >= 1);
    for (const auto& what : unexpected) UNSCOPED_INFO(what);
    CHECK(unexpected.empty());
    co_await client.close();
    co_await server->close();
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
    const auto product_before = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 2, 3);
    CHECK(product_before == 6);
    const std::string big(4096, 'x');
    try {
      co_await client.call({.timeout = 5s}, "fail", big);
      FAIL("an oversized request went through");
    } catch (const patio::connection_error&) {
    }
    // The client reconnects, and small calls go through again.
    const auto product_after = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 3, 3);
    CHECK(product_after == 9);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a peer that never speaks or speaks garbage is closed and others are served", "[tcp]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.handshake_timeout = 1s}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    // Silent: closed at the handshake deadline.
    tcp::socket silent(io);
    co_await silent.async_connect(endpoint, asio::use_awaitable);
    const auto start = clock_type::now();
    std::string sink(1024, '\0');
    std::error_code ec;
    for (;;) {  // the server's AUTH_DIGEST, then EOF
      co_await silent.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    CHECK(ec == asio::error::eof);
    CHECK(clock_type::now() - start < 5s);

    // Garbage: an unknown packet type, closed at once.
    tcp::socket noisy(io);
    co_await noisy.async_connect(endpoint, asio::use_awaitable);
    const std::string garbage("\x63\x00\x00\x00\x00\x00\x00\x00\x01", 9);
    const auto sent = clock_type::now();
    co_await asio::async_write(noisy, asio::buffer(garbage), asio::use_awaitable);
    for (;;) {
      co_await noisy.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    CHECK(ec == asio::error::eof);
    CHECK(clock_type::now() - sent < 900ms);  // at once, not at the handshake deadline

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

    const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 7, 6);
    CHECK(product == 42);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

// ---- a peer process killed mid-call --------------------------------------------

namespace {

/// The task the child process serves: says it runs, then waits.
asio::awaitable<std::string> announced_wait(int ms) {
  std::printf("running\n");
  std::fflush(stdout);
  co_await pause(std::chrono::milliseconds(ms));
  co_return "done";
}

}  // namespace

namespace patio::test {

int tcp_serve_mode() {
  if (!std::getenv("PATIO_TEST_TCP_SERVE")) return -1;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
  patio::registry rpc;
  serving_side::register_all(rpc, "child");  // the fault tests call these (tests/test_tcp_faults.cpp)
  rpc.add("announced_wait", announced_wait);
  patio::async_executor executor{rpc, 64};
  asio::io_context io;
  patio::tcp_server_broker server{io.get_executor(), executor};
  const char* wanted = std::getenv("PATIO_TEST_TCP_SERVE_PORT");  // a restarted server takes its old port
  const auto port = server.listen("127.0.0.1", wanted ? static_cast<std::uint16_t>(std::atoi(wanted)) : 0);
  std::printf("ready %u\n", static_cast<unsigned>(port));
  std::fflush(stdout);
  io.run_for(std::chrono::seconds(60));  // the test kills it long before
  return 0;
}

}  // namespace patio::test

TEST_CASE("tcp: a call fails at once with connection_error when the server process is killed mid-call",
          "[tcp][process]") {
  child_process child;
  spawn_tcp_server(child);
  asio::io_context io;
  asio::posix::stream_descriptor out(io, std::exchange(child.out, -1));
  calling_side side;
  patio::tcp_client_broker client{io.get_executor(), side.executor, plain_options()};

  auto test = [&]() -> asio::awaitable<void> {
    std::string buffer;
    const auto ready = co_await read_line(out, buffer);
    unsigned port = 0;
    REQUIRE(std::sscanf(ready.c_str(), "ready %u", &port) == 1);
    client.connect("127.0.0.1", static_cast<std::uint16_t>(port));

    std::optional<clock_type::time_point> killed_at;
    auto kill_when_running = [&]() -> asio::awaitable<void> {
      const auto line = co_await read_line(out, buffer);
      CHECK(line == "running");
      killed_at = clock_type::now();
      ::kill(child.pid, SIGKILL);
    };
    asio::co_spawn(io, kill_when_running(), patio::rethrow);
    try {
      co_await client.call({.timeout = 20s}, "announced_wait", 60'000);
      FAIL("no exception");
    } catch (const patio::connection_error& e) {
      REQUIRE(killed_at);
      CHECK(clock_type::now() - *killed_at < 5s);  // at once, not at the 20 s timeout
      CHECK_THAT(e.what(), Catch::Contains("lost"));
    }
    co_await client.close();
  };
  patio::test::run(io, test());
}

// ---- routing and addresses -------------------------------------------------------

TEST_CASE("tcp: calls go round-robin among the servers that offer the function", "[tcp]") {
  asio::io_context io;
  serving_side a_side{"a"}, b_side{"b"}, c_side{"c"};
  patio::tcp_server_broker a{io.get_executor(), a_side.executor};
  patio::tcp_server_broker b{io.get_executor(), b_side.executor};
  patio::tcp_server_broker c{io.get_executor(), c_side.executor};
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor};
  for (auto* server : {&a, &b, &c}) client.connect("127.0.0.1", server->listen("127.0.0.1", 0));

  auto test = [&]() -> asio::awaitable<void> {
    const auto all_connected = co_await eventually([&] { return client.connections() == 3; });
    REQUIRE(all_connected);
    std::map<std::string, int> seen;
    for (int i = 0; i < 30; ++i) ++seen[co_await client.call<std::string>({.timeout = 5s}, "who")];
    CHECK(seen["a"] == 10);
    CHECK(seen["b"] == 10);
    CHECK(seen["c"] == 10);
    co_await client.close();
    for (auto* server : {&a, &b, &c}) co_await server->close();
  };
  patio::test::run(io, test());
}

namespace {

/// Whether this machine can bind to the IPv6 loopback.
bool has_ipv6_loopback() {
  asio::io_context io;
  tcp::acceptor probe(io);
  std::error_code ec;
  probe.open(tcp::v6(), ec);
  if (!ec) probe.bind({asio::ip::address_v6::loopback(), 0}, ec);
  return !ec;
}

}  // namespace

TEST_CASE("tcp: brokers talk both ways over the IPv6 loopback", "[tcp][ipv6]") {
  if (!has_ipv6_loopback()) {
    WARN("skipped: this machine has no IPv6 loopback (::1)");
    return;
  }
  asio::io_context io;
  serving_side server_side{"server"}, client_side{"client"};
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("::1", 0);
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, plain_options()};
  client.connect("::1", port);

  auto test = [&]() -> asio::awaitable<void> {
    const auto server_who = co_await client.call<std::string>({.timeout = 10s}, "who");
    CHECK(server_who == "server");
    const auto client_who = co_await server.call<std::string>({.timeout = 5s}, "who");
    CHECK(client_who == "client");
    const auto product = co_await server.call<std::int64_t>({.timeout = 5s}, "mul", 6, 7);
    CHECK(product == 42);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: one server listening on 127.0.0.1 and ::1 at once serves clients on both", "[tcp][ipv6]") {
  if (!has_ipv6_loopback()) {
    WARN("skipped: this machine has no IPv6 loopback (::1)");
    return;
  }
  asio::io_context io;
  serving_side server_side{"server"}, v4_side{"v4"}, v6_side{"v6"};
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto v4_port = server.listen("127.0.0.1", 0);
  std::uint16_t v6_port = 0;
  try {
    v6_port = server.listen("::1", v4_port);  // the same port on both, as a server usually has
  } catch (const std::system_error&) {
    v6_port = server.listen("::1", 0);  // taken on ::1 by someone else
  }
  patio::tcp_client_broker v4{io.get_executor(), v4_side.executor, plain_options()};
  patio::tcp_client_broker v6{io.get_executor(), v6_side.executor, plain_options()};
  v4.connect("127.0.0.1", v4_port);
  v6.connect("::1", v6_port);

  auto test = [&]() -> asio::awaitable<void> {
    const auto v4_who = co_await v4.call<std::string>({.timeout = 10s}, "who");
    CHECK(v4_who == "server");
    const auto v6_who = co_await v6.call<std::string>({.timeout = 10s}, "who");
    CHECK(v6_who == "server");
    CHECK(server.connections() == 2);
    std::map<std::string, int> seen;
    for (int i = 0; i < 4; ++i) ++seen[co_await server.call<std::string>({.timeout = 5s}, "who")];
    CHECK(seen["v4"] == 2);
    CHECK(seen["v6"] == 2);
    co_await v4.close();
    co_await v6.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

// ---- mesh set-ups -------------------------------------------------------------

namespace {

/// A node of a mesh: one registry offering `function` (x → factor * x) on
/// thread pools, a server broker and a client broker. Counts its runs, and
/// runs that landed on the I/O thread (which must be none).
struct mesh_node {
  patio::registry rpc;
  std::atomic<int> runs{0};
  std::atomic<int> on_io_thread{0};
  patio::thread_pool_executor server_executor;
  patio::thread_pool_executor client_executor;
  patio::tcp_server_broker server;
  patio::tcp_client_broker client;

  mesh_node(asio::io_context& io, const std::string& function, std::int64_t factor)
      : server_executor(offer(function, factor, std::this_thread::get_id()), 2),
        client_executor(rpc, 2),
        server(io.get_executor(), server_executor, plain_options()),
        client(io.get_executor(), client_executor, plain_options()) {}

  patio::registry& offer(const std::string& function, std::int64_t factor, std::thread::id io_thread) {
    rpc.add(function, [this, factor, io_thread](std::int64_t x) {
      ++runs;
      if (std::this_thread::get_id() == io_thread) ++on_io_thread;
      return factor * x;
    });
    return rpc;
  }
};

}  // namespace

TEST_CASE("tcp full mesh: two nodes each call and execute over both of their connections", "[tcp][mesh]") {
  asio::io_context io;
  mesh_node a(io, "a.triple", 3), b(io, "b.seven", 7);
  // A's server with B's client, and B's server with A's client.
  a.client.connect("127.0.0.1", b.server.listen("127.0.0.1", 0));
  b.client.connect("127.0.0.1", a.server.listen("127.0.0.1", 0));

  auto test = [&]() -> asio::awaitable<void> {
    // Every broker calls the other node's function, run by its peer broker.
    const auto by_b_client = co_await a.server.call<std::int64_t>({.timeout = 10s}, "b.seven", 1);  // by B's client
    CHECK(by_b_client == 7);
    const auto by_a_server = co_await b.client.call<std::int64_t>({.timeout = 10s}, "a.triple", 1);  // by A's server
    CHECK(by_a_server == 3);
    const auto by_a_client = co_await b.server.call<std::int64_t>({.timeout = 10s}, "a.triple", 2);  // by A's client
    CHECK(by_a_client == 6);
    const auto by_b_server = co_await a.client.call<std::int64_t>({.timeout = 10s}, "b.seven", 2);  // by B's server
    CHECK(by_b_server == 14);
    for (auto* broker : std::initializer_list<patio::tcp_broker_base*>{&a.server, &a.client, &b.server, &b.client})
      CHECK(broker->connections() == 1);
    // A node's own function is not offered back to it.
    CHECK_THROWS_AS(co_await a.server.call({.timeout = 100ms}, "a.triple", 1), patio::no_route_error);

    // All four at once, both directions on both connections.
    std::vector<asio::awaitable<std::int64_t>> calls;
    std::vector<std::int64_t> expected;
    for (std::int64_t i = 0; i < 25; ++i) {
      calls.push_back(a.server.call<std::int64_t>({.timeout = 10s}, "b.seven", i));
      calls.push_back(a.client.call<std::int64_t>({.timeout = 10s}, "b.seven", i));
      calls.push_back(b.server.call<std::int64_t>({.timeout = 10s}, "a.triple", i));
      calls.push_back(b.client.call<std::int64_t>({.timeout = 10s}, "a.triple", i));
      expected.insert(expected.end(), {7 * i, 7 * i, 3 * i, 3 * i});
    }
    const auto results = co_await patio::gather(std::move(calls));
    CHECK(results == expected);
    CHECK(a.runs == 52);
    CHECK(b.runs == 52);
    CHECK(a.on_io_thread == 0);
    CHECK(b.on_io_thread == 0);
    for (auto* node : {&a, &b}) {
      co_await node->client.close();
      co_await node->server.close();
    }
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: one client connected to several servers reaches each one's functions and serves them all",
          "[tcp][mesh]") {
  asio::io_context io;
  struct server_node {
    patio::registry rpc;
    patio::thread_pool_executor executor;
    patio::tcp_server_broker server;

    server_node(asio::io_context& io, const std::string& name)
        : executor(offer(name), 2), server(io.get_executor(), executor) {}
    patio::registry& offer(const std::string& name) {
      rpc.add(name, [name] { return name; });
      return rpc;
    }
  };
  const std::vector<const char*> names{"one", "two", "three"};
  std::vector<std::unique_ptr<server_node>> servers;
  for (const char* name : names) servers.push_back(std::make_unique<server_node>(io, name));
  patio::registry client_rpc;
  client_rpc.add("client.echo", [](std::string s) { return "client: " + s; });
  patio::thread_pool_executor client_executor{client_rpc, 2};
  patio::tcp_client_broker client{io.get_executor(), client_executor, plain_options()};
  for (auto& s : servers) client.connect("127.0.0.1", s->server.listen("127.0.0.1", 0));

  auto test = [&]() -> asio::awaitable<void> {
    // Each name reaches the one server that offers it.
    for (const char* name : names) {
      const auto who = co_await client.call<std::string>({.timeout = 10s}, name);
      CHECK(who == name);
    }
    CHECK(client.connections() == 3);
    // And each server calls the client back over its own connection.
    for (std::size_t i = 0; i < servers.size(); ++i) {
      const std::string name = names[i];
      const auto echo = co_await servers[i]->server.call<std::string>({.timeout = 5s}, "client.echo", name);
      CHECK(echo == "client: " + name);
    }
    co_await client.close();
    for (auto& s : servers) co_await s->server.close();
  };
  patio::test::run(io, test());
}

// ---- TLS verification ------------------------------------------------------------

namespace {

/// Whether a client with `tls` reaches the server at `port` within `limit`:
/// generous where it must, short where it must not (a refusal is quick).
asio::awaitable<bool> reaches(asio::io_context& io, std::uint16_t port, std::optional<patio::tls_options> tls,
                              std::chrono::milliseconds limit = 500ms) {
  calling_side side;
  patio::tcp_client_broker client{io.get_executor(), side.executor, client_options(std::move(tls))};
  client.connect("127.0.0.1", port);
  bool ok = false;
  try {
    const auto product = co_await client.call<std::int64_t>({.timeout = limit}, "mul", 2, 3);
    ok = product == 6;
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
    const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 6, 7);
    CHECK(product == 42);

    // A CA that did not sign the server's certificate.
    const auto other_ca = co_await reaches(io, port, trusting("other-ca.pem"));
    CHECK_FALSE(other_ca);
    // The right CA, but a name the certificate does not carry.
    const auto wrong_name = co_await reaches(io, port, trusting("ca.pem", "elsewhere.example"));
    CHECK_FALSE(wrong_name);
    // Plain TCP against the TLS port.
    const auto plain = co_await reaches(io, port, std::nullopt);
    CHECK_FALSE(plain);

    // The server kept serving the good client throughout.
    const auto product_after = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 2, 2);
    CHECK(product_after == 4);
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
    const auto with_certificate = co_await reaches(io, port, with_client_certificate(), 10s);
    CHECK(with_certificate);
    const auto without_certificate = co_await reaches(io, port, trusting("ca.pem"));
    CHECK_FALSE(without_certificate);
    // Plain TCP against the mutual-TLS port.
    const auto plain = co_await reaches(io, port, std::nullopt);
    CHECK_FALSE(plain);
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
    const auto tls_client = co_await reaches(io, port, trusting("ca.pem"));
    CHECK_FALSE(tls_client);
    const auto plain_client = co_await reaches(io, port, std::nullopt, 10s);
    CHECK(plain_client);
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE(
    "tcp over TLS: thousands of calls in flight come back whole, and a corrupted record closes its connection at once",
    "[tcp][tls]") {
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{
      io.get_executor(), server_side.executor, {.key = "k", .handshake_timeout = 30s, .tls = server_tls()}};
  const auto port = server.listen("127.0.0.1", 0);
  auto test = [&]() -> asio::awaitable<void> {
    calling_side side;
    patio::tcp_client_broker client{io.get_executor(), side.executor,
                                    client_options(trusting("ca.pem", "localhost"), "k")};
    client.connect("127.0.0.1", port);
    // 2,000 requests of about 20 bytes are several TLS records a write: the
    // server decrypts the records a read brought in together.
    std::vector<asio::awaitable<std::int64_t>> calls;
    for (int i = 0; i < 2000; ++i) calls.push_back(client.call<std::int64_t>({.timeout = 20s}, "mul", i, 3));
    const auto results = co_await patio::gather(std::move(calls));
    for (int i = 0; i < 2000; ++i) CHECK(results[i] == 3 * i);

    // A peer that completes the TLS handshake, then sends a record whose
    // contents fail their check: its connection closes now, not at the
    // handshake timeout (30 s).
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.set_verify_mode(asio::ssl::verify_none);
    asio::ssl::stream<asio::ip::tcp::socket> raw(io, ctx);
    co_await raw.next_layer().async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
    co_await raw.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
    std::array<unsigned char, 5 + 64> bad{0x17, 0x03, 0x03, 0x00, 64};  // application data, 64 bytes
    for (std::size_t i = 5; i < bad.size(); ++i) bad[i] = static_cast<unsigned char>(i * 37);
    const auto start = std::chrono::steady_clock::now();
    co_await asio::async_write(raw.next_layer(), asio::buffer(bad), asio::use_awaitable);
    std::array<char, 256> buf{};
    std::error_code ec;
    while (!ec) co_await raw.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    CHECK(std::chrono::steady_clock::now() - start < 10s);

    // The good client is still served.
    const auto product = co_await client.call<std::int64_t>({.timeout = 5s}, "mul", 7, 6);
    CHECK(product == 42);
    co_await client.close();
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
