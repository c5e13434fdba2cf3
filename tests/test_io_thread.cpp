// SPDX-License-Identifier: MIT
// patio::io_thread: blocking calls from code that is not a coroutine.
#include "support.hpp"
#include "task_fixtures.hpp"
#include "tcp_fixtures.hpp"

#include <patio/io_thread.hpp>

#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace sync_tasks {

std::int64_t times(std::int64_t a, std::int64_t b) { return a * b; }

std::string refuse(std::string why) { throw std::invalid_argument(why); }

asio::awaitable<int> sleep_ms(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
  co_return ms;
}

}  // namespace sync_tasks

/// A registry, a thread pool executor and a memory broker, the usual set-up
/// of a synchronous program.
struct memory_side {
  patio::registry rpc;
  probes p;
  std::optional<patio::thread_pool_executor> executor;
  std::optional<patio::memory_broker> broker;

  memory_side() {
    rpc.add("times", sync_tasks::times);
    rpc.add("refuse", sync_tasks::refuse);
    rpc.add("sleep_ms", sync_tasks::sleep_ms);
    register_tasks(rpc, p);
    executor.emplace(rpc, 4);
    broker.emplace(*executor);
  }
  ~memory_side() { p.release.open(); }
};

/// Waits (bounded) until `done()` holds, for state that no event announces.
template <class F>
bool soon(F done) {
  const auto until = clock_type::now() + 10s;
  while (!done() && clock_type::now() < until) std::this_thread::sleep_for(1ms);
  return done();
}

std::uint64_t in_flight(const patio::memory_broker& broker, std::string_view name) {
  const auto snapshot = broker.metrics();
  const auto* f = snapshot.find(name);
  return f ? f->in_flight : 0;
}

template <class F>
std::exception_ptr thrown_by(F f) {
  try {
    f();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

}  // namespace

TEST_CASE("an io_thread call returns the result to a plain thread", "[io_thread]") {
  patio::io_thread io;
  memory_side side;

  SECTION("typed") { CHECK(io.call<std::int64_t>(*side.broker, "times", 6, 7) == 42); }
  SECTION("untyped, as a patio::value") {
    patio::value v = io.call(*side.broker, "times", 2, 3);
    CHECK(v.as<std::int64_t>() == 6);
  }
  SECTION("by function, arguments checked at compile time") {
    CHECK(io.call(*side.broker, &sync_tasks::times, 4, 5) == 20);
    CHECK(io.call(*side.broker, {.timeout = 5s}, &sync_tasks::times, 4, 6) == 24);
  }
  SECTION("through an executor without a broker") { CHECK(io.call<std::int64_t>(*side.executor, "times", 3, 3) == 9); }
  SECTION("run() of any coroutine, void or not") {
    CHECK(io.run(sync_tasks::sleep_ms(1)) == 1);
    std::atomic<bool> ran{false};
    io.run([](std::atomic<bool>* flag) -> asio::awaitable<void> {
      *flag = true;
      co_return;
    }(&ran));
    CHECK(ran);
  }
  SECTION("with several threads running the io_context") {
    patio::io_thread io4{4};
    CHECK(io4.threads() == 4);
    CHECK(io4.call<std::int64_t>(*side.broker, "times", 7, 7) == 49);
  }
}

TEST_CASE("an io_thread call rethrows the call's error with its type", "[io_thread]") {
  patio::io_thread io;
  memory_side side;

  SECTION("the task threw: remote_error with the remote type") {
    auto e = thrown_by([&] { io.call<std::string>(*side.broker, "refuse", std::string("no")); });
    auto remote = caught<patio::remote_error>(e);
    REQUIRE(remote);
    CHECK(remote->type_name() == "std::invalid_argument");
    CHECK(std::string(remote->what()) == "no");
  }
  SECTION("a function that is not registered") {
    CHECK_THROWS_AS(io.call(*side.broker, &unregistered, 1), patio::unknown_function_error);
  }
  SECTION("no such function") { CHECK_THROWS_AS(io.call(*side.broker, "missing"), patio::no_route_error); }
  SECTION("the result does not convert") {
    CHECK_THROWS_AS(io.call<std::string>(*side.broker, "times", 2, 3), patio::type_mismatch_error);
  }
  SECTION("whatever the coroutine run() runs throws") {
    CHECK_THROWS_AS(io.run([]() -> asio::awaitable<int> {
      throw std::out_of_range("out");
      co_return 0;
    }()),
                    std::out_of_range);
  }
  // The io_thread still serves after errors.
  CHECK(io.call<std::int64_t>(*side.broker, "times", 1, 1) == 1);
}

TEST_CASE("an io_thread call with a timeout fails with timeout_error at the deadline", "[io_thread]") {
  patio::io_thread io;
  memory_side side;
  const auto started = clock_type::now();
  CHECK_THROWS_AS(io.call<int>(*side.broker, {.timeout = 50ms}, "sleep_ms", 5000), patio::timeout_error);
  CHECK(clock_type::now() - started < 3s);
  // A synchronous task that overruns its timeout: the caller returns at the deadline.
  CHECK_THROWS_AS(io.call<int>(*side.broker, {.timeout = 50ms}, "sync_block"), patio::timeout_error);
  side.p.release.open();
}

TEST_CASE("many plain threads call through one io_thread at once", "[io_thread]") {
  patio::io_thread io{2};
  memory_side side;
  constexpr int threads = 8;
  constexpr int calls = 50;
  std::atomic<int> right{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        try {
          if (io.call<std::int64_t>(*side.broker, {.timeout = 20s}, "times", t, i) == std::int64_t{t} * i)
            ++right;
          else
            ++wrong;
        } catch (...) {
          ++wrong;
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  CHECK(right == threads * calls);
  CHECK(wrong == 0);
}

TEST_CASE("a blocking call from an io_thread's own thread throws deadlock_error instead of hanging", "[io_thread]") {
  patio::io_thread io;
  memory_side side;
  CHECK_FALSE(io.running_in_this_thread());

  std::promise<std::exception_ptr> call_result;
  std::promise<std::exception_ptr> stop_result;
  std::promise<bool> on_own_thread;
  asio::post(io.executor(), [&] {
    on_own_thread.set_value(io.running_in_this_thread());
    call_result.set_value(thrown_by([&] { io.call<std::int64_t>(*side.broker, "times", 1, 2); }));
    stop_result.set_value(thrown_by([&] { io.stop(); }));
  });
  auto f = call_result.get_future();
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  auto e = f.get();
  auto deadlock = caught<patio::deadlock_error>(e);
  REQUIRE(deadlock);
  CHECK(deadlock->value() == patio::errc::would_deadlock);
  CHECK(deadlock->code().message() == "a blocking call from a thread it would wait for");
  CHECK(caught<patio::deadlock_error>(stop_result.get_future().get()));
  CHECK(on_own_thread.get_future().get());

  SECTION("also from a task the async executor runs on the io_thread") {
    patio::registry rpc;
    rpc.add("nested", [&io, &side]() -> asio::awaitable<std::string> {
      try {
        io.call<std::int64_t>(*side.broker, "times", 1, 2);
      } catch (const patio::deadlock_error&) {
        co_return "refused";
      }
      co_return "called";
    });
    patio::async_executor coroutines{rpc, 1};
    patio::memory_broker nested{coroutines};
    CHECK(io.call<std::string>(nested, {.timeout = 10s}, "nested") == "refused");
  }
  // Nothing was stopped by the refused stop().
  CHECK_FALSE(io.stopped());
  CHECK(io.call<std::int64_t>(*side.broker, "times", 2, 2) == 4);
}

TEST_CASE("stopping an io_thread fails pending calls with closed_error and later ones at once", "[io_thread]") {
  memory_side side;
  auto io = std::make_unique<patio::io_thread>(2);

  // Two callers wait: one on a coroutine task (cancelled by stop), one on a
  // synchronous task blocked on a thread (its call is abandoned).
  auto coro = std::async(std::launch::async,
                         [&] { return thrown_by([&] { io->call<int>(*side.broker, "sleep_ms", 60'000); }); });
  auto sync =
      std::async(std::launch::async, [&] { return thrown_by([&] { io->call<int>(*side.broker, "sync_block"); }); });
  REQUIRE(side.p.started.wait(1, 10s));
  REQUIRE(soon([&] { return in_flight(*side.broker, "sleep_ms") == 1; }));

  const auto started = clock_type::now();
  io->stop();
  CHECK(clock_type::now() - started < 5s);
  CHECK(io->stopped());
  REQUIRE(coro.wait_for(10s) == std::future_status::ready);
  REQUIRE(sync.wait_for(10s) == std::future_status::ready);
  CHECK_THROWS_AS(raise(coro.get()), patio::closed_error);
  CHECK_THROWS_AS(raise(sync.get()), patio::closed_error);

  CHECK_THROWS_AS(io->call<std::int64_t>(*side.broker, "times", 1, 2), patio::closed_error);
  io->stop();  // idempotent
  // The abandoned thread pool task returns after the io_thread is gone: it
  // must not touch the io_context its caller ran on.
  side.p.release.open();
  io.reset();
  CHECK(in_flight(*side.broker, "sync_block") == 0);
  CHECK(in_flight(*side.broker, "sleep_ms") == 0);
}

TEST_CASE("a coroutine that ignores cancellation does not keep stop() waiting past its grace", "[io_thread]") {
  std::atomic<bool> started_running{false};
  std::atomic<bool> release{false};
  std::atomic<bool> ended{false};
  auto io = std::make_unique<patio::io_thread>();
  auto caller = std::async(std::launch::async, [&] {
    return thrown_by([&] {
      io->run([](std::atomic<bool>* running, std::atomic<bool>* r, std::atomic<bool>* e) -> asio::awaitable<void> {
        *running = true;
        // Polls, and swallows the cancellation.
        co_await asio::this_coro::throw_if_cancelled(false);
        auto ex = co_await asio::this_coro::executor;
        while (!*r) {
          asio::steady_timer t(ex, 5ms);
          std::error_code ignored;
          co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        }
        *e = true;
      }(&started_running, &release, &ended));
    });
  });
  REQUIRE(soon([&] { return started_running.load(); }));
  const auto started = clock_type::now();
  io->stop(100ms);
  CHECK(clock_type::now() - started < 5s);
  REQUIRE(caller.wait_for(10s) == std::future_status::ready);
  CHECK(caught<patio::closed_error>(caller.get()));
  // The io_context stopped with the coroutine in it: it never ran again, and
  // its frame went with the io_context.
  release = true;
  io.reset();
  CHECK_FALSE(ended);
}

TEST_CASE("an io_thread runs a TCP broker pair for synchronous callers", "[io_thread][tcp]") {
  patio::io_thread io;
  patio::test::tcp::serving_side server_side;
  patio::test::tcp::calling_side client_side;
  patio::tcp_server_broker server{io.executor(), server_side.executor};
  const std::uint16_t port = server.listen("127.0.0.1", 0);
  patio::tcp_client_broker client{io.executor(), client_side.executor};
  client.connect("127.0.0.1", port);

  // The first call waits for the connection (up to its timeout).
  CHECK(io.call<std::int64_t>(client, {.timeout = 10s}, "mul", 2, 3, 7) == 42);
  CHECK(io.call<std::string>(client, {.timeout = 10s}, "who") == "server");
  auto e = thrown_by([&] { io.call(client, {.timeout = 10s}, "fail", std::string("bad")); });
  auto remote = caught<patio::remote_error>(e);
  REQUIRE(remote);
  CHECK(remote->type_name() == "std::invalid_argument");
  CHECK_THROWS_AS(io.call<std::string>(client, {.timeout = 50ms}, "slow", 5000), patio::timeout_error);

  // Closing the brokers is a coroutine too.
  io.run(client.close());
  io.run(server.close());
  CHECK_THROWS_AS(io.call(client, "mul", 1), patio::closed_error);
}
