// SPDX-License-Identifier: MIT
// Faults under load: connections cut at random moments while many calls run,
// and a server process killed with SIGKILL mid-call, then restarted on the
// same port. Every call must end in bounded time with its own answer, its own
// error or connection_error (never another call's answer, never a hang), and
// the clients must come back by themselves (docs/reliability.md).
#include "tcp_fixtures.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace patio::test::tcp;
using clock_type = std::chrono::steady_clock;

/// The answer to caller `c`'s call `i`: unique per call, so a crossed or
/// duplicated reply cannot pass for the right one.
std::int64_t answer(std::int64_t c, std::int64_t i) { return c * 1'000'000'000 + i * 7 + 3; }

/// The message of the error caller `c`'s call `i` raises: unique per call too.
std::string failure(std::int64_t c, std::int64_t i) { return fmt::format("failed {}:{}", c, i); }

/// PATIO_FAULT_SEED, or a fresh seed. Reported, so that a failing run's
/// choices can be replayed (its timing cannot).
std::uint32_t fault_seed() {
  if (const char* v = std::getenv("PATIO_FAULT_SEED")) return static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
  return std::random_device{}();
}

/// Outcomes no call may have, kept for the report: the first few in full.
struct wrong_outcomes {
  std::int64_t count = 0;
  std::vector<std::string> examples;

  void add(std::string what) {
    ++count;
    if (examples.size() < 20) examples.push_back(std::move(what));
  }
  void report() const {
    for (const auto& what : examples) UNSCOPED_INFO(what);
  }
};

// ---- a proxy that cuts connections ------------------------------------------------

/// A client's connection through the proxy, and its twin to the server.
struct proxy_link {
  tcp::socket downstream;  ///< from the client
  tcp::socket upstream;    ///< to the server
  bool cut = false;

  explicit proxy_link(const asio::any_io_executor& ex) : downstream(ex), upstream(ex) {}
};

/// A TCP proxy between the clients and the server that can cut any
/// connection it carries, with a FIN or a reset. It forwards in chunks of
/// random size, so frames cross in pieces and a cut can fall inside one.
struct chaos_proxy {
  tcp::acceptor acceptor;
  tcp::endpoint server;
  std::mt19937 random;
  std::vector<std::shared_ptr<proxy_link>> links;  ///< carried now
  std::size_t accepted = 0;
  std::size_t cuts = 0;
  bool closed = false;

  chaos_proxy(const asio::any_io_executor& ex, std::uint16_t server_port, std::uint32_t seed)
      : acceptor(ex, {asio::ip::make_address("127.0.0.1"), 0}),
        server(asio::ip::make_address("127.0.0.1"), server_port),
        random(seed) {}

  std::uint16_t port() const { return acceptor.local_endpoint().port(); }

  /// Closes both sides of `link`: with a reset (no linger) or an orderly FIN.
  void cut(std::shared_ptr<proxy_link> link, bool reset) {
    if (link->cut) return;
    link->cut = true;
    std::erase(links, link);
    std::error_code ignored;
    for (auto* s : {&link->downstream, &link->upstream}) {
      if (reset) s->set_option(asio::socket_base::linger(true, 0), ignored);
      s->close(ignored);
    }
  }

  void close() {
    closed = true;
    std::error_code ignored;
    acceptor.close(ignored);
    for (auto& link : std::vector(links)) cut(link, false);
  }
};

/// Forwards one direction of `link` until either side ends, then cuts both,
/// so that an end on one side reaches the other.
asio::awaitable<void> forward(std::shared_ptr<chaos_proxy> proxy, std::shared_ptr<proxy_link> link, bool to_server) {
  auto& from = to_server ? link->downstream : link->upstream;
  auto& to = to_server ? link->upstream : link->downstream;
  std::array<char, 256> chunk;
  std::uniform_int_distribution<std::size_t> size(1, chunk.size());
  for (;;) {
    std::error_code ec;
    const auto n = co_await from.async_read_some(asio::buffer(chunk.data(), size(proxy->random)),
                                                 asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    co_await asio::async_write(to, asio::buffer(chunk.data(), n), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
  }
  proxy->cut(link, false);
}

asio::awaitable<void> accept_through(std::shared_ptr<chaos_proxy> proxy) {
  const auto ex = co_await asio::this_coro::executor;
  while (!proxy->closed) {
    auto link = std::make_shared<proxy_link>(ex);
    std::error_code ec;
    co_await proxy->acceptor.async_accept(link->downstream, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) continue;  // closed (the loop ends), or a connection reset before accept
    co_await link->upstream.async_connect(proxy->server, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || proxy->closed) {
      proxy->cut(link, false);
      continue;
    }
    link->downstream.set_option(tcp::no_delay(true), ec);
    link->upstream.set_option(tcp::no_delay(true), ec);
    ++proxy->accepted;
    proxy->links.push_back(link);
    asio::co_spawn(ex, forward(proxy, link, true), patio::rethrow);
    asio::co_spawn(ex, forward(proxy, link, false), patio::rethrow);
  }
}

/// Cuts one carried connection, picked at random, every 2 to 30 ms for
/// `length`; then sets `*stop`. (int: patio::gather takes values.)
asio::awaitable<int> cut_at_random(std::shared_ptr<chaos_proxy> proxy, std::chrono::milliseconds length, bool* stop) {
  std::uniform_int_distribution<int> gap(2, 30);
  for (const auto until = clock_type::now() + length; clock_type::now() < until;) {
    co_await pause(std::chrono::milliseconds(gap(proxy->random)));
    if (proxy->links.empty()) continue;
    auto link = proxy->links[std::uniform_int_distribution<std::size_t>(0, proxy->links.size() - 1)(proxy->random)];
    proxy->cut(std::move(link), proxy->random() % 2 == 0);
    ++proxy->cuts;
  }
  *stop = true;
  co_return 0;
}

// ---- the served side --------------------------------------------------------------

/// What the server saw, from its own thread.
struct served {
  std::mutex mutex;
  std::map<std::pair<std::int64_t, std::int64_t>, int> echo_runs;  ///< by (caller, call)
  std::atomic<int> slow_running{0};
};

asio::awaitable<std::int64_t> slow_task(served* s, std::int64_t c, std::int64_t i, int ms) {
  struct running {
    std::atomic<int>& n;
    explicit running(std::atomic<int>& count) : n(count) { ++n; }
    ~running() { --n; }
  } guard(s->slow_running);  // also when the task is cancelled
  co_await pause(std::chrono::milliseconds(ms));
  co_return answer(c, i);
}

/// The server broker on its own thread and io_context, as deployed.
struct threaded_server {
  asio::io_context io;
  patio::tcp_server_broker broker;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;

  explicit threaded_server(patio::executor& executor)
      : broker(io.get_executor(), executor), work(asio::make_work_guard(io)) {}
  threaded_server(const threaded_server&) = delete;
  threaded_server& operator=(const threaded_server&) = delete;
  ~threaded_server() { stop(); }

  std::uint16_t start() {
    const auto port = broker.listen("127.0.0.1", 0);
    thread = std::thread([this] { io.run(); });
    return port;
  }

  void stop() {
    if (!thread.joinable()) return;
    asio::co_spawn(io, broker.close(), asio::detached);
    work.reset();
    thread.join();
  }
};

// ---- the callers ------------------------------------------------------------------

constexpr auto call_timeout = 5s;  // no call may get near it: reaching it is a hang

enum class kind { echo, fail, slow, expire };

/// Call `i` is an echo (half), a task error, a slow task (1 to 40 ms), or
/// one meant to time out (one in ten: a 10 s task with a 30 ms timeout).
kind kind_of(std::int64_t i) {
  switch (i % 10) {
    case 5:
    case 6: return kind::fail;
    case 7:
    case 8: return kind::slow;
    case 9: return kind::expire;
    default: return kind::echo;
  }
}

struct chaos_tally {
  bool stop = false;
  std::int64_t calls = 0;
  std::int64_t results = 0;      ///< its own result
  std::int64_t task_errors = 0;  ///< its own remote_error
  std::int64_t expired = 0;      ///< a call meant to time out did
  std::int64_t connection_errors = 0;
  clock_type::duration longest{};                             ///< the longest call
  std::vector<std::pair<std::int64_t, std::int64_t>> echoed;  ///< (caller, call) of echoes answered
  wrong_outcomes wrong;
};

/// Caller `c`'s call `i`, of the kind `i` picks; records its outcome in `t`.
/// connection_error is an expected outcome only while `may_drop`.
asio::awaitable<void> one_call(patio::tcp_client_broker* b, std::int64_t c, std::int64_t i, chaos_tally* t,
                               bool may_drop) {
  const auto k = kind_of(i);
  const auto started = clock_type::now();
  std::string what;  // set when the outcome is wrong
  try {
    switch (k) {
      case kind::echo: {
        const auto r = co_await b->call<std::int64_t>({.timeout = call_timeout}, "echo", c, i);
        if (r == answer(c, i)) {
          ++t->results;
          t->echoed.emplace_back(c, i);
        } else {
          what = fmt::format("echo returned {}", r);
        }
        break;
      }
      case kind::slow: {
        const auto r = co_await b->call<std::int64_t>({.timeout = call_timeout}, "slow", c, i, 1 + i % 40);
        if (r == answer(c, i))
          ++t->results;
        else
          what = fmt::format("slow returned {}", r);
        break;
      }
      case kind::fail:
        co_await b->call<std::int64_t>({.timeout = call_timeout}, "fail", c, i);
        what = "fail returned";
        break;
      case kind::expire:
        co_await b->call<std::int64_t>({.timeout = 30ms}, "slow", c, i, 10'000);
        what = "a 10 s task answered a 30 ms call";
        break;
    }
  } catch (const patio::remote_error& e) {
    if (k == kind::fail && e.what() == failure(c, i))
      ++t->task_errors;
    else
      what = fmt::format("remote_error {}: {}", e.type_name(), e.what());
  } catch (const patio::connection_error& e) {
    if (may_drop)
      ++t->connection_errors;
    else
      what = fmt::format("connection_error after the chaos: {}", e.what());
  } catch (const patio::error& e) {
    // A call meant to expire may also find no route within its 30 ms.
    const bool expected =
        k == kind::expire && (e.value() == patio::errc::timeout || (may_drop && e.value() == patio::errc::no_route));
    if (expected)
      ++t->expired;
    else
      what = fmt::format("{}: {}", e.code().message(), e.what());
  } catch (const std::exception& e) {
    what = e.what();
  }
  ++t->calls;
  t->longest = std::max(t->longest, clock_type::now() - started);
  if (!what.empty()) t->wrong.add(fmt::format("call {}:{}: {}", c, i, what));
}

/// One of caller `c`'s lanes: calls `first`, `first + step`, ... one after
/// another until `t->stop`.
asio::awaitable<int> lane(patio::tcp_client_broker* b, std::int64_t c, std::int64_t first, std::int64_t step,
                          chaos_tally* t) {
  for (std::int64_t i = first; !t->stop; i += step) co_await one_call(b, c, i, t, true);
  co_return 0;
}

/// Caller `c`'s echo, task error and slow task, once the chaos is over.
asio::awaitable<int> call_each_kind(patio::tcp_client_broker* b, std::int64_t c, chaos_tally* t) {
  for (std::int64_t i : {1'000'000'000, 1'000'000'005, 1'000'000'007}) co_await one_call(b, c, i, t, false);
  co_return 0;
}

}  // namespace

TEST_CASE("tcp faults: connections cut at random mid-call end each call with its own outcome or connection_error",
          "[tcp][faults]") {
  constexpr int clients = 8;
  constexpr int lanes = 8;  // calls in flight per client
  constexpr auto chaos_length = 2s;
  const auto seed = fault_seed();
  INFO("PATIO_FAULT_SEED=" << seed);

  served seen;
  patio::registry server_rpc;
  server_rpc.add("echo", [&seen](std::int64_t c, std::int64_t i) {
    const std::lock_guard lock(seen.mutex);
    ++seen.echo_runs[{c, i}];
    return answer(c, i);
  });
  server_rpc.add("fail",
                 [](std::int64_t c, std::int64_t i) -> std::int64_t { throw std::runtime_error(failure(c, i)); });
  // Not a coroutine itself: it returns one that owns its arguments.
  server_rpc.add("slow", [s = &seen](std::int64_t c, std::int64_t i, int ms) { return slow_task(s, c, i, ms); });
  patio::async_executor server_executor{server_rpc, {.max_workers = 1024}};
  threaded_server server{server_executor};
  const auto server_port = server.start();

  asio::io_context io;
  auto proxy = std::make_shared<chaos_proxy>(io.get_executor(), server_port, seed);
  asio::co_spawn(io, accept_through(proxy), patio::rethrow);
  patio::registry client_rpc;
  patio::null_executor client_executor{client_rpc};
  std::vector<std::unique_ptr<patio::tcp_client_broker>> brokers;
  for (int c = 0; c < clients; ++c) {
    brokers.push_back(std::make_unique<patio::tcp_client_broker>(io.get_executor(), client_executor, plain_options()));
    brokers.back()->connect("127.0.0.1", proxy->port());
  }
  auto all_connected = [&] {
    return std::all_of(brokers.begin(), brokers.end(), [](auto& b) { return b->connections() == 1; });
  };

  chaos_tally during, after;
  const auto start = clock_type::now();
  auto test = [&]() -> asio::awaitable<void> {
    const auto connected = co_await eventually(all_connected);
    REQUIRE(connected);

    // Every lane calls until the chaos ends, and finishes its call in hand.
    std::vector<asio::awaitable<int>> work;
    for (int c = 0; c < clients; ++c)
      for (int l = 0; l < lanes; ++l) work.push_back(lane(brokers[c].get(), c, l, lanes, &during));
    work.push_back(cut_at_random(proxy, chaos_length, &during.stop));
    co_await patio::gather(std::move(work));

    // Settled: every client on a connection the proxy carries (so none on
    // one that was cut), and authenticated through it.
    const auto settled = co_await eventually(
        [&] { return proxy->links.size() == static_cast<std::size_t>(clients) && all_connected(); }, 5s);
    REQUIRE(settled);
    std::vector<asio::awaitable<int>> again;
    for (int c = 0; c < clients; ++c) again.push_back(call_each_kind(brokers[c].get(), c, &after));
    co_await patio::gather(std::move(again));

    // No task runs on for a caller that is gone: a cut connection cancels
    // its tasks; an expired call's task is stopped by CANCEL, or by the
    // deadline its REQUEST carried.
    const auto tasks_ended = co_await eventually([&] { return seen.slow_running == 0; }, 5s);
    CHECK(tasks_ended);
    for (auto& b : brokers) co_await b->close();
    proxy->close();
  };
  patio::test::run(io, test(), 60s);
  const std::chrono::duration<double> took = clock_type::now() - start;
  server.stop();

  WARN(fmt::format(
      "seed {}, {:.1f} s: the proxy cut {} of the {} connections it carried; {} calls in {} lanes: {} results, "
      "{} task errors, {} timed out as meant, {} connection_error; longest call {} ms; then all {} clients "
      "answered {} calls",
      seed, took.count(), proxy->cuts, proxy->accepted, during.calls, clients * lanes, during.results,
      during.task_errors, during.expired, during.connection_errors,
      std::chrono::duration_cast<std::chrono::milliseconds>(during.longest).count(), clients,
      after.results + after.task_errors));
  during.wrong.report();
  after.wrong.report();
  CHECK(during.wrong.count == 0);
  CHECK(after.wrong.count == 0);
  CHECK(during.results + during.task_errors + during.expired + during.connection_errors == during.calls);
  // The chaos did something, and calls got through it.
  CHECK(proxy->cuts >= 20);
  CHECK(during.connection_errors > 0);
  CHECK(during.results > 0);
  CHECK(proxy->accepted > static_cast<std::size_t>(clients));  // the clients reconnected by themselves
  // After it, every client answered each kind.
  CHECK(after.results == 2 * clients);
  CHECK(after.task_errors == clients);

  // At most once: a REQUEST is never sent twice, so no echo ran twice, and
  // each answered echo ran exactly once.
  const std::lock_guard lock(seen.mutex);
  const auto twice = std::count_if(seen.echo_runs.begin(), seen.echo_runs.end(), [](auto& e) { return e.second > 1; });
  CHECK(twice == 0);
  std::int64_t answered_not_run = 0;
  for (const auto* t : {&during, &after})
    for (const auto& key : t->echoed) answered_not_run += seen.echo_runs.contains(key) ? 0 : 1;
  CHECK(answered_not_run == 0);
}

// ---- a server process killed under load -------------------------------------------

namespace {

constexpr auto loop_timeout = 10s;  // what a call in a loop would wait at most
constexpr auto fail_fast = 2s;      // how soon after the kill its calls must fail

struct kill_run {
  bool stop = false;
  std::optional<clock_type::time_point> killed_at;
  std::optional<clock_type::time_point> restarted_at;  ///< the new server listens
  std::int64_t answered = 0;                           ///< calls that started before the restart
  std::vector<std::int64_t> back;                      ///< per client: calls answered by the new server
  std::int64_t dropped = 0;                            ///< connection_error, in the loops
  std::int64_t long_dropped = 0;                       ///< connection_error, of the long calls
  clock_type::duration slowest_failure{};              ///< the longest from the kill to a connection_error
  wrong_outcomes wrong;

  void failed_fast(const char* what) {
    if (!killed_at) {
      wrong.add(fmt::format("{}: connection_error before the kill", what));
      return;
    }
    slowest_failure = std::max(slowest_failure, clock_type::now() - *killed_at);
  }
};

/// Caller `c`'s lane: multiplies, call after call, until `r->stop`.
asio::awaitable<int> call_in_a_loop(patio::tcp_client_broker* b, std::int64_t c, std::int64_t lane, kill_run* r) {
  for (std::int64_t i = 0; !r->stop; ++i) {
    const std::int64_t n = c * 1'000'000 + i * 10 + lane;  // unique per call
    const bool after_restart = r->restarted_at.has_value();
    try {
      const auto product = co_await b->call<std::int64_t>({.timeout = loop_timeout}, "mul", n, 7);
      if (product != n * 7)
        r->wrong.add(fmt::format("mul({}, 7) returned {}", n, product));
      else if (after_restart)
        ++r->back[c];
      else
        ++r->answered;
    } catch (const patio::connection_error&) {
      // Only the killed server's connections may drop; the client had left
      // them before the restart (its long call failed).
      if (after_restart) r->wrong.add("connection_error after the restart");
      ++r->dropped;
      r->failed_fast("a call in a loop");
    } catch (const std::exception& e) {
      r->wrong.add(fmt::format("mul({}, 7): {}", n, e.what()));
    }
  }
  co_return 0;
}

/// A call in flight on the server when it is killed.
asio::awaitable<int> long_call(patio::tcp_client_broker* b, kill_run* r) {
  try {
    co_await b->call<std::string>({.timeout = loop_timeout}, "announced_wait", 60'000);
    r->wrong.add("announced_wait answered");
  } catch (const patio::connection_error&) {
    ++r->long_dropped;
    r->failed_fast("a long call");
  } catch (const std::exception& e) {
    r->wrong.add(fmt::format("announced_wait: {}", e.what()));
  }
  co_return 0;
}

/// Kills the server with SIGKILL once it runs `count` long calls and the
/// loops have had some answers.
asio::awaitable<int> kill_when_running(asio::posix::stream_descriptor* out, std::string* buffer, pid_t pid, int count,
                                       kill_run* r) {
  for (int n = 0; n < count; ++n) {
    const auto line = co_await read_line(*out, *buffer);
    if (line != "running") throw std::runtime_error("the server said " + line);
  }
  co_await eventually([r] { return r->answered >= 100; });
  r->killed_at = clock_type::now();
  ::kill(pid, SIGKILL);
  co_return 0;
}

struct stop_on_exit {
  bool& stop;
  ~stop_on_exit() { stop = true; }
};

}  // namespace

TEST_CASE(
    "tcp faults: a server killed with SIGKILL under load fails calls in flight at once and every client "
    "recovers when it restarts on the same port",
    "[tcp][faults][process]") {
  constexpr int clients = 16;
  constexpr int lanes = 2;  // calls in a loop per client, beside its long call
  child_process first, restarted;
  spawn_tcp_server(first);
  asio::io_context io;
  asio::posix::stream_descriptor first_out(io, std::exchange(first.out, -1));
  patio::registry rpc;
  patio::null_executor executor{rpc};
  std::vector<std::unique_ptr<patio::tcp_client_broker>> brokers;
  for (int c = 0; c < clients; ++c)
    brokers.push_back(std::make_unique<patio::tcp_client_broker>(io.get_executor(), executor, plain_options()));
  auto all_connected = [&] {
    return std::all_of(brokers.begin(), brokers.end(), [](auto& b) { return b->connections() == 1; });
  };

  kill_run run;
  run.back.assign(clients, 0);
  std::uint16_t port = 0;
  clock_type::duration recovery{};

  // Kills the server while every client has a call running on it, waits for
  // those calls to fail, restarts it on the same port, and waits until every
  // client is answered by the new one.
  auto scenario = [&]() -> asio::awaitable<int> {
    const stop_on_exit stop{run.stop};
    std::string buffer;
    std::vector<asio::awaitable<int>> in_flight;
    for (auto& b : brokers) in_flight.push_back(long_call(b.get(), &run));
    in_flight.push_back(kill_when_running(&first_out, &buffer, first.pid, clients, &run));
    co_await patio::gather(std::move(in_flight));  // every long call has failed

    // Down a moment: the clients' reconnects are refused meanwhile.
    co_await pause(200ms);
    spawn_tcp_server(restarted, port);
    asio::posix::stream_descriptor out(io, std::exchange(restarted.out, -1));
    std::string restarted_buffer;
    const auto ready = co_await read_line(out, restarted_buffer);
    REQUIRE(ready == fmt::format("ready {}", port));
    run.restarted_at = clock_type::now();
    const auto recovered = co_await eventually(
        [&] { return all_connected() && std::all_of(run.back.begin(), run.back.end(), [](auto n) { return n >= 5; }); },
        5s);
    recovery = clock_type::now() - *run.restarted_at;
    CHECK(recovered);
    co_return 0;
  };

  auto test = [&]() -> asio::awaitable<void> {
    std::string buffer;
    const auto ready = co_await read_line(first_out, buffer);
    unsigned bound = 0;
    REQUIRE(std::sscanf(ready.c_str(), "ready %u", &bound) == 1);
    port = static_cast<std::uint16_t>(bound);
    for (auto& b : brokers) b->connect("127.0.0.1", port);
    const auto connected = co_await eventually(all_connected);
    REQUIRE(connected);

    std::vector<asio::awaitable<int>> work;
    for (int c = 0; c < clients; ++c)
      for (int l = 0; l < lanes; ++l) work.push_back(call_in_a_loop(brokers[c].get(), c, l, &run));
    work.push_back(scenario());
    co_await patio::gather(std::move(work));
    for (auto& b : brokers) co_await b->close();
  };
  patio::test::run(io, test(), 60s);

  auto ms = [](clock_type::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::int64_t back = 0;
  for (auto n : run.back) back += n;
  WARN(
      fmt::format("{} clients: {} calls answered before the restart, {} failed with connection_error ({} long, "
                  "{} in loops), the last {} ms after the kill; every client answered by the restarted server "
                  "within {} ms ({} calls)",
                  clients, run.answered, run.long_dropped + run.dropped, run.long_dropped, run.dropped,
                  ms(run.slowest_failure), ms(recovery), back));
  run.wrong.report();
  CHECK(run.wrong.count == 0);
  CHECK(run.long_dropped == clients);      // every call on the killed server failed...
  CHECK(run.slowest_failure < fail_fast);  // ...at once, not at its 10 s timeout
  CHECK(recovery < 5s);                    // and every client came back by itself
}
