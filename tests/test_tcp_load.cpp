// SPDX-License-Identifier: MIT
// Load: many connections, many calls, mixed outcomes; every call must get
// exactly its own answer. A million calls in an optimised build; fewer in a
// debug or sanitizer build, which are ten to fifty times slower
// (PATIO_LOAD_CALLS overrides).
#include "support.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

#ifdef NDEBUG
constexpr bool optimised = !sanitized;
#else
constexpr bool optimised = false;
#endif

std::int64_t total_calls() {
  if (const char* v = std::getenv("PATIO_LOAD_CALLS")) return std::atoll(v);
  return optimised ? 1'000'000 : sanitized ? 20'000 : 100'000;
}

/// Peak resident set size of this process in KiB (VmHWM), 0 if unknown.
long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmHWM:") {
      long kib = 0;
      status >> kib;
      return kib;
    }
    status.ignore(1 << 12, '\n');
  }
  return 0;
}

/// The answer `echo` gives to caller `c`'s call `i`: unique per call, so a
/// crossed or duplicated reply cannot match.
std::int64_t answer(std::int64_t c, std::int64_t i) { return c * 1'000'000'000 + i * 7 + 3; }

struct tally {
  std::atomic<std::int64_t> results{0}, errors{0}, timeouts{0}, wrong{0};
};

}  // namespace

TEST_CASE("tcp load: 64 connections and every call gets exactly its own answer", "[tcp][load]") {
  constexpr int clients = 64;
  constexpr int window = 16;  // calls in flight per connection
  const std::int64_t per_client = std::max<std::int64_t>(total_calls() / clients, window);

  // The server on its own thread and io_context, as in a real deployment.
  std::atomic<std::int64_t> echoes_run{0};
  patio::registry server_rpc;
  server_rpc.add("echo", [&](std::int64_t c, std::int64_t i) {
    ++echoes_run;
    return answer(c, i);
  });
  server_rpc.add("fail", [](std::int64_t c, std::int64_t i) -> std::int64_t {
    throw std::runtime_error(fmt::format("failed {}:{}", c, i));
  });
  server_rpc.add("slow", [](int ms) -> asio::awaitable<std::int64_t> {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await t.async_wait(asio::use_awaitable);
    co_return 0;
  });
  patio::async_executor server_executor{server_rpc, {.max_workers = 4096}};
  asio::io_context server_io;
  patio::tcp_server_broker server{server_io.get_executor(), server_executor, {.key = "load"}};
  const auto port = server.listen("127.0.0.1", 0);
  auto server_work = asio::make_work_guard(server_io);
  std::thread server_thread([&] { server_io.run(); });

  asio::io_context io;
  patio::registry client_rpc;
  patio::null_executor client_executor{client_rpc};
  std::vector<std::unique_ptr<patio::tcp_client_broker>> brokers;
  for (int c = 0; c < clients; ++c) {
    brokers.push_back(std::make_unique<patio::tcp_client_broker>(io.get_executor(), client_executor,
                                                                 patio::tcp_options{.key = "load"}));
    brokers.back()->connect("127.0.0.1", port);
  }

  tally t;
  std::int64_t echo_calls = 0;
  // One call: i % 100 == 0 times out, i % 10 == 1 raises, the rest echo.
  // (Coroutines return int: patio::gather takes values.)
  auto one = [&](patio::tcp_client_broker& b, std::int64_t c, std::int64_t i) -> asio::awaitable<int> {
    try {
      if (i % 100 == 0) {
        co_await b.call<std::int64_t>({.timeout = 20ms}, "slow", 10'000);
        ++t.wrong;  // it cannot have finished in time
      } else if (i % 10 == 1) {
        co_await b.call<std::int64_t>({.timeout = 120s}, "fail", c, i);
        ++t.wrong;
      } else {
        const auto r = co_await b.call<std::int64_t>({.timeout = 120s}, "echo", c, i);
        ++(r == answer(c, i) ? t.results : t.wrong);
      }
    } catch (const patio::timeout_error&) {
      ++(i % 100 == 0 ? t.timeouts : t.wrong);
    } catch (const patio::remote_error& e) {
      ++(i % 10 == 1 && std::string(e.what()) == fmt::format("failed {}:{}", c, i) ? t.errors : t.wrong);
    } catch (const std::exception&) {
      ++t.wrong;
    }
    co_return 0;
  };
  for (std::int64_t i = 0; i < per_client; ++i)
    if (i % 100 != 0 && i % 10 != 1) ++echo_calls;
  echo_calls *= clients;

  // Every connection up first: a 20 ms call made before would fail for want
  // of a route, not by timing out.
  auto connected = [&]() -> asio::awaitable<void> {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    for (const auto until = std::chrono::steady_clock::now() + 60s; std::chrono::steady_clock::now() < until;) {
      if (std::all_of(brokers.begin(), brokers.end(), [](auto& b) { return b->connections() == 1; })) co_return;
      pause.expires_after(5ms);
      co_await pause.async_wait(asio::use_awaitable);
    }
    throw std::runtime_error("the clients did not all connect within 60 s");
  };
  patio::test::run(io, connected(), std::chrono::seconds(90));

  const auto start = std::chrono::steady_clock::now();
  // (Named lambdas: a coroutine lambda must outlive its coroutine.)
  auto connection = [&](int c) -> asio::awaitable<int> {
    auto& b = *brokers[c];
    for (std::int64_t i = 0; i < per_client; i += window) {
      std::vector<asio::awaitable<int>> batch;
      for (std::int64_t j = i; j < std::min(per_client, i + window); ++j) batch.push_back(one(b, c, j));
      co_await patio::gather(std::move(batch));
    }
    co_return 0;
  };
  auto drive = [&]() -> asio::awaitable<void> {
    std::vector<asio::awaitable<int>> per_connection;
    for (int c = 0; c < clients; ++c) per_connection.push_back(connection(c));
    co_await patio::gather(std::move(per_connection));
    for (auto& b : brokers) co_await b->close();
  };
  patio::test::run(io, drive(), std::chrono::seconds(600));
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;

  asio::co_spawn(server_io, server.close(), asio::detached);
  server_work.reset();
  server_thread.join();

  const auto calls = per_client * clients;
  const auto rss = peak_rss_kib();
  WARN(fmt::format("{} calls over {} connections in {:.1f} s ({:.0f} calls/s); peak RSS {} MiB (client and server)",
                   calls, clients, took.count(), static_cast<double>(calls) / took.count(), rss / 1024));
  CHECK(t.wrong == 0);
  CHECK(t.results + t.errors + t.timeouts == calls);  // none lost
  CHECK(t.results == echo_calls);
  CHECK(echoes_run == echo_calls);  // none run twice, none dropped
  CHECK(rss < 2 * 1024 * 1024);     // bounded: well under 2 GiB
}
