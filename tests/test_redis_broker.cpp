// SPDX-License-Identifier: MIT
// The Redis Streams broker against a real redis-server (tests/redis_fixtures.hpp).
#include "redis_fixtures.hpp"
#include "support.hpp"

#include <patio/detail/redis_protocol.hpp>
#include <patio/redis_broker.hpp>

#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using patio::test::redis::client;
using patio::test::redis::server;

namespace {

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

std::string fail(std::string what) { throw std::invalid_argument(what); }

asio::awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

asio::awaitable<std::string> slow(int ms) {
  co_await pause(std::chrono::milliseconds(ms));
  co_return "slept " + std::to_string(ms);
}

/// Awaits (bounded) until `done()` holds: for state no event announces.
template <class F>
asio::awaitable<bool> eventually(F done, std::chrono::milliseconds limit = 10s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) co_await pause(5ms);
  co_return done();
}

/// A process's worth of patio: registry, executor, Redis broker. `name`
/// answers "who", so a test sees which worker ran a call.
struct node {
  node(asio::io_context& io, const patio::redis_options& options, std::string name = "node", bool serve = true)
      : who_name(std::move(name)) {
    if (serve) {
      rpc.add("mul", mul);
      rpc.add("fail", fail);
      rpc.add("slow", slow);
      rpc.add("who", [this] {
        ++ran;
        return who_name;
      });
      rpc.add("count", [this] { return ++ran; });
      rpc.add("slow_who", [this](int ms) -> asio::awaitable<std::string> {
        co_await pause(std::chrono::milliseconds(ms));
        co_return who_name;
      });
    }
    broker.emplace(io.get_executor(), executor, options);
  }
  patio::registry rpc;
  patio::async_executor executor{rpc, 64};
  std::string who_name;
  std::atomic<int> ran{0};
  std::optional<patio::redis_broker> broker;
};

}  // namespace

TEST_CASE("redis: calls, results and errors round-trip through a real redis-server", "[redis]") {
  server redis;
  asio::io_context io;
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    auto product = co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", 1, 2, 3);
    CHECK(product == 6);
    auto dynamic = co_await caller.broker->call({.timeout = 5s}, "mul", 4, 5);
    CHECK(dynamic.as<std::int64_t>() == 20);

    try {
      co_await caller.broker->call<std::string>({.timeout = 5s}, "fail", "boom");
      FAIL("no exception");
    } catch (const patio::remote_error& e) {
      CHECK(e.type_name() == "std::invalid_argument");
      CHECK(std::string(e.what()) == "boom");
    }
    try {
      co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", "not a number");
      FAIL("no exception");
    } catch (const patio::bad_arguments_error&) {
    }
    try {
      co_await caller.broker->call<std::string>({.timeout = 5s}, "mul", 2);
      FAIL("no exception");
    } catch (const patio::type_mismatch_error&) {
    }
    // The worker calls too (it is a caller as well).
    auto own = co_await worker.broker->call<std::string>({.timeout = 5s}, "who");
    CHECK(own == "worker");
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: a call for a function no worker offers fails fast with no_route_error", "[redis]") {
  server redis;
  asio::io_context io;
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    const auto start = std::chrono::steady_clock::now();
    try {
      co_await caller.broker->call({.timeout = 10s}, "nobody");
      FAIL("no exception");
    } catch (const patio::no_route_error& e) {
      CHECK(std::string(e.what()).find("nobody") != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    // A worker that closed withdraws its advertisement: fast failure again.
    co_await worker.broker->close();
    try {
      co_await caller.broker->call({.timeout = 10s}, "mul", 1, 2);
      FAIL("no exception");
    } catch (const patio::no_route_error&) {
    }
    CHECK(std::chrono::steady_clock::now() - start < 4s);
    co_await caller.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: with wait_for_route a call waits for a worker that starts later", "[redis]") {
  server redis;
  asio::io_context io;
  auto options = redis.options();
  options.wait_for_route = true;
  node caller(io, options, "caller", false);
  node worker(io, redis.options(), "late");
  auto test = [&]() -> asio::awaitable<void> {
    co_await caller.broker->setup();
    // The call goes first; the worker comes 200 ms later and takes it.
    auto start_worker = [&]() -> asio::awaitable<void> {
      co_await pause(200ms);
      co_await worker.broker->setup();
    };
    asio::co_spawn(io, start_worker(), asio::detached);
    auto who = co_await caller.broker->call<std::string>({.timeout = 10s}, "who");
    CHECK(who == "late");
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

namespace {
/// One call of "slow_who"; counts the answer under the worker's name.
asio::awaitable<void> call_slow_who(patio::redis_broker& broker, std::map<std::string, int>& seen, int& done) {
  auto who = co_await broker.call<std::string>({.timeout = 10s}, "slow_who", 20);
  ++seen[who];
  ++done;
}
}  // namespace

TEST_CASE("redis: several workers share the load", "[redis]") {
  server redis;
  asio::io_context io;
  auto options = redis.options();
  options.read_batch = 4;  // so one worker cannot swallow the whole burst at once
  options.max_in_flight = 8;
  node a(io, options, "a"), b(io, options, "b"), c(io, options, "c");
  node caller(io, redis.options(), "caller", false);
  auto test = [&]() -> asio::awaitable<void> {
    co_await a.broker->setup();
    co_await b.broker->setup();
    co_await c.broker->setup();
    co_await caller.broker->setup();
    std::map<std::string, int> seen;
    int done = 0;
    constexpr int calls = 90;
    for (int i = 0; i < calls; ++i) asio::co_spawn(io, call_slow_who(*caller.broker, seen, done), asio::detached);
    CHECK(co_await eventually([&] { return done == calls; }));
    CHECK(seen.size() == 3);
    for (const auto& [name, count] : seen) INFO(name << " ran " << count);
    CHECK(seen["a"] + seen["b"] + seen["c"] == calls);
    co_await caller.broker->close();
    co_await a.broker->close();
    co_await b.broker->close();
    co_await c.broker->close();
  };
  patio::test::run(io, test());
}
