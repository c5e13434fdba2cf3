// SPDX-License-Identifier: MIT
#include "support.hpp"

#include <catch2/catch.hpp>

// What these tests use of Asio directly.
#include "task_fixtures.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace {

struct async_kind {
  using executor_type = patio::async_executor;
  static constexpr std::string_view prefix = "coro_";
  static constexpr auto mul_fn = &amul;
  static constexpr auto add_fn = &aadd;
};

struct pool_kind {
  using executor_type = patio::thread_pool_executor;
  static constexpr std::string_view prefix = "sync_";
  static constexpr auto mul_fn = &mul;
  static constexpr auto add_fn = &add;
};

/// A registry with every task ("mul" and "add" are the kind's own: coroutines
/// for the async executor, synchronous functions for the thread pool), an
/// executor of the kind and a memory broker on it.
template <class Kind>
struct fixture {
  explicit fixture(patio::executor_options options = {}) {
    rpc.add("mul", Kind::mul_fn);
    rpc.add("add", Kind::add_fn);
    register_tasks(rpc, p);
    executor.emplace(rpc, options);
    broker.emplace(*executor);
  }
  ~fixture() {
    p.release.open();  // no pool thread stays blocked: shutdown joins them
    broker.reset();
    executor.reset();
  }
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;

  /// The kind's version of task `base`: "coro_slow" or "sync_slow".
  [[nodiscard]] static std::string task(std::string_view base) { return std::string(Kind::prefix) + std::string(base); }

  patio::registry rpc;
  probes p;
  std::optional<typename Kind::executor_type> executor;
  std::optional<patio::memory_broker> broker;
};

}  // namespace

// ---- results -------------------------------------------------------------------

TEMPLATE_TEST_CASE("a memory broker call returns the task's result", "[memory_broker]", async_kind, pool_kind) {
  fixture<TestType> f;
  patio::memory_broker& broker = *f.broker;

  SECTION("untyped: a patio::value equal to 6") {
    const patio::value v = patio::test::run(broker.call("mul", 1, 2, 3));
    CHECK(v.is_int());
    CHECK(v == patio::value(std::int64_t{6}));
    CHECK(v.as<std::int64_t>() == 6);
    CHECK(v.to_string() == "6");
  }

  SECTION("call<T> returns T") {
    CHECK(patio::test::run(broker.call<std::int64_t>("mul", 1, 2, 3)) == 6);
    CHECK(patio::test::run(broker.call<int>("mul", 1, 2, 3)) == 6);  // converted
    CHECK(patio::test::run(broker.call<int>("add", 2, 3)) == 5);
  }

  SECTION("by the function itself: the result type is the function's") {
    auto r = patio::test::run(broker.call(TestType::add_fn, 2, 3));
    STATIC_REQUIRE(std::is_same_v<decltype(r), int>);
    CHECK(r == 5);
    CHECK(patio::test::run(broker.call(patio::call_options{.timeout = 5s}, TestType::add_fn, 4, 5)) == 9);
    // A varargs function: the arguments are spread, as Python's *args.
    auto product = patio::test::run(broker.call(TestType::mul_fn, 1, 2, 3));
    STATIC_REQUIRE(std::is_same_v<decltype(product), std::int64_t>);
    CHECK(product == 6);
  }

  SECTION("100 gathered calls all return 6") {
    auto results = patio::test::run([&]() -> asio::awaitable<std::vector<patio::value>> {
      std::vector<asio::awaitable<patio::value>> calls;
      for (int i = 0; i < 100; ++i) calls.push_back(broker.call("mul", 1, 2, 3));
      co_return co_await patio::gather(std::move(calls));
    }());
    REQUIRE(results.size() == 100);
    CHECK(std::all_of(results.begin(), results.end(),
                      [](const patio::value& v) { return v.is_int() && v.as<std::int64_t>() == 6; }));
  }

  SECTION("synchronous and coroutine functions both run") {
    CHECK(patio::test::run(broker.call<std::int64_t>("sync_mul", 2, 3)) == 6);
    CHECK(patio::test::run(broker.call<std::int64_t>("coro_mul", 2, 3)) == 6);
  }

  SECTION("a void function returns nothing, and call<void> works") {
    for (const char* name : {"sync_noop", "coro_noop"}) {
      INFO(name);
      const patio::value v = patio::test::run(broker.call(name));
      CHECK(v.is_nil());
      patio::test::run(broker.call<void>(name));
    }
    CHECK(f.p.noop_calls == 4);
  }

  SECTION("setup() is idempotent") {
    patio::test::run(broker.setup());
    patio::test::run(broker.setup());
    CHECK(patio::test::run(broker.call<std::int64_t>("mul", 2, 3)) == 6);
  }

  SECTION("accessors") {
    CHECK_FALSE(broker.closed());
    CHECK(&broker.executor() == &*f.executor);
    CHECK(&broker.registry() == &f.rpc);
  }
}

TEMPLATE_TEST_CASE("the caller resumes on its own thread after a broker call", "[memory_broker]", async_kind,
                   pool_kind) {
  fixture<TestType> f;
  patio::memory_broker& broker = *f.broker;
  const auto io_thread = std::this_thread::get_id();  // patio::test::run runs the io_context here

  patio::test::run([&]() -> asio::awaitable<void> {
    const int r = co_await broker.call<int>("sync_where");
    CHECK(r == 1);
    CHECK(std::this_thread::get_id() == io_thread);
    const patio::value v = co_await broker.call("mul", 2, 3);
    CHECK(v.as<int>() == 6);
    CHECK(std::this_thread::get_id() == io_thread);
  }());
  if constexpr (std::is_same_v<TestType, pool_kind>)
    CHECK(f.p.task_thread.load() != io_thread);  // ran on a pool thread
  else
    CHECK(f.p.task_thread.load() == io_thread);  // ran on the caller's executor
}

// ---- failures ------------------------------------------------------------------

TEMPLATE_TEST_CASE("a memory broker reports each failure with its own exception type", "[memory_broker]", async_kind,
                   pool_kind) {
  fixture<TestType> f;
  patio::memory_broker& broker = *f.broker;

  SECTION("an unknown name: no_route_error") {
    auto e = patio::test::run(error_of(broker.call("nope", 1)));
    CHECK_THROWS_AS(raise(e), patio::no_route_error);
    CHECK_THROWS_WITH(raise(e), Catch::Contains("nope"));
    auto err = caught<patio::error>(e);
    REQUIRE(err);
    CHECK(err->code() == patio::errc::no_route);
    auto typed = patio::test::run(error_of(broker.call<int>("nope")));
    CHECK_THROWS_AS(raise(typed), patio::no_route_error);
  }

  SECTION("an unregistered function: unknown_function_error") {
    auto e = patio::test::run(error_of(broker.call(unregistered, 1)));
    CHECK_THROWS_AS(raise(e), patio::unknown_function_error);
  }

  SECTION("wrong argument count: bad_arguments_error") {
    auto few = patio::test::run(error_of(broker.call("add", 1)));
    CHECK_THROWS_AS(raise(few), patio::bad_arguments_error);
    CHECK_THROWS_WITH(raise(few), Catch::Contains("add") && Catch::Contains("expected 2 arguments, got 1"));
    auto many = patio::test::run(error_of(broker.call<int>("add", 1, 2, 3)));
    CHECK_THROWS_AS(raise(many), patio::bad_arguments_error);
    auto err = caught<patio::error>(few);
    REQUIRE(err);
    CHECK(err->code() == patio::errc::bad_arguments);
  }

  SECTION("wrong argument type: bad_arguments_error") {
    auto e = patio::test::run(error_of(broker.call("add", 1, "two")));
    CHECK_THROWS_AS(raise(e), patio::bad_arguments_error);
    CHECK_THROWS_WITH(raise(e), Catch::Contains("argument 2") && Catch::Contains("str"));
    auto vararg = patio::test::run(error_of(broker.call("mul", "one", 2)));
    CHECK_THROWS_AS(raise(vararg), patio::bad_arguments_error);
    CHECK_THROWS_WITH(raise(vararg), Catch::Contains("argument 1"));
  }

  SECTION("a result that does not convert: type_mismatch_error") {
    auto e = patio::test::run(error_of(broker.call<std::string>("mul", 2, 3)));
    CHECK_THROWS_AS(raise(e), patio::type_mismatch_error);
  }

  SECTION("a task that throws std::runtime_error(\"boom\"): remote_error") {
    for (const char* name : {"sync_boom", "coro_boom"}) {
      INFO(name);
      auto e = patio::test::run(error_of(broker.call(name)));
      CHECK_THROWS_AS(raise(e), patio::remote_error);
      auto remote = caught<patio::remote_error>(e);
      REQUIRE(remote);
      CHECK(remote->type_name() == "std::runtime_error");
      CHECK(std::string(remote->what()) == "boom");
      CHECK(remote->code() == patio::errc::remote_error);
    }
  }

  SECTION("a task that throws 42: remote_error with type name \"int\"") {
    for (const char* name : {"sync_throw_int", "coro_throw_int"}) {
      INFO(name);
      auto e = patio::test::run(error_of(broker.call<int>(name)));
      auto remote = caught<patio::remote_error>(e);
      REQUIRE(remote);
      CHECK(remote->type_name() == "int");
    }
  }
}

TEMPLATE_TEST_CASE("a memory broker call past its timeout fails with timeout_error promptly", "[memory_broker]",
                   async_kind, pool_kind) {
  using F = fixture<TestType>;
  F f;
  patio::memory_broker& broker = *f.broker;

  const auto start = clock_type::now();
  patio::test::run([&]() -> asio::awaitable<void> {
    auto e = co_await error_of(broker.call<int>({.timeout = 50ms}, F::task("slow")));
    CHECK(clock_type::now() - start < 1s);
    CHECK_THROWS_AS(raise(e), patio::timeout_error);
    auto err = caught<patio::error>(e);
    REQUIRE(err);
    CHECK(err->code() == patio::errc::timeout);
    co_await pause(50ms);
    CHECK(f.p.slow_started == 1);
    CHECK_FALSE(f.p.slow_finished);
    if constexpr (std::is_same_v<TestType, async_kind>) CHECK(f.p.slow_cancelled);
  }());
  CHECK(clock_type::now() - start < 1s);
}

TEST_CASE("a memory broker over a full thread pool refuses with queue_full", "[memory_broker]") {
  fixture<pool_kind> f{{.max_workers = 1, .max_queue = 1}};
  patio::memory_broker& broker = *f.broker;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto first = [&]() -> asio::awaitable<int> { co_return co_await broker.call<int>("sync_block"); };
    auto second = [&]() -> asio::awaitable<int> { co_return co_await broker.call<int>("add", 2, 3); };
    auto third = [&]() -> asio::awaitable<std::exception_ptr> {
      auto e = co_await error_of(broker.call<int>("add", 3, 4));
      f.p.release.open();
      co_return e;
    };
    auto rest = [&]() -> asio::awaitable<std::tuple<int, std::exception_ptr>> {
      REQUIRE(f.p.started.wait());  // the worker took the first call: the queue is empty
      co_return co_await (second() && third());
    };
    auto [six, others] = co_await (first() && rest());
    auto [five, e] = others;
    CHECK(six == 6);
    CHECK(five == 5);
    auto refused = caught<patio::executor_refused_error>(e);
    REQUIRE(refused);
    CHECK(refused->code() == patio::errc::queue_full);
  }());
}

TEST_CASE("a memory broker over a null executor refuses every call", "[memory_broker]") {
  patio::registry rpc;
  rpc.add("mul", mul);
  rpc.add("add", add);
  patio::null_executor ex{rpc};
  patio::memory_broker broker{ex};

  auto e = patio::test::run(error_of(broker.call("mul", 1, 2, 3)));
  CHECK_THROWS_AS(raise(e), patio::executor_refused_error);
  auto refused = caught<patio::executor_refused_error>(e);
  REQUIRE(refused);
  CHECK(refused->code() == patio::errc::executor_refused);
  auto by_fn = patio::test::run(error_of(broker.call(add, 1, 2)));
  CHECK_THROWS_AS(raise(by_fn), patio::executor_refused_error);
  auto unknown = patio::test::run(error_of(broker.call("nope")));
  CHECK_THROWS_AS(raise(unknown), patio::no_route_error);
}

// ---- the registry ---------------------------------------------------------------

TEST_CASE("a started memory broker locks the registry", "[memory_broker]") {
  patio::registry rpc;
  rpc.add("mul", mul);
  CHECK_FALSE(rpc.locked());

  auto check_locked = [&] {
    CHECK(rpc.locked());
    try {
      rpc.add("add", add);
      FAIL("registering after the broker started did not throw");
    } catch (const patio::registry_error& e) {
      CHECK(e.code() == patio::errc::registry_locked);
    }
    CHECK_THROWS_AS(
        rpc["sub"] = [](int a, int b) { return a - b; }, patio::registry_error);
    try {
      rpc.erase("mul");
      FAIL("erasing after the broker started did not throw");
    } catch (const patio::registry_error& e) {
      CHECK(e.code() == patio::errc::registry_locked);
    }
    CHECK(rpc.contains("mul"));
    CHECK_FALSE(rpc.contains("add"));
    CHECK(rpc.size() == 1);
  };

  SECTION("thread pool") {
    patio::thread_pool_executor ex{rpc, 2};
    CHECK_FALSE(rpc.locked());  // an executor alone does not lock
    patio::memory_broker broker{ex};
    check_locked();
    CHECK(patio::test::run(broker.call<std::int64_t>("mul", 2, 3)) == 6);
  }
  SECTION("async") {
    patio::async_executor ex{rpc, 2};
    patio::memory_broker broker{ex};
    check_locked();
  }
  SECTION("null executor") {
    patio::null_executor ex{rpc};
    patio::memory_broker broker{ex};
    check_locked();
  }
  SECTION("still locked after the broker closed") {
    patio::thread_pool_executor ex{rpc, 2};
    {
      patio::memory_broker broker{ex};
      patio::test::run(broker.close());
    }
    check_locked();
  }
}

// ---- several threads -------------------------------------------------------------

TEMPLATE_TEST_CASE("one memory broker serves callers on several threads at once", "[memory_broker]", async_kind,
                   pool_kind) {
  fixture<TestType> f;
  patio::memory_broker& broker = *f.broker;

  constexpr int threads = 4;
  constexpr int calls_per_thread = 60;
  std::atomic<int> correct{0};
  std::atomic<int> wrong{0};
  std::atomic<int> wrong_thread{0};
  std::mutex errors_mutex;
  std::vector<std::string> errors;

  // Every thread runs its own io_context (patio::test::run); Catch's
  // assertions stay on this thread.
  auto caller = [&](int t) {
    try {
      patio::test::run([&]() -> asio::awaitable<void> {
        const auto me = std::this_thread::get_id();
        // Half the calls concurrently...
        std::vector<asio::awaitable<std::int64_t>> batch;
        for (int i = 0; i < calls_per_thread / 2; ++i) batch.push_back(broker.call<std::int64_t>("mul", t + 1, i));
        auto results = co_await patio::gather(std::move(batch));
        if (std::this_thread::get_id() != me) ++wrong_thread;
        for (int i = 0; i < calls_per_thread / 2; ++i) (results[i] == (t + 1) * i ? correct : wrong)++;
        // ... half one after the other, untyped.
        for (int i = 0; i < calls_per_thread / 2; ++i) {
          const patio::value v = co_await broker.call("mul", t + 1, i, 2);
          if (std::this_thread::get_id() != me) ++wrong_thread;
          (v.as<std::int64_t>() == (t + 1) * i * 2 ? correct : wrong)++;
        }
      }());
    } catch (const std::exception& e) {
      std::lock_guard lock(errors_mutex);
      errors.emplace_back(e.what());
    }
  };

  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(caller, t);
  for (auto& th : pool) th.join();

  for (const auto& e : errors) FAIL_CHECK("a calling thread failed: " << e);
  CHECK(errors.empty());
  CHECK(correct == threads * calls_per_thread);
  CHECK(wrong == 0);
  CHECK(wrong_thread == 0);
}

// ---- closing -------------------------------------------------------------------

TEMPLATE_TEST_CASE("a closed memory broker wakes join() and refuses later calls", "[memory_broker]", async_kind,
                   pool_kind) {
  fixture<TestType> f;
  patio::memory_broker& broker = *f.broker;
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    bool joined = false;
    auto joiner = [&]() -> asio::awaitable<void> {
      co_await broker.join();
      joined = true;
    };
    auto closer = [&]() -> asio::awaitable<void> {
      co_await pause(20ms);
      CHECK_FALSE(joined);  // join() waits for close()
      CHECK_FALSE(broker.closed());
      co_await broker.close();
    };
    co_await (joiner() && closer());
    CHECK(joined);
    CHECK(broker.closed());

    // Later calls: closed_error, by name, untyped and by function.
    auto typed = co_await error_of(broker.call<std::int64_t>("mul", 1, 2));
    CHECK_THROWS_AS(raise(typed), patio::closed_error);
    auto err = caught<patio::error>(typed);
    REQUIRE(err);
    CHECK(err->code() == patio::errc::closed);
    auto untyped = co_await error_of(broker.call("mul", 1, 2));
    CHECK_THROWS_AS(raise(untyped), patio::closed_error);
    auto by_fn = co_await error_of(broker.call(TestType::add_fn, 1, 2));
    CHECK_THROWS_AS(raise(by_fn), patio::closed_error);
    // Even an unknown name: the broker is closed first of all.
    auto unknown = co_await error_of(broker.call("nope"));
    CHECK_THROWS_AS(raise(unknown), patio::closed_error);

    // close() is idempotent; join() after close() returns at once.
    co_await broker.close();
    co_await broker.close();
    co_await broker.join();
    CHECK(broker.closed());

    // setup() cannot reopen it.
    auto reopened = co_await error_of(broker.setup());
    CHECK_THROWS_AS(raise(reopened), patio::closed_error);

    // close() shut the executor down, as patio does.
    auto direct = co_await error_of(ex.submit<std::int64_t>("mul", 1, 2));
    auto refused = caught<patio::executor_refused_error>(direct);
    REQUIRE(refused);
    CHECK(refused->code() == patio::errc::shut_down);
  }());
}

TEST_CASE("closing a memory broker with work in flight fails the queued calls", "[memory_broker]") {
  SECTION("thread pool: the running task finishes, the queued ones are refused") {
    fixture<pool_kind> f{{.max_workers = 1}};
    patio::memory_broker& broker = *f.broker;
    patio::test::run([&]() -> asio::awaitable<void> {
      auto outcome = [&](std::string name) -> asio::awaitable<std::exception_ptr> {
        co_return co_await error_of(broker.call<int>(name));
      };
      auto control = [&]() -> asio::awaitable<std::exception_ptr> {
        REQUIRE(f.p.started.wait());  // the first call runs, the others are queued
        // close() shuts the pool down, which joins the worker waiting for the
        // gate: open it from another thread a little later.
        const auto start = clock_type::now();
        std::thread opener([&] {
          std::this_thread::sleep_for(30ms);
          f.p.release.open();
        });
        co_await broker.close();
        const auto took = clock_type::now() - start;
        opener.join();
        CHECK(took >= 30ms);  // it waited for the running task
        CHECK(took < 1s);
        co_return co_await error_of(broker.call<int>("add", 1, 2));
      };
      std::vector<asio::awaitable<std::exception_ptr>> all;
      all.push_back(outcome("sync_block"));
      all.push_back(outcome("sync_late"));
      all.push_back(outcome("sync_late"));
      all.push_back(control());
      auto errors = co_await patio::gather(std::move(all));
      REQUIRE(errors.size() == 4);
      CHECK_FALSE(errors[0]);
      for (std::size_t i = 1; i < 3; ++i) {
        INFO("call " << i);
        auto refused = caught<patio::executor_refused_error>(errors[i]);
        REQUIRE(refused);
        CHECK(refused->code() == patio::errc::shut_down);
      }
      CHECK_THROWS_AS(raise(errors[3]), patio::closed_error);
      CHECK(f.p.late_runs == 0);
    }());
  }

  SECTION("async: the running task is cancelled, the queued ones are refused") {
    fixture<async_kind> f{{.max_workers = 1}};
    patio::memory_broker& broker = *f.broker;
    const auto start = clock_type::now();
    patio::test::run([&]() -> asio::awaitable<void> {
      auto outcome = [&](std::string name) -> asio::awaitable<std::exception_ptr> {
        co_return co_await error_of(broker.call<int>(name));
      };
      auto control = [&]() -> asio::awaitable<std::exception_ptr> {
        co_await pause(20ms);
        co_await broker.close();
        co_return co_await error_of(broker.call<int>("add", 1, 2));
      };
      std::vector<asio::awaitable<std::exception_ptr>> all;
      all.push_back(outcome("coro_slow"));
      all.push_back(outcome("coro_late"));
      all.push_back(outcome("coro_late"));
      all.push_back(control());
      auto errors = co_await patio::gather(std::move(all));
      REQUIRE(errors.size() == 4);
      for (std::size_t i = 0; i < 3; ++i) {
        INFO("call " << i);
        auto refused = caught<patio::executor_refused_error>(errors[i]);
        REQUIRE(refused);
        CHECK(refused->code() == patio::errc::shut_down);
      }
      CHECK_THROWS_AS(raise(errors[3]), patio::closed_error);
      CHECK(f.p.slow_cancelled);
      CHECK_FALSE(f.p.slow_finished);
      CHECK(f.p.late_runs == 0);
    }());
    CHECK(clock_type::now() - start < 1s);
  }
}

TEST_CASE("destroying a memory broker closes it and shuts the executor down", "[memory_broker]") {
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::thread_pool_executor ex{rpc, 2};
  {
    patio::memory_broker broker{ex};
    CHECK(patio::test::run(broker.call<std::int64_t>("mul", 2, 3)) == 6);
  }
  auto e = patio::test::run(error_of(ex.submit<std::int64_t>("mul", 2, 3)));
  auto refused = caught<patio::executor_refused_error>(e);
  REQUIRE(refused);
  CHECK(refused->code() == patio::errc::shut_down);
}

// ---- cancellation ------------------------------------------------------------

TEST_CASE("a broker call that loses a race to a timer is abandoned and its task cancelled", "[memory_broker]") {
  SECTION("async executor: the coroutine task is cancelled") {
    fixture<async_kind> f;
    patio::memory_broker& broker = *f.broker;
    const auto start = clock_type::now();
    patio::test::run([&]() -> asio::awaitable<void> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
      auto winner = co_await (broker.call("coro_slow") || timer.async_wait(asio::use_awaitable));
      CHECK(winner.index() == 1);  // the timer won
      co_await pause(50ms);
      CHECK(f.p.slow_started == 1);
      CHECK(f.p.slow_cancelled);
      CHECK_FALSE(f.p.slow_finished);
      // The broker and its executor go on.
      const auto r = co_await broker.call<std::int64_t>("mul", 2, 3);
      CHECK(r == 6);
    }());
    CHECK(clock_type::now() - start < 1s);
  }

  SECTION("thread pool: a queued task never runs") {
    fixture<pool_kind> f{{.max_workers = 1}};
    patio::memory_broker& broker = *f.broker;
    patio::test::run([&]() -> asio::awaitable<void> {
      auto blocked = [&]() -> asio::awaitable<int> { co_return co_await broker.call<int>("sync_block"); };
      auto abandoning = [&]() -> asio::awaitable<std::size_t> {
        REQUIRE(f.p.started.wait());
        asio::steady_timer timer(co_await asio::this_coro::executor, 30ms);
        auto winner = co_await (broker.call<int>("sync_late") || timer.async_wait(asio::use_awaitable));
        f.p.release.open();
        co_return winner.index();
      };
      auto [six, index] = co_await (blocked() && abandoning());
      CHECK(six == 6);
      CHECK(index == 1);
      const auto r = co_await broker.call<std::int64_t>("mul", 2, 3);  // FIFO: the abandoned call was dequeued
      CHECK(r == 6);
      CHECK(f.p.late_runs == 0);
    }());
  }

  SECTION("a call that wins the race returns its result") {
    fixture<pool_kind> f;
    patio::memory_broker& broker = *f.broker;
    patio::test::run([&]() -> asio::awaitable<void> {
      asio::steady_timer timer(co_await asio::this_coro::executor, 5s);
      auto winner = co_await (broker.call<std::int64_t>("mul", 2, 3) || timer.async_wait(asio::use_awaitable));
      REQUIRE(winner.index() == 0);
      CHECK(std::get<0>(winner) == 6);
    }());
  }
}

TEST_CASE("join() on an open memory broker can be cancelled", "[memory_broker]") {
  fixture<pool_kind> f;
  patio::memory_broker& broker = *f.broker;
  patio::test::run([&]() -> asio::awaitable<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 30ms);
    auto winner = co_await (broker.join() || timer.async_wait(asio::use_awaitable));
    CHECK(winner.index() == 1);
    CHECK_FALSE(broker.closed());
    const auto r = co_await broker.call<std::int64_t>("mul", 2, 3);
    CHECK(r == 6);
    // A later join still completes when the broker closes.
    auto closer = [&]() -> asio::awaitable<void> { co_await broker.close(); };
    co_await (broker.join() && closer());
    CHECK(broker.closed());
  }());
}
