// SPDX-License-Identifier: MIT
#include "support.hpp"

#include <catch2/catch.hpp>

// What these tests use of Asio directly.
#include "task_fixtures.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
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
  static constexpr bool own_threads = false;
};

struct pool_kind {
  using executor_type = patio::thread_pool_executor;
  static constexpr std::string_view prefix = "sync_";
  static constexpr auto mul_fn = &mul;
  static constexpr auto add_fn = &add;
  static constexpr bool own_threads = true;
};

/// A registry with every task ("mul" is the kind's own: a coroutine for the
/// async executor, a synchronous function for the thread pool) and an
/// executor of the kind.
template <class Kind>
struct fixture {
  explicit fixture(patio::executor_options options = {}) {
    rpc.add("mul", Kind::mul_fn);
    register_tasks(rpc, p);
    executor.emplace(rpc, options);
  }
  ~fixture() {
    p.release.open();  // no pool thread stays blocked: shutdown joins them
    executor.reset();
  }
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;

  /// The kind's version of task `base`: "coro_slow" or "sync_slow".
  [[nodiscard]] static std::string task(std::string_view base) { return std::string(Kind::prefix) + std::string(base); }

  patio::registry rpc;
  probes p;
  std::optional<typename Kind::executor_type> executor;
};

}  // namespace

// ---- results -------------------------------------------------------------------

TEMPLATE_TEST_CASE("an executor runs a submitted task and returns its result", "[executor]", async_kind, pool_kind) {
  fixture<TestType> f;
  patio::executor& ex = *f.executor;

  SECTION("submit<T> returns the result as T") {
    CHECK(patio::test::run(ex.submit<std::int64_t>("mul", 1, 2, 3)) == 6);
    CHECK(patio::test::run(ex.submit<int>("mul", 4, 5)) == 20);  // converted
    CHECK(patio::test::run(ex.submit<int>("mul")) == 1);         // no varargs at all
  }

  SECTION("untyped submit returns a patio::value") {
    const patio::value v = patio::test::run(ex.submit("mul", 1, 2, 3));
    CHECK(v.is_int());
    CHECK(v.as<std::int64_t>() == 6);
    CHECK(v == patio::value(std::int64_t{6}));
    CHECK(v.to_string() == "6");
  }

  SECTION("submit by the function itself is typed by the function") {
    auto r = patio::test::run(ex.submit(TestType::add_fn, 2, 3));
    STATIC_REQUIRE(std::is_same_v<decltype(r), int>);
    CHECK(r == 5);
    // A varargs function: the arguments are spread, as Python's *args.
    auto product = patio::test::run(ex.submit(TestType::mul_fn, 1, 2, 3));
    STATIC_REQUIRE(std::is_same_v<decltype(product), std::int64_t>);
    CHECK(product == 6);
    CHECK(patio::test::run(ex.submit(TestType::mul_fn)) == 1);
  }

  SECTION("100 concurrent submits gathered all return 6") {
    auto results = patio::test::run([&]() -> asio::awaitable<std::vector<std::int64_t>> {
      std::vector<asio::awaitable<std::int64_t>> calls;
      for (int i = 0; i < 100; ++i) calls.push_back(ex.submit<std::int64_t>("mul", 1, 2, 3));
      co_return co_await patio::gather(std::move(calls));
    }());
    REQUIRE(results.size() == 100);
    CHECK(std::all_of(results.begin(), results.end(), [](std::int64_t r) { return r == 6; }));
  }

  SECTION("synchronous and coroutine functions both run") {
    CHECK(patio::test::run(ex.submit<std::int64_t>("sync_mul", 2, 3)) == 6);
    CHECK(patio::test::run(ex.submit<std::int64_t>("coro_mul", 2, 3)) == 6);
    CHECK(patio::test::run(ex.submit<int>("sync_add", 2, 3)) == 5);
    CHECK(patio::test::run(ex.submit<int>("coro_add", 2, 3)) == 5);
  }

  SECTION("a void function returns nothing, and submit<void> works") {
    for (const char* name : {"sync_noop", "coro_noop"}) {
      INFO(name);
      const patio::value v = patio::test::run(ex.submit(name));
      CHECK(v.is_nil());
      patio::test::run(ex.submit<void>(name));
    }
    CHECK(f.p.noop_calls == 4);
  }

  SECTION("setup() is idempotent") {
    ex.setup();
    ex.setup();
    CHECK(patio::test::run(ex.submit<std::int64_t>("mul", 2, 3)) == 6);
  }

  SECTION("the options are the defaults") {
    CHECK(ex.max_workers() == 4);
    CHECK(ex.options().max_queue == 65536);
    CHECK(&ex.registry() == &f.rpc);
  }
}

TEMPLATE_TEST_CASE("the caller resumes on its own thread after a submit", "[executor]", async_kind, pool_kind) {
  fixture<TestType> f;
  patio::executor& ex = *f.executor;
  const auto io_thread = std::this_thread::get_id();  // patio::test::run runs the io_context here

  SECTION("synchronous task") {
    patio::test::run([&]() -> asio::awaitable<void> {
      const int r = co_await ex.submit<int>("sync_where");
      CHECK(r == 1);
      CHECK(std::this_thread::get_id() == io_thread);
    }());
    // The thread pool runs it on one of its threads; the async executor on
    // the caller's.
    if constexpr (TestType::own_threads)
      CHECK(f.p.task_thread.load() != io_thread);
    else
      CHECK(f.p.task_thread.load() == io_thread);
  }

  SECTION("coroutine task: runs on the caller's executor with both executors") {
    patio::test::run([&]() -> asio::awaitable<void> {
      const int r = co_await ex.submit<int>("coro_where");
      CHECK(r == 1);
      CHECK(std::this_thread::get_id() == io_thread);
    }());
    CHECK(f.p.task_thread.load() == io_thread);
  }

  SECTION("many calls, each resumes on the caller's thread") {
    const int wrong = patio::test::run([&]() -> asio::awaitable<int> {
      int mismatches = 0;
      for (int i = 0; i < 20; ++i) {
        const auto r = co_await ex.submit<std::int64_t>("mul", i, 2);
        if (r != 2 * i || std::this_thread::get_id() != io_thread) ++mismatches;
      }
      co_return mismatches;
    }());
    CHECK(wrong == 0);
  }
}

// ---- failures ------------------------------------------------------------------

TEMPLATE_TEST_CASE("an executor reports each failure with its own exception type", "[executor]", async_kind,
                   pool_kind) {
  using F = fixture<TestType>;
  F f;
  patio::executor& ex = *f.executor;

  SECTION("an unknown name: unknown_function_error") {
    auto e = patio::test::run(error_of(ex.submit<int>("nope", 1)));
    CHECK_THROWS_AS(raise(e), patio::unknown_function_error);
    CHECK_THROWS_WITH(raise(e), Catch::Contains("nope"));
    auto err = caught<patio::error>(e);
    REQUIRE(err);
    CHECK(err->code() == patio::errc::unknown_function);
  }

  SECTION("an unregistered function: unknown_function_error") {
    auto e = patio::test::run(error_of(ex.submit(unregistered, 1)));
    CHECK_THROWS_AS(raise(e), patio::unknown_function_error);
  }

  SECTION("too few or too many arguments: bad_arguments_error naming the count") {
    const auto add = F::task("add");
    auto few = patio::test::run(error_of(ex.submit<int>(add, 1)));
    CHECK_THROWS_AS(raise(few), patio::bad_arguments_error);
    CHECK_THROWS_WITH(raise(few), Catch::Contains(add) && Catch::Contains("expected 2 arguments, got 1"));
    auto many = patio::test::run(error_of(ex.submit<int>(add, 1, 2, 3)));
    CHECK_THROWS_AS(raise(many), patio::bad_arguments_error);
    CHECK_THROWS_WITH(raise(many), Catch::Contains("expected 2 arguments, got 3"));
    auto err = caught<patio::error>(few);
    REQUIRE(err);
    CHECK(err->code() == patio::errc::bad_arguments);
  }

  SECTION("an argument of the wrong type: bad_arguments_error naming its position") {
    auto e = patio::test::run(error_of(ex.submit<int>(F::task("add"), 1, "two")));
    CHECK_THROWS_AS(raise(e), patio::bad_arguments_error);
    CHECK_THROWS_WITH(raise(e), Catch::Contains("argument 2") && Catch::Contains("str"));
    auto vararg = patio::test::run(error_of(ex.submit<std::int64_t>("mul", 1, "two", 3)));
    CHECK_THROWS_AS(raise(vararg), patio::bad_arguments_error);
    CHECK_THROWS_WITH(raise(vararg), Catch::Contains("argument 2"));
  }

  SECTION("a result that does not convert: type_mismatch_error") {
    auto e = patio::test::run(error_of(ex.submit<std::string>("mul", 2, 3)));
    CHECK_THROWS_AS(raise(e), patio::type_mismatch_error);
  }

  SECTION("a task that throws std::runtime_error: remote_error with its type and message") {
    for (const char* name : {"sync_boom", "coro_boom"}) {
      INFO(name);
      auto e = patio::test::run(error_of(ex.submit<int>(name)));
      CHECK_THROWS_AS(raise(e), patio::remote_error);
      auto remote = caught<patio::remote_error>(e);
      REQUIRE(remote);
      CHECK(remote->type_name() == "std::runtime_error");
      CHECK(std::string(remote->what()) == "boom");
      CHECK(remote->code() == patio::errc::remote_error);
    }
  }

  SECTION("a task that throws a non-std type: remote_error with that type's name") {
    for (const char* name : {"sync_throw_int", "coro_throw_int"}) {
      INFO(name);
      auto e = patio::test::run(error_of(ex.submit<int>(name)));
      auto remote = caught<patio::remote_error>(e);
      REQUIRE(remote);
      CHECK(remote->type_name() == "int");
    }
  }

  SECTION("the executor keeps working after failures") {
    auto e = patio::test::run(error_of(ex.submit<int>(F::task("boom"))));
    CHECK_THROWS_AS(raise(e), patio::remote_error);
    CHECK(patio::test::run(ex.submit<std::int64_t>("mul", 1, 2, 3)) == 6);
  }
}

TEST_CASE("a null executor refuses every call", "[executor]") {
  patio::registry rpc;
  rpc.add("mul", mul);
  rpc.add("coro_mul", amul);
  rpc.add("add", add);
  patio::null_executor ex{rpc};

  SECTION("by name") {
    for (const char* name : {"mul", "coro_mul"}) {
      INFO(name);
      auto e = patio::test::run(error_of(ex.submit<std::int64_t>(name, 1, 2, 3)));
      CHECK_THROWS_AS(raise(e), patio::executor_refused_error);
      auto err = caught<patio::executor_refused_error>(e);
      REQUIRE(err);
      CHECK(err->code() == patio::errc::executor_refused);
    }
  }

  SECTION("by the function, and untyped") {
    auto by_fn = patio::test::run(error_of(ex.submit(add, 1, 2)));
    CHECK_THROWS_AS(raise(by_fn), patio::executor_refused_error);
    auto untyped = patio::test::run(error_of(ex.submit("mul", 1, 2, 3)));
    CHECK_THROWS_AS(raise(untyped), patio::executor_refused_error);
  }

  SECTION("shutdown and setup are harmless; it still refuses") {
    ex.setup();
    ex.shutdown();
    ex.shutdown();
    auto e = patio::test::run(error_of(ex.submit<std::int64_t>("mul", 2)));
    CHECK_THROWS_AS(raise(e), patio::executor_refused_error);
  }
}

// ---- timeouts ------------------------------------------------------------------

TEMPLATE_TEST_CASE("a call past its timeout fails with timeout_error promptly", "[executor]", async_kind, pool_kind) {
  using F = fixture<TestType>;
  F f;
  patio::executor& ex = *f.executor;

  const auto start = clock_type::now();
  auto e = patio::test::run(error_of(ex.submit<int>(patio::call_options{.timeout = 50ms}, F::task("slow"))));
  const auto elapsed = clock_type::now() - start;

  CHECK_THROWS_AS(raise(e), patio::timeout_error);
  auto err = caught<patio::error>(e);
  REQUIRE(err);
  CHECK(err->code() == patio::errc::timeout);
  CHECK_THROWS_WITH(raise(e), Catch::Contains("slow"));
  CHECK(elapsed >= 50ms);
  CHECK(elapsed < 1s);
  CHECK(f.p.slow_started == 1);
  CHECK_FALSE(f.p.slow_finished);

  // A call with a generous timeout is not affected by it.
  CHECK(patio::test::run(ex.submit<std::int64_t>(patio::call_options{.timeout = 5s}, "mul", 2, 3)) == 6);
}

TEST_CASE("async executor: a timed-out coroutine task is cancelled", "[executor]") {
  fixture<async_kind> f;
  patio::executor& ex = *f.executor;

  const auto start = clock_type::now();
  patio::test::run([&]() -> asio::awaitable<void> {
    auto e = co_await error_of(ex.submit<int>(patio::call_options{.timeout = 50ms}, "coro_slow"));
    CHECK_THROWS_AS(raise(e), patio::timeout_error);
    co_await pause(50ms);  // the task resumes at its next suspension point
    CHECK(f.p.slow_started == 1);
    CHECK(f.p.slow_cancelled);
    CHECK_FALSE(f.p.slow_finished);
  }());
  // patio::test::run also waits for the task: it did not sleep out its 3 s.
  CHECK(clock_type::now() - start < 1s);
}

TEST_CASE("thread pool: a running synchronous task that timed out runs to its end, its result dropped", "[executor]") {
  fixture<pool_kind> f{{.max_workers = 1}};
  patio::executor& ex = *f.executor;

  const auto start = clock_type::now();
  auto e = patio::test::run(error_of(ex.submit<int>(patio::call_options{.timeout = 50ms}, "sync_slow")));
  CHECK(clock_type::now() - start < 1s);
  CHECK_THROWS_AS(raise(e), patio::timeout_error);
  CHECK(f.p.slow_started == 1);
  CHECK_FALSE(f.p.slow_finished);  // still waiting for the gate

  f.p.release.open();
  // The one worker is free again once the slow task returned.
  CHECK(patio::test::run(ex.submit<std::int64_t>("mul", 2, 3)) == 6);
  CHECK(f.p.slow_finished);
}

TEST_CASE("thread pool: a queued task whose call timed out never runs", "[executor]") {
  fixture<pool_kind> f{{.max_workers = 1}};
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto blocked = [&]() -> asio::awaitable<int> { co_return co_await ex.submit<int>("sync_block"); };
    auto timed = [&]() -> asio::awaitable<std::exception_ptr> {
      REQUIRE(f.p.started.wait());  // the only worker is busy: the next call waits in the queue
      auto e = co_await error_of(ex.submit<int>(patio::call_options{.timeout = 50ms}, "sync_late"));
      f.p.release.open();
      co_return e;
    };
    auto [six, e] = co_await (blocked() && timed());
    CHECK(six == 6);
    CHECK_THROWS_AS(raise(e), patio::timeout_error);
    // One worker, FIFO: once a later call ran, the timed-out one was dequeued.
    const auto r = co_await ex.submit<std::int64_t>("mul", 2, 3);
    CHECK(r == 6);
    CHECK(f.p.late_runs == 0);
  }());
}

TEST_CASE("async executor: a queued task whose call timed out never runs", "[executor]") {
  fixture<async_kind> f{{.max_workers = 1}};
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto holding = [&]() -> asio::awaitable<int> { co_return co_await ex.submit<int>("coro_hold"); };
    auto timed = [&]() -> asio::awaitable<std::exception_ptr> {
      co_return co_await error_of(ex.submit<int>(patio::call_options{.timeout = 30ms}, "coro_late"));
    };
    auto [six, e] = co_await (holding() && timed());
    CHECK(six == 6);
    CHECK_THROWS_AS(raise(e), patio::timeout_error);
    const auto r = co_await ex.submit<std::int64_t>("mul", 2, 3);
    CHECK(r == 6);
    CHECK(f.p.late_runs == 0);
  }());
}

TEST_CASE("async executor: a queued call abandoned just as a worker frees up never runs", "[executor]") {
  // Regression: task_limiter::finished() checks abandoned() when it takes the
  // next queued invocation, then posts spawn(); a call abandoned between the
  // two used to start anyway (and, task_cancellable being still false when
  // it was abandoned, was never cancelled). Here the first task's caller,
  // which resumes just before the posted spawn() runs, abandons the queued
  // call.
  fixture<async_kind> f{{.max_workers = 1}};
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto io = co_await asio::this_coro::executor;
    asio::cancellation_signal cancel_queued;
    std::int64_t first_result = 0;
    bool queued_done = false;
    std::exception_ptr first_error, queued_error;
    // The first call takes the only worker; when its caller resumes, the
    // executor has just taken the queued call and posted its start.
    auto first = [&]() -> asio::awaitable<void> {
      first_result = co_await ex.submit<std::int64_t>("coro_mul", 2, 3);
      cancel_queued.emit(asio::cancellation_type::terminal);  // abandon the queued call now
    };
    asio::co_spawn(io, first(), [&](std::exception_ptr e) { first_error = e; });
    asio::co_spawn(io, error_of(ex.submit<int>("coro_late")),
                   asio::bind_cancellation_slot(cancel_queued.slot(), [&](std::exception_ptr, std::exception_ptr e) {
                     queued_done = true;
                     queued_error = e;
                   }));
    co_await pause(50ms);
    CHECK_FALSE(first_error);
    CHECK(first_result == 6);
    REQUIRE(queued_done);
    auto aborted = caught<std::system_error>(queued_error);
    REQUIRE(aborted);
    CHECK(aborted->code() == asio::error::operation_aborted);
    CHECK(f.p.late_runs == 0);
  }());
}

// ---- limits ----------------------------------------------------------------------

TEST_CASE("thread pool: beyond max_workers and max_queue a call is refused with queue_full", "[executor]") {
  fixture<pool_kind> f{{.max_workers = 1, .max_queue = 1}};
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto first = [&]() -> asio::awaitable<int> { co_return co_await ex.submit<int>("sync_block"); };
    auto second = [&]() -> asio::awaitable<int> { co_return co_await ex.submit<int>("sync_add", 2, 3); };
    auto third = [&]() -> asio::awaitable<std::exception_ptr> {
      auto e = co_await error_of(ex.submit<int>("sync_add", 3, 4));
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
    CHECK_THROWS_AS(raise(e), patio::executor_refused_error);
    auto refused = caught<patio::executor_refused_error>(e);
    REQUIRE(refused);
    CHECK(refused->code() == patio::errc::queue_full);
    CHECK_THROWS_WITH(raise(e), Catch::Contains("queue is full"));
  }());
}

TEST_CASE("async executor: beyond max_workers and max_queue a call is refused with queue_full", "[executor]") {
  fixture<async_kind> f{{.max_workers = 1, .max_queue = 1}};
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto holding = [&]() -> asio::awaitable<int> { co_return co_await ex.submit<int>("coro_hold"); };
    auto third = [&]() -> asio::awaitable<std::exception_ptr> {
      co_return co_await error_of(ex.submit<int>("coro_hold"));
    };
    auto [a, b, e] = co_await (holding() && holding() && third());
    CHECK(a == 6);
    CHECK(b == 6);
    auto refused = caught<patio::executor_refused_error>(e);
    REQUIRE(refused);
    CHECK(refused->code() == patio::errc::queue_full);
    // The queue drained: calls are taken again.
    const auto r = co_await ex.submit<std::int64_t>("mul", 2, 3);
    CHECK(r == 6);
  }());
}

TEST_CASE("async executor: never more than max_workers coroutines run at once", "[executor]") {
  fixture<async_kind> f{{.max_workers = 3}};
  patio::executor& ex = *f.executor;

  auto results = patio::test::run([&]() -> asio::awaitable<std::vector<int>> {
    std::vector<asio::awaitable<int>> calls;
    for (int i = 0; i < 30; ++i) calls.push_back(ex.submit<int>("coro_track"));
    co_return co_await patio::gather(std::move(calls));
  }());
  CHECK(results == std::vector<int>(30, 1));
  CHECK(f.p.max_running == 3);  // all 30 start at once: exactly the limit is reached
  CHECK(f.p.running == 0);
}

TEST_CASE("async executor: plain functions among coroutines each free their slot, and every call is answered",
          "[executor]") {
  // A plain function runs without a coroutine of its own: it must still
  // take and give back its place under max_workers, and queued calls must
  // still start when it ends.
  fixture<async_kind> f{{.max_workers = 2, .max_queue = 1000}};
  patio::executor& ex = *f.executor;
  auto sums = patio::test::run([&]() -> asio::awaitable<std::vector<int>> {
    std::vector<asio::awaitable<int>> calls;
    for (int i = 0; i < 300; ++i)
      calls.push_back(i % 3 == 0 ? ex.submit<int>("coro_add", i, 1) : ex.submit<int>("sync_add", i, 1));
    co_return co_await patio::gather(std::move(calls));
  }());
  REQUIRE(sums.size() == 300);
  for (int i = 0; i < 300; ++i) CHECK(sums[static_cast<std::size_t>(i)] == i + 1);
  // A plain function that throws frees its slot too.
  for (int i = 0; i < 5; ++i) {
    auto e = patio::test::run(error_of(ex.submit<int>("sync_boom")));
    CHECK_THROWS_AS(raise(e), patio::remote_error);
  }
  auto results = patio::test::run([&]() -> asio::awaitable<std::vector<int>> {
    std::vector<asio::awaitable<int>> calls;
    for (int i = 0; i < 10; ++i) calls.push_back(ex.submit<int>("coro_track"));
    co_return co_await patio::gather(std::move(calls));
  }());
  CHECK(results == std::vector<int>(10, 1));
  CHECK(f.p.max_running == 2);  // both slots free again, and never more than two
}

TEST_CASE("thread pool: never more than max_workers tasks run at once", "[executor]") {
  fixture<pool_kind> f{{.max_workers = 2}};
  patio::executor& ex = *f.executor;

  auto results = patio::test::run([&]() -> asio::awaitable<std::vector<int>> {
    std::vector<asio::awaitable<int>> calls;
    for (int i = 0; i < 20; ++i) calls.push_back(ex.submit<int>("sync_track"));
    co_return co_await patio::gather(std::move(calls));
  }());
  CHECK(results == std::vector<int>(20, 1));
  CHECK(f.p.max_running >= 1);
  CHECK(f.p.max_running <= 2);
  CHECK(f.p.running == 0);
}

// ---- cancellation ------------------------------------------------------------

TEST_CASE("async executor: a call abandoned by the awaiting coroutine cancels its task", "[executor]") {
  fixture<async_kind> f;
  patio::executor& ex = *f.executor;

  const auto start = clock_type::now();
  patio::test::run([&]() -> asio::awaitable<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 50ms);
    auto winner = co_await (ex.submit<int>("coro_slow") || timer.async_wait(asio::use_awaitable));
    CHECK(winner.index() == 1);  // the timer won
    co_await pause(50ms);
    CHECK(f.p.slow_started == 1);
    CHECK(f.p.slow_cancelled);
    CHECK_FALSE(f.p.slow_finished);
    // The worker slot was given back.
    const auto r = co_await ex.submit<std::int64_t>("mul", 2, 3);
    CHECK(r == 6);
  }());
  CHECK(clock_type::now() - start < 1s);
}

TEST_CASE("thread pool: a queued call abandoned by the awaiting coroutine never runs", "[executor]") {
  fixture<pool_kind> f{{.max_workers = 1}};
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto blocked = [&]() -> asio::awaitable<int> { co_return co_await ex.submit<int>("sync_block"); };
    auto abandoning = [&]() -> asio::awaitable<std::size_t> {
      REQUIRE(f.p.started.wait());
      asio::steady_timer timer(co_await asio::this_coro::executor, 30ms);
      auto winner = co_await (ex.submit<int>("sync_late") || timer.async_wait(asio::use_awaitable));
      f.p.release.open();
      co_return winner.index();
    };
    auto [six, index] = co_await (blocked() && abandoning());
    CHECK(six == 6);
    CHECK(index == 1);
    const auto r = co_await ex.submit<std::int64_t>("mul", 2, 3);
    CHECK(r == 6);
    CHECK(f.p.late_runs == 0);
  }());
}

// ---- shutdown ------------------------------------------------------------------

TEST_CASE("thread pool: shutdown fails queued calls, lets the running one finish, then refuses", "[executor]") {
  fixture<pool_kind> f{{.max_workers = 1}};
  patio::executor& ex = *f.executor;

  patio::test::run([&]() -> asio::awaitable<void> {
    auto outcome = [&](std::string name) -> asio::awaitable<std::exception_ptr> {
      co_return co_await error_of(ex.submit<int>(name));
    };
    auto control = [&]() -> asio::awaitable<std::exception_ptr> {
      REQUIRE(f.p.started.wait());  // the first call runs, the others are queued
      // shutdown() joins the worker, which waits for the gate: open it from
      // another thread a little later so that shutdown has to wait for it.
      const auto start = clock_type::now();
      std::thread opener([&] {
        std::this_thread::sleep_for(50ms);
        f.p.release.open();
      });
      ex.shutdown();
      const auto took = clock_type::now() - start;
      opener.join();
      CHECK(took >= 50ms);  // it waited for the running task
      CHECK(took < 1s);
      ex.shutdown();  // idempotent
      ex.shutdown();
      co_return co_await error_of(ex.submit<int>("sync_add", 1, 2));
    };
    auto first = outcome("sync_block");
    auto queued1 = outcome("sync_late");
    auto queued2 = outcome("sync_late");
    std::vector<asio::awaitable<std::exception_ptr>> all;
    all.push_back(std::move(first));
    all.push_back(std::move(queued1));
    all.push_back(std::move(queued2));
    all.push_back(control());
    auto errors = co_await patio::gather(std::move(all));
    REQUIRE(errors.size() == 4);

    CHECK_FALSE(errors[0]);  // the running task finished and delivered its result
    for (std::size_t i = 1; i < 4; ++i) {
      INFO("call " << i);
      auto refused = caught<patio::executor_refused_error>(errors[i]);
      REQUIRE(refused);
      CHECK(refused->code() == patio::errc::shut_down);
    }
    CHECK(f.p.late_runs == 0);
  }());
}

TEST_CASE("async executor: shutdown cancels the running task, fails queued calls, then refuses", "[executor]") {
  fixture<async_kind> f{{.max_workers = 1}};
  patio::executor& ex = *f.executor;

  const auto start = clock_type::now();
  patio::test::run([&]() -> asio::awaitable<void> {
    auto outcome = [&](std::string name) -> asio::awaitable<std::exception_ptr> {
      co_return co_await error_of(ex.submit<int>(name));
    };
    auto control = [&]() -> asio::awaitable<std::exception_ptr> {
      co_await pause(20ms);  // let the slow task start
      ex.shutdown();
      ex.shutdown();  // idempotent
      co_return co_await error_of(ex.submit<std::int64_t>("mul", 1, 2));
    };
    std::vector<asio::awaitable<std::exception_ptr>> all;
    all.push_back(outcome("coro_slow"));
    all.push_back(outcome("coro_late"));
    all.push_back(outcome("coro_late"));
    all.push_back(control());
    auto errors = co_await patio::gather(std::move(all));
    REQUIRE(errors.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) {
      INFO("call " << i);
      auto refused = caught<patio::executor_refused_error>(errors[i]);
      REQUIRE(refused);
      CHECK(refused->code() == patio::errc::shut_down);
    }
    CHECK(f.p.slow_started == 1);
    CHECK(f.p.slow_cancelled);
    CHECK_FALSE(f.p.slow_finished);
    CHECK(f.p.late_runs == 0);
  }());
  CHECK(clock_type::now() - start < 1s);
}

TEST_CASE("an executor's destructor shuts it down without hanging", "[executor]") {
  patio::registry rpc;
  rpc.add("mul", mul);
  const auto start = clock_type::now();
  SECTION("thread pool") {
    patio::thread_pool_executor ex{rpc, 4};
    CHECK(patio::test::run(ex.submit<std::int64_t>("mul", 2, 3)) == 6);
  }
  SECTION("thread pool that never ran anything") { patio::thread_pool_executor ex{rpc, 8}; }
  SECTION("thread pool shut down twice, then destroyed") {
    patio::thread_pool_executor ex{rpc, 2};
    ex.shutdown();
    ex.shutdown();
    auto e = patio::test::run(error_of(ex.submit<std::int64_t>("mul", 2, 3)));
    auto refused = caught<patio::executor_refused_error>(e);
    REQUIRE(refused);
    CHECK(refused->code() == patio::errc::shut_down);
  }
  SECTION("async") {
    patio::async_executor ex{rpc, 2};
    CHECK(patio::test::run(ex.submit<std::int64_t>("mul", 2, 3)) == 6);
  }
  CHECK(clock_type::now() - start < 1s);
}

// ---- runners: coroutine tasks awaited one after another ------------------------

TEST_CASE("async executor: a caller that calls again and again lets the io_context's other handlers run",
          "[executor]") {
  // Tasks that end at once, started by callers as they resume, run one
  // after another in one runner (which lets others run every few tasks):
  // what else is queued on the io_context must not wait for the loop's end.
  patio::registry rpc;
  // A coroutine that never suspends (amul does).
  rpc.add("mul_now", [](std::int64_t a, std::int64_t b) -> asio::awaitable<std::int64_t> { co_return a* b; });
  patio::async_executor ex(rpc);
  asio::io_context io(1);
  constexpr int calls = 5000;
  int done = 0;
  std::optional<int> done_when_posted;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < calls; ++i) {
          // Once the loop runs, a handler posted now must get a turn soon.
          if (i == 100) asio::post(io, [&] { done_when_posted = done; });
          CHECK(co_await ex.submit<std::int64_t>("mul_now", i, 2) == 2 * i);
          ++done;
        }
      },
      patio::rethrow);
  io.run();
  CHECK(done == calls);
  REQUIRE(done_when_posted);
  CHECK(*done_when_posted < 200);
}

TEST_CASE("async executor: a task's coroutine settings do not carry over to the next task of its runner",
          "[executor]") {
  // The caller resumes as its task ends and starts the next one at once:
  // the same runner awaits it, and must start it afresh.
  patio::registry rpc;
  rpc.add("no_throw_when_cancelled", []() -> asio::awaitable<bool> {
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_return co_await asio::this_coro::throw_if_cancelled();
  });
  rpc.add("throws_when_cancelled",
          []() -> asio::awaitable<bool> { co_return co_await asio::this_coro::throw_if_cancelled(); });
  rpc.add("cancellable_after_reset", []() -> asio::awaitable<bool> {
    // A cancellation state left filtered or cancelled by the task before
    // would show here.
    const auto state = co_await asio::this_coro::cancellation_state;
    co_return state.cancelled() == asio::cancellation_type::none;
  });
  patio::async_executor ex(rpc);
  patio::test::run([&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      CHECK_FALSE(co_await ex.submit<bool>("no_throw_when_cancelled"));
      CHECK(co_await ex.submit<bool>("throws_when_cancelled"));
      CHECK(co_await ex.submit<bool>("cancellable_after_reset"));
    }
  }());
}

TEST_CASE("async executor: tasks behind one that suspends start at once, each cancelled on its own", "[executor]") {
  // Started together (one runner takes them in turn), the first waits: the
  // others must not wait behind it, and cancelling one cancels only it.
  patio::registry rpc;
  int cancelled = 0;
  rpc.add("sleep_ms", [&](int ms) -> asio::awaitable<int> {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    try {
      co_await t.async_wait(asio::use_awaitable);
    } catch (const std::system_error&) {
      ++cancelled;
      throw;
    }
    co_return ms;
  });
  rpc.add("mul", amul);
  patio::async_executor ex(rpc);
  const auto start = clock_type::now();
  patio::test::run([&]() -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    std::vector<asio::awaitable<int>> calls;
    calls.push_back(ex.submit<int>("sleep_ms", 10'000));
    for (int i = 0; i < 5; ++i) calls.push_back(ex.submit<int>("sleep_ms", 20 + i));
    asio::steady_timer give_up(co_await asio::this_coro::executor, 300ms);
    // The long one is abandoned at 300 ms, the short ones end first.
    auto first = std::move(calls.front());
    calls.erase(calls.begin());
    std::optional<int> cancelled_when_shorts_ended;
    auto shorts_then = [&](std::vector<asio::awaitable<int>> c) -> asio::awaitable<std::vector<int>> {
      auto r = co_await patio::gather(std::move(c));
      cancelled_when_shorts_ended = cancelled;
      co_return r;
    };
    auto [outcome, shorts] =
        co_await ((std::move(first) || give_up.async_wait(asio::use_awaitable)) && shorts_then(std::move(calls)));
    CHECK(outcome.index() == 1);
    CHECK(shorts == std::vector<int>{20, 21, 22, 23, 24});
    CHECK(cancelled_when_shorts_ended == 0);  // they did not wait for the long one's end
    co_await pause(20ms);
    CHECK(cancelled == 1);
    CHECK(co_await ex.submit<std::int64_t>("mul", 6, 7) == 42);
  }());
  CHECK(clock_type::now() - start < 2s);
}
