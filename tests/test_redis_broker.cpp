// SPDX-License-Identifier: MIT
// The Redis Streams broker against a real redis-server (tests/redis_fixtures.hpp).
#include "redis_fixtures.hpp"
#include "support.hpp"

#include <patio/detail/redis_protocol.hpp>
#include <patio/gather.hpp>
#include <patio/redis_broker.hpp>

#include <asio/ip/tcp.hpp>
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
      rpc.add("slow_count", [this](int ms) -> asio::awaitable<int> {
        const int n = ++ran;
        co_await pause(std::chrono::milliseconds(ms));
        co_return n;
      });
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

TEST_CASE("redis: after close() nothing of the broker is left on the io_context and io.run() returns at once",
          "[redis]") {
  server redis;
  asio::io_context io;
  // The claim loop wakes every visibility_timeout / 3 (10 s): close() must
  // not leave it, or the heartbeat, sleeping until then.
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  bool done = false;
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    const auto product = co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", 6, 7);
    CHECK(product == 42);
    co_await caller.broker->close();
    co_await worker.broker->close();
    done = true;
  };
  asio::co_spawn(io, test(), patio::rethrow);
  const auto start = std::chrono::steady_clock::now();
  io.run_for(8s);
  CHECK(done);
  CHECK(io.stopped());  // ran out of work, not out of time
  CHECK(std::chrono::steady_clock::now() - start < 4s);
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

namespace {
std::string recovered() { return "recovered"; }

asio::awaitable<void> call_stall(patio::redis_broker& broker, std::string& result, bool& done) {
  result = co_await broker.call<std::string>({.timeout = 15s}, "stall");
  done = true;
}
}  // namespace

TEST_CASE("redis: a worker killed with SIGKILL mid-task: another worker claims the entry and the call completes",
          "[redis][faults]") {
  server redis;
  patio::test::redis::worker_process doomed(redis.port());
  doomed.wait_for("ready");
  asio::io_context io;
  node caller(io, redis.options(), "caller", false);
  patio::registry rescue_rpc;
  rescue_rpc.add("stall", recovered);
  patio::async_executor rescue_executor{rescue_rpc, 4};
  auto rescue_options = redis.options();
  rescue_options.visibility_timeout = 300ms;
  patio::redis_broker rescuer{io.get_executor(), rescue_executor, rescue_options};
  auto test = [&]() -> asio::awaitable<void> {
    co_await caller.broker->setup();
    std::string result;
    bool done = false;
    asio::co_spawn(io, call_stall(*caller.broker, result, done), asio::detached);
    // The child prints "running" from inside the task: then it dies.
    CHECK(co_await eventually([&] { return doomed.saw("running"); }));
    doomed.kill();
    const auto killed = std::chrono::steady_clock::now();
    co_await rescuer.setup();
    CHECK(co_await eventually([&] { return done; }));
    CHECK(result == "recovered");
    CHECK(std::chrono::steady_clock::now() - killed < 5s);
    co_await caller.broker->close();
    co_await rescuer.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: a running task renews its claim, so a long task is not run twice", "[redis]") {
  server redis;
  asio::io_context io;
  auto options = redis.options();
  options.visibility_timeout = 150ms;
  node a(io, options, "a"), b(io, options, "b");
  node caller(io, redis.options(), "caller", false);
  auto test = [&]() -> asio::awaitable<void> {
    co_await a.broker->setup();
    co_await b.broker->setup();
    co_await caller.broker->setup();
    auto n = co_await caller.broker->call<int>({.timeout = 10s}, "slow_count", 800);
    CHECK(n == 1);
    CHECK(a.ran + b.ran == 1);
    co_await caller.broker->close();
    co_await a.broker->close();
    co_await b.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: a call that expired before a worker took it is never started", "[redis]") {
  server redis;
  client raw(redis.port());
  asio::io_context io;
  auto options = redis.options();
  options.wait_for_route = true;
  node caller(io, options, "caller", false);
  node worker(io, redis.options(), "worker");
  auto test = [&]() -> asio::awaitable<void> {
    co_await caller.broker->setup();
    try {
      co_await caller.broker->call<int>({.timeout = 200ms}, "count");
      FAIL("no exception");
    } catch (const patio::timeout_error&) {
    }
    // The caller gave up: it deleted its entry. Put one back as an expired
    // call looks to a worker that comes late: its deadline has passed.
    patio::detail::redis::keys keys("test");
    // ["who", [], {}, 0.1] in an entry made at 1 ms past the epoch.
    const std::string request("\x94\xa3who\x90\x80\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a", 16);
    raw.command({"XADD", keys.calls("who"), "1-1", "c", request, "r", keys.reply(caller.broker->id()), "i", "777"});
    co_await worker.broker->setup();
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", keys.calls("who")}) == 0; }));
    CHECK(worker.ran == 0);
    // A call in time runs.
    auto n = co_await caller.broker->call<int>({.timeout = 5s}, "count");
    CHECK(n == 1);
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

namespace {
asio::awaitable<void> call_slow_count(patio::redis_broker& broker, int ms, int& ok, int& failed) {
  try {
    co_await broker.call<int>({.timeout = 15s}, "slow_count", ms);
    ++ok;
  } catch (const std::exception& e) {
    UNSCOPED_INFO("call failed: " << e.what());
    ++failed;
  }
}
}  // namespace

TEST_CASE("redis: calls in flight complete across a Redis restart, and the brokers reconnect by themselves",
          "[redis][faults]") {
  server redis;
  asio::io_context io;
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    constexpr int calls = 20;
    int ok = 0, failed = 0;
    for (int i = 0; i < calls; ++i)
      asio::co_spawn(io, call_slow_count(*caller.broker, 300, ok, failed), asio::detached);
    CHECK(co_await eventually([&] { return worker.ran == calls; }));
    redis.kill();  // no persistence: Redis forgets every stream, group and entry
    CHECK(co_await eventually([&] { return !caller.broker->connected() && !worker.broker->connected(); }));
    redis.start();
    CHECK(co_await eventually([&] { return ok + failed == calls; }, 15s));
    CHECK(ok == calls);
    CHECK(caller.broker->connected());
    auto after = co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", 6, 7);
    CHECK(after == 42);
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test(), 40s);
}

TEST_CASE("redis: malformed entries go to the dead-letter stream and the worker goes on", "[redis][faults]") {
  server redis;
  client raw(redis.port());
  asio::io_context io;
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  patio::detail::redis::keys keys("test");
  const auto stream = keys.calls("mul");
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    const auto reply_to = keys.reply(caller.broker->id());
    raw.command({"XADD", stream, "*", "foo", "bar"});                                     // not ours
    raw.command({"XADD", stream, "*", "c", "\xc1garbage", "r", reply_to, "i", "99999"});  // undecodable
    raw.command({"XADD", stream, "*", "c", "\x90", "r", keys.calls("mul"), "i", "2"});    // replies into a calls stream
    raw.command({"XADD", stream, "*", "c", "\x90", "r", reply_to, "i", "not a number"});  // bad call number
    auto product = co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", 3, 4);
    CHECK(product == 12);
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", keys.dead_letter()}) == 4; }));
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", stream}) == 0; }));
    auto dead = raw.command({"XRANGE", keys.dead_letter(), "-", "+"});
    REQUIRE(dead->type == REDIS_REPLY_ARRAY);
    for (std::size_t i = 0; i < dead->elements; ++i) {
      const auto* fields = dead->element[i]->element[1];
      REQUIRE(fields->elements >= 6);
      CHECK(std::string(fields->element[0]->str) == "stream");
      CHECK(std::string(fields->element[1]->str) == stream);
      CHECK(std::string(fields->element[4]->str) == "reason");
    }
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: an entry delivered more than max_deliveries times is dead-lettered and its caller told",
          "[redis][faults]") {
  server redis;
  client raw(redis.port());
  asio::io_context io;
  auto caller_options = redis.options();
  caller_options.wait_for_route = true;
  node caller(io, caller_options, "caller", false);
  auto worker_options = redis.options();
  worker_options.visibility_timeout = 100ms;
  worker_options.max_deliveries = 3;
  node worker(io, worker_options, "worker");
  patio::detail::redis::keys keys("test");
  const auto stream = keys.calls("count");
  auto test = [&]() -> asio::awaitable<void> {
    co_await caller.broker->setup();
    bool failed_right = false;
    std::string message;
    auto call = [](patio::redis_broker& b, bool& flag, std::string& what) -> asio::awaitable<void> {
      try {
        co_await b.call<int>({.timeout = 10s}, "count");
      } catch (const patio::worker_crashed_error& e) {
        flag = true;
        what = e.what();
      }
    };
    asio::co_spawn(io, call(*caller.broker, failed_right, message), asio::detached);
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", stream}) == 1; }));
    // A ghost worker takes it three times and dies each time.
    raw.command({"XGROUP", "CREATE", stream, "workers", "0", "MKSTREAM"});
    auto read = raw.command({"XREADGROUP", "GROUP", "workers", "ghost", "COUNT", "1", "STREAMS", stream, ">"});
    const std::string id = read->element[0]->element[1]->element[0]->element[0]->str;
    raw.command({"XCLAIM", stream, "workers", "ghost", "0", id});
    raw.command({"XCLAIM", stream, "workers", "ghost", "0", id});
    co_await worker.broker->setup();
    CHECK(co_await eventually([&] { return failed_right; }));
    CHECK(message.find("delivered 4 times") != std::string::npos);
    CHECK(worker.ran == 0);
    CHECK(raw.integer({"XLEN", keys.dead_letter()}) == 1);
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: setup reports a wrong password as auth_error and an unreachable Redis as connection_error",
          "[redis]") {
  server redis({"--requirepass", "s3cret"});
  asio::io_context io;
  patio::registry rpc;
  patio::null_executor none{rpc};
  auto wrong = redis.options();
  wrong.password = "wrong";
  auto missing = redis.options();
  missing.password.clear();
  auto right = redis.options();
  right.password = "s3cret";
  auto away = redis.options();
  away.port = 1;  // nothing listens there
  patio::redis_broker b_wrong{io.get_executor(), none, wrong};
  patio::redis_broker b_missing{io.get_executor(), none, missing};
  patio::redis_broker b_right{io.get_executor(), none, right};
  patio::redis_broker b_away{io.get_executor(), none, away};
  auto test = [&]() -> asio::awaitable<void> {
    try {
      co_await b_wrong.setup();
      FAIL("no exception");
    } catch (const patio::auth_error& e) {
      CHECK(std::string(e.what()).find("refused the credentials") != std::string::npos);
    }
    try {
      co_await b_missing.setup();
      FAIL("no exception");
    } catch (const patio::auth_error&) {
    }
    try {
      co_await b_away.setup();
      FAIL("no exception");
    } catch (const patio::connection_error& e) {
      CHECK(std::string(e.what()).find("127.0.0.1:1") != std::string::npos);
    }
    co_await b_right.setup();
    CHECK(b_right.connected());
    co_await b_right.close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: answered calls leave nothing behind and the reply stream expires", "[redis]") {
  server redis;
  client raw(redis.port());
  asio::io_context io;
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  patio::detail::redis::keys keys("test");
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    for (int i = 0; i < 50; ++i) co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", i, 2);
    const auto reply = keys.reply(caller.broker->id());
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", keys.calls("mul")}) == 0; }));
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", reply}) == 0; }));
    const auto ttl = raw.integer({"PTTL", reply});
    CHECK(ttl > 0);
    CHECK(ttl <= 60'000);
    // Every worker's advertisement carries an expiry too.
    CHECK(raw.integer({"ZCARD", keys.route("mul")}) == 1);
    co_await caller.broker->close();
    co_await worker.broker->close();
    CHECK(raw.integer({"ZCARD", keys.route("mul")}) == 0);
  };
  patio::test::run(io, test());
}

namespace {
asio::awaitable<void> call_mul_into(patio::redis_broker& broker, std::int64_t i, std::int64_t& product, int& done) {
  product += co_await broker.call<std::int64_t>({.timeout = 10s}, "mul", i, 2);
  ++done;
}

/// How often Redis ran `command` so far (INFO commandstats), 0 if never.
long long command_calls(client& raw, const std::string& command) {
  const auto info = raw.command({"INFO", "commandstats"});
  const std::string text(info->str, info->len);
  const auto at = text.find("cmdstat_" + command + ":calls=");
  if (at == std::string::npos) return 0;
  return std::stoll(text.substr(at + command.size() + 15));
}
}  // namespace

TEST_CASE("redis: a caller's reply stream deleted behind its back is made again, with an expiry", "[redis]") {
  server redis;
  client raw(redis.port());
  asio::io_context io;
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  patio::detail::redis::keys keys("test");
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    const auto reply = keys.reply(caller.broker->id());
    // Made when the caller connected, before any answer.
    CHECK(raw.integer({"EXISTS", reply}) == 1);
    CHECK(raw.integer({"PTTL", reply}) > 0);
    CHECK(raw.integer({"DEL", reply}) == 1);
    // The worker's XADD NOMKSTREAM adds nothing; it answers again, creating it.
    const auto r = co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", 6, 7);
    CHECK(r == 42);
    const auto ttl = raw.integer({"PTTL", reply});
    CHECK(ttl > 0);
    CHECK(ttl <= 60'000);
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", reply}) == 0; }));
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", keys.calls("mul")}) == 0; }));
    // Nothing stays pending: the entry was acknowledged after the answer.
    CHECK(co_await eventually([&] {
      const auto pending = raw.command({"XPENDING", keys.calls("mul"), "workers"});
      return pending->type == REDIS_REPLY_ARRAY && pending->element[0]->integer == 0;
    }));
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: a burst of calls shares one route check and is acknowledged in batches", "[redis]") {
  server redis;
  client raw(redis.port());
  asio::io_context io;
  node worker(io, redis.options(), "worker");
  node caller(io, redis.options(), "caller", false);
  patio::detail::redis::keys keys("test");
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    constexpr int calls = 200;
    std::int64_t product = 0;
    int done = 0;
    const auto zcounts = command_calls(raw, "zcount");
    for (int i = 0; i < calls; ++i) asio::co_spawn(io, call_mul_into(*caller.broker, i, product, done), asio::detached);
    CHECK(co_await eventually([&] { return done == calls; }));
    CHECK(product == calls * (calls - 1));  // sum of 2 i
    // One ZCOUNT for the burst (two if a heartbeat interval ended meanwhile).
    CHECK(command_calls(raw, "zcount") - zcounts <= 2);
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", keys.calls("mul")}) == 0; }));
    CHECK(co_await eventually([&] { return raw.integer({"XLEN", keys.reply(caller.broker->id())}) == 0; }));
    // Answers and acknowledgements went in batches, and no PEXPIRE per answer.
    CHECK(command_calls(raw, "xack") < calls / 2);
    CHECK(command_calls(raw, "xdel") < calls / 2);
    CHECK(command_calls(raw, "pexpire") < 20);  // the heartbeats'
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis options that cannot work are refused at construction", "[redis]") {
  asio::io_context io;
  patio::registry rpc;
  patio::null_executor none{rpc};
  auto make = [&](auto change) {
    patio::redis_options o;
    change(o);
    patio::redis_broker b{io.get_executor(), none, o};
  };
  CHECK_THROWS_AS(make([](auto& o) { o.max_in_flight = 0; }), std::invalid_argument);
  CHECK_THROWS_AS(make([](auto& o) { o.read_batch = 0; }), std::invalid_argument);
  CHECK_THROWS_AS(make([](auto& o) { o.max_deliveries = 0; }), std::invalid_argument);
  CHECK_THROWS_AS(make([](auto& o) { o.worker_ttl = o.heartbeat_interval; }), std::invalid_argument);
  CHECK_THROWS_AS(make([](auto& o) { o.project = "a{b}"; }), std::invalid_argument);
  CHECK_THROWS_AS(make([](auto& o) { o.project = ""; }), std::invalid_argument);
  CHECK_NOTHROW(make([](auto&) {}));
}

TEST_CASE("redis: an ACL user limited to the project's keys and the documented commands can call and work", "[redis]") {
  server redis;
  client raw(redis.port());
  // The rule docs/redis.md recommends.
  auto set = raw.command({"ACL", "SETUSER", "patio", "reset", "on", ">pw", "~patio:{test}:*", "+@stream", "+zadd",
                          "+zrem", "+zcount", "+zremrangebyscore", "+pexpire", "+time", "+client|setname", "+select"});
  REQUIRE(set->type == REDIS_REPLY_STATUS);
  asio::io_context io;
  auto options = redis.options();
  options.username = "patio";
  options.password = "pw";
  node worker(io, options, "worker");
  node caller(io, options, "caller", false);
  auto outside = redis.options("other");  // keys the user may not touch
  outside.username = "patio";
  outside.password = "pw";
  node stranger(io, outside, "stranger");
  auto test = [&]() -> asio::awaitable<void> {
    co_await worker.broker->setup();
    co_await caller.broker->setup();
    auto product = co_await caller.broker->call<std::int64_t>({.timeout = 5s}, "mul", 6, 7);
    CHECK(product == 42);
    try {
      co_await stranger.broker->setup();
      FAIL("no exception");
    } catch (const patio::connection_error& e) {
      CHECK(std::string(e.what()).find("NOPERM") != std::string::npos);
    }
    co_await caller.broker->close();
    co_await worker.broker->close();
  };
  patio::test::run(io, test());
}

TEST_CASE("redis: setup gives up after connect_timeout on a server that accepts and never answers", "[redis]") {
  asio::io_context io;
  asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket accepted(io);
  silent.async_accept(accepted, [](std::error_code) {});  // accepts, then says nothing
  patio::registry rpc;
  patio::null_executor none{rpc};
  patio::redis_options options;
  options.port = silent.local_endpoint().port();
  options.connect_timeout = 200ms;
  patio::redis_broker broker{io.get_executor(), none, options};
  auto test = [&]() -> asio::awaitable<void> {
    const auto start = std::chrono::steady_clock::now();
    try {
      co_await broker.setup();
      FAIL("no exception");
    } catch (const patio::connection_error& e) {
      CHECK(std::string(e.what()).find("timed out") != std::string::npos);
    }
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 200ms);
    CHECK(took < 2s);
    CHECK_FALSE(broker.connected());
  };
  patio::test::run(io, test());
}
