// SPDX-License-Identifier: MIT
// The TCP broker's limits and cancellation: CANCEL reaching a remote task,
// tasks of a vanished peer cancelled, max_in_flight, max_write_buffer.
#include "tcp_fixtures.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace {

using namespace std::chrono_literals;
using patio::test::tcp::authenticate;
using patio::test::tcp::calling_side;
using patio::test::tcp::connect_raw;
using patio::test::tcp::eventually;
using patio::test::tcp::pause;

/// What the server's tasks saw.
struct observed {
  std::atomic<int> started{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> finished{0};
  std::atomic<int> running{0};
  std::atomic<int> most_running{0};
};

/// A server side whose `wait` task sleeps for its argument in milliseconds
/// and records whether it was cancelled, and whose `big` returns `n` bytes.
struct server_side {
  observed seen;
  patio::registry rpc;
  patio::async_executor executor;

  explicit server_side(std::size_t workers = 8) : executor(register_all(rpc, seen), workers) {}

  static patio::registry& register_all(patio::registry& rpc, observed& seen) {
    rpc.add("wait", [&seen](int ms) -> asio::awaitable<int> {
      ++seen.started;
      const int now = ++seen.running;
      for (int most = seen.most_running; now > most && !seen.most_running.compare_exchange_weak(most, now);) {
      }
      try {
        co_await pause(std::chrono::milliseconds(ms));
      } catch (const std::system_error& e) {
        --seen.running;
        if (e.code() == asio::error::operation_aborted) ++seen.cancelled;
        throw;
      }
      --seen.running;
      ++seen.finished;
      co_return ms;
    });
    rpc.add("big", [](std::size_t n) { return std::string(n, 'x'); });
    return rpc;
  }
};

}  // namespace

TEST_CASE("tcp: a caller that times out sends CANCEL and the remote task stops", "[tcp][cancel]") {
  asio::io_context io;
  server_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side caller;
  patio::tcp_client_broker client{io.get_executor(), caller.executor};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await client.call<int>({.timeout = 5s}, "wait", 1) == 1);  // connected

    // The caller's timeout (300 ms) is shorter than the server's copy of it
    // would be if it ran to its end (30 s): only CANCEL stops it early.
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(co_await client.call<int>({.timeout = 300ms}, "wait", 30'000), patio::timeout_error);
    CHECK(co_await eventually([&] { return server_side.seen.cancelled == 1; }));
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(server_side.seen.running == 0);

    // The connection goes on serving.
    CHECK(co_await client.call<int>({.timeout = 5s}, "wait", 2) == 2);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a caller cancelled by its own code sends CANCEL too", "[tcp][cancel]") {
  using namespace asio::experimental::awaitable_operators;
  asio::io_context io;
  server_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side caller;
  patio::tcp_client_broker client{io.get_executor(), caller.executor};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await client.call<int>({.timeout = 5s}, "wait", 1) == 1);
    // The timer wins the race; the call is cancelled (no timeout of its own).
    auto winner = co_await (client.call<int>("wait", 30'000) || pause(200ms));
    CHECK(winner.index() == 1);
    CHECK(co_await eventually([&] { return server_side.seen.cancelled == 1; }));
    CHECK(server_side.seen.finished == 1);  // only the first call ran to its end
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: tasks of a peer that disconnects are cancelled", "[tcp][cancel]") {
  asio::io_context io;
  server_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side caller;
  auto client = std::make_unique<patio::tcp_client_broker>(io.get_executor(), caller.executor);
  client->connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await client->call<int>({.timeout = 5s}, "wait", 1) == 1);
    auto ex = co_await asio::this_coro::executor;
    std::exception_ptr failure;
    for (int i = 0; i < 3; ++i)
      asio::co_spawn(ex, client->call<int>("wait", 30'000), [&](std::exception_ptr e, int) { failure = e; });
    CHECK(co_await eventually([&] { return server_side.seen.running == 3; }));
    co_await client->close();
    CHECK(co_await eventually([&] { return server_side.seen.cancelled == 3; }));
    CHECK(co_await eventually([&] { return failure != nullptr; }));
    CHECK_THROWS_AS(std::rethrow_exception(failure), patio::connection_error);
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: at max_in_flight a server stops reading from that peer until a task ends", "[tcp][limits]") {
  asio::io_context io;
  server_side server_side(16);  // the executor would run 16 at once: the connection's limit is lower
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.max_in_flight = 3}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side caller;
  patio::tcp_client_broker client{io.get_executor(), caller.executor};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    CHECK(co_await client.call<int>({.timeout = 5s}, "wait", 1) == 1);
    std::vector<asio::awaitable<int>> calls;
    for (int i = 0; i < 12; ++i) calls.push_back(client.call<int>({.timeout = 20s}, "wait", 50 + i));
    const auto results = co_await patio::gather(std::move(calls));
    for (int i = 0; i < 12; ++i) CHECK(results[i] == 50 + i);
    CHECK(server_side.seen.most_running == 3);
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp: a peer that stops reading is disconnected at max_write_buffer and others are served", "[tcp][limits]") {
  asio::io_context io;
  server_side server_side;
  patio::tcp_server_broker server{
      io.get_executor(), server_side.executor, {.key = "k", .max_payload = 1 << 20, .max_write_buffer = 4 << 20}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side caller;
  patio::tcp_client_broker client{io.get_executor(), caller.executor, {.key = "k"}};
  client.connect("127.0.0.1", port);

  auto test = [&]() -> asio::awaitable<void> {
    namespace frame = patio::detail::frame;
    auto raw = co_await connect_raw(port);
    co_await authenticate(raw, "k");
    // Ask for 64 MiB of replies and never read them.
    for (std::uint32_t serial = 1; serial <= 64; ++serial) {
      msgpack::sbuffer request;
      msgpack::packer<msgpack::sbuffer> pk(request);
      pk.pack_array(4);
      pk.pack(std::string("big"));
      pk.pack_array(1);
      pk.pack(std::size_t{1000 * 1000});
      pk.pack_map(0);
      pk.pack_nil();
      const auto f = frame::make(frame::type::request, serial, request.data(), request.size());
      std::error_code ec;
      co_await asio::async_write(raw, asio::buffer(f), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;  // already disconnected
    }
    // The server gives up on it: reading now drains what the kernel holds,
    // then ends, well short of 64 MB.
    std::size_t received = 0;
    std::string sink(1 << 16, '\0');
    std::error_code ec;
    co_await pause(500ms);
    for (;;) {
      received += co_await raw.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    CHECK((ec == asio::error::eof || ec == asio::error::connection_reset));
    CHECK(received < 32u * 1000 * 1000);

    // Others are served.
    CHECK(co_await client.call<std::string>({.timeout = 5s}, "big", 3) == "xxx");
    co_await client.close();
    co_await server.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("tcp options that cannot work are refused at construction", "[tcp][limits]") {
  asio::io_context io;
  calling_side side;
  CHECK_THROWS_AS(patio::tcp_server_broker(io.get_executor(), side.executor, {.max_in_flight = 0}),
                  std::invalid_argument);
  CHECK_THROWS_AS(
      patio::tcp_client_broker(io.get_executor(), side.executor, {.max_payload = 1 << 20, .max_write_buffer = 1 << 19}),
      std::invalid_argument);
}

TEST_CASE("tcp: listen names the address it cannot listen on", "[tcp][limits]") {
  asio::io_context io;
  server_side side;
  patio::tcp_server_broker server{io.get_executor(), side.executor};
  const auto taken = server.listen("127.0.0.1", 0);
  auto message_of = [&](const char* address, std::uint16_t port) -> std::string {
    try {
      server.listen(address, port);
    } catch (const std::system_error& e) {
      return e.what();
    }
    return "<nothing thrown>";
  };
  CHECK_THAT(message_of("localhost", 0), Catch::Contains("cannot listen on \"localhost\": not an IP address"));
  CHECK_THAT(message_of("127.0.0.1", taken), Catch::Contains("cannot listen on 127.0.0.1:" + std::to_string(taken)));
  patio::test::run(io, server.close());
}
