// SPDX-License-Identifier: MIT
// Call metrics: counters per function, the latency histogram, and their
// text and Prometheus renderings.
#include "support.hpp"
#include "task_fixtures.hpp"

#include <patio/io_thread.hpp>
#include <patio/metrics.hpp>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <numeric>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace metric_tasks {

std::int64_t times(std::int64_t a, std::int64_t b) { return a * b; }

int refuse() { throw std::invalid_argument("refused"); }

asio::awaitable<int> sleep_ms(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
  co_return ms;
}

}  // namespace metric_tasks

template <class Executor>
struct metered {
  patio::registry rpc;
  probes p;
  std::optional<Executor> executor;
  std::optional<patio::memory_broker> broker;

  explicit metered(std::size_t workers = 4) {
    rpc.add("times", metric_tasks::times);
    rpc.add("refuse", metric_tasks::refuse);
    rpc.add("sleep_ms", metric_tasks::sleep_ms);
    register_tasks(rpc, p);
    executor.emplace(rpc, workers);
    broker.emplace(*executor);
  }
  ~metered() { p.release.open(); }
};

/// The entry for `name` in `s`; fails the test if there is none.
patio::function_metrics entry(const patio::metrics_snapshot& s, std::string_view name) {
  const auto* f = s.find(name);
  if (!f) throw std::logic_error("no metrics for " + std::string(name));
  return *f;
}

std::uint64_t histogram_count(const patio::function_metrics& f) {
  return std::accumulate(f.latency_counts.begin(), f.latency_counts.end(), std::uint64_t{0});
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

asio::awaitable<void> count_outcomes(patio::memory_broker& broker) {
  for (int i = 0; i < 3; ++i) {
    auto r = co_await broker.call<std::int64_t>("times", i, 2);
    CHECK(r == i * 2);
  }
  for (int i = 0; i < 2; ++i) {
    auto e = co_await error_of(broker.call<int>("refuse"));
    CHECK_THROWS_AS(raise(e), patio::remote_error);
  }
  auto t = co_await error_of(broker.call<int>({.timeout = 20ms}, "sleep_ms", 5000));
  CHECK(caught<patio::timeout_error>(t));
  auto n = co_await error_of(broker.call("missing"));
  CHECK(caught<patio::no_route_error>(n));
  // Not counted: a function that is not registered has no name to count under.
  auto u = co_await error_of(broker.call(&unregistered, 1));
  CHECK_THROWS_AS(raise(u), patio::unknown_function_error);
  // Converting the result fails after the task succeeded: the call failed.
  auto m = co_await error_of(broker.call<std::string>("times", 1, 1));
  CHECK(caught<patio::type_mismatch_error>(m));
}

}  // namespace

TEST_CASE("latency buckets are inclusive upper bounds on a 1-2.5-5 scale", "[metrics]") {
  using std::chrono::nanoseconds;
  CHECK(patio::latency_buckets == 20);
  CHECK(patio::latency_bucket(nanoseconds(0)) == 0);
  CHECK(patio::latency_bucket(10us) == 0);
  CHECK(patio::latency_bucket(10us + nanoseconds(1)) == 1);
  CHECK(patio::latency_bucket(25us) == 1);
  CHECK(patio::latency_bucket(999us) == 6);
  CHECK(patio::latency_bucket(1ms) == 6);
  CHECK(patio::latency_bucket(30ms) == 11);
  CHECK(patio::latency_bucket(10s) == 18);
  CHECK(patio::latency_bucket(10s + nanoseconds(1)) == 19);
  CHECK(patio::latency_bucket(1h) == 19);
}

TEST_CASE("a broker counts each call once as succeeded, failed or timed out", "[metrics]") {
  metered<patio::async_executor> m;
  CHECK(m.broker->metrics().functions.empty());
  patio::test::run(count_outcomes(*m.broker));

  const auto s = m.broker->metrics();
  REQUIRE(s.functions.size() == 4);
  CHECK(s.functions[0].name == "missing");  // sorted by name
  CHECK(s.functions[3].name == "times");

  const auto times = entry(s, "times");
  CHECK(times.calls == 4);
  CHECK(times.succeeded == 3);
  CHECK(times.errors == 1);
  CHECK(times.timeouts == 0);
  CHECK(times.in_flight == 0);

  const auto refuse = entry(s, "refuse");
  CHECK(refuse.calls == 2);
  CHECK(refuse.errors == 2);
  CHECK(refuse.succeeded == 0);

  const auto sleep = entry(s, "sleep_ms");
  CHECK(sleep.calls == 1);
  CHECK(sleep.timeouts == 1);
  CHECK(sleep.errors == 0);
  CHECK(sleep.latency_sum >= 20ms);

  CHECK(entry(s, "missing").errors == 1);

  for (const auto& f : s.functions) {
    CHECK(histogram_count(f) == f.ended());
    CHECK(f.ended() == f.calls);
  }
  const auto total = s.total();
  CHECK(total.name.empty());
  CHECK(total.calls == 8);
  CHECK(total.succeeded == 3);
  CHECK(total.errors == 4);
  CHECK(total.timeouts == 1);
  CHECK(s.find("never") == nullptr);
}

TEST_CASE("a call is in flight from its start until it ends", "[metrics]") {
  patio::io_thread io;
  metered<patio::thread_pool_executor> m;
  auto caller = std::async(std::launch::async, [&] { return io.call<int>(*m.broker, "sync_block"); });
  REQUIRE(m.p.started.wait(1, 10s));

  auto during = entry(m.broker->metrics(), "sync_block");
  CHECK(during.calls == 1);
  CHECK(during.in_flight == 1);
  CHECK(during.ended() == 0);
  CHECK(histogram_count(during) == 0);

  m.p.release.open();
  CHECK(caller.get() == 6);
  auto after = entry(m.broker->metrics(), "sync_block");
  CHECK(after.in_flight == 0);
  CHECK(after.succeeded == 1);
  CHECK(histogram_count(after) == 1);
}

TEST_CASE("a call's latency lands in the bucket that holds it", "[metrics]") {
  patio::io_thread io;
  metered<patio::async_executor> m;
  CHECK(io.call<int>(*m.broker, "sleep_ms", 30) == 30);
  const auto f = entry(m.broker->metrics(), "sleep_ms");
  REQUIRE(histogram_count(f) == 1);
  CHECK(f.latency_sum >= 30ms);
  // The one non-empty bucket is the sum's: at least 30 ms's (a loaded
  // machine may take longer, never shorter).
  const std::size_t bucket = patio::latency_bucket(f.latency_sum);
  CHECK(bucket >= patio::latency_bucket(30ms));
  CHECK(f.latency_counts[bucket] == 1);
}

TEST_CASE("executors and TCP brokers keep metrics too", "[metrics]") {
  SECTION("an executor used directly") {
    metered<patio::thread_pool_executor> m;
    auto r = patio::test::run(m.executor->submit<std::int64_t>("times", 3, 4));
    CHECK(r == 12);
    CHECK(entry(m.executor->metrics(), "times").succeeded == 1);
    // The memory broker's calls are the broker's, not counted twice.
    CHECK(m.broker->metrics().functions.empty());
  }
  SECTION("a TCP client counts its calls; the server's executor serves them uncounted") {
    patio::io_thread io;
    metered<patio::async_executor> served;
    patio::registry caller_rpc;
    patio::null_executor caller{caller_rpc};
    patio::tcp_server_broker server{io.executor(), *served.executor};
    const auto port = server.listen("127.0.0.1", 0);
    patio::tcp_client_broker client{io.executor(), caller};
    client.connect("127.0.0.1", port);
    CHECK(io.call<std::int64_t>(client, {.timeout = 10s}, "times", 6, 7) == 42);
    CHECK_THROWS_AS(io.call<int>(client, {.timeout = 10s}, "refuse"), patio::remote_error);
    CHECK_THROWS_AS(io.call<int>(client, {.timeout = 20ms}, "sleep_ms", 5000), patio::timeout_error);
    const auto s = client.metrics();
    CHECK(entry(s, "times").succeeded == 1);
    CHECK(entry(s, "refuse").errors == 1);
    CHECK(entry(s, "sleep_ms").timeouts == 1);
    CHECK(server.metrics().functions.empty());
    io.run(client.close());
    io.run(server.close());
  }
}

TEST_CASE("metrics are exact with many threads calling and reading at once", "[metrics]") {
  patio::io_thread io{4};
  metered<patio::thread_pool_executor> m{4};
  constexpr int threads = 8;
  constexpr int calls = 100;  // per thread; every tenth is refused
  std::atomic<bool> done{false};
  std::atomic<int> more_ended_than_started{0};
  std::atomic<int> too_many_in_flight{0};
  std::atomic<int> calls_went_down{0};
  auto reader = std::async(std::launch::async, [&] {
    std::uint64_t last_calls = 0;
    while (!done) {
      const auto s = m.broker->metrics();
      for (const auto& f : s.functions) {
        if (f.ended() > f.calls) ++more_ended_than_started;
        if (f.in_flight > threads) ++too_many_in_flight;
        if (f.name == "times") {
          if (f.calls < last_calls) ++calls_went_down;
          last_calls = f.calls;
        }
      }
      (void)patio::to_prometheus(s);
    }
  });
  std::vector<std::thread> callers;
  for (int t = 0; t < threads; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < calls; ++i) {
        try {
          if (i % 10 == 0)
            io.call<int>(*m.broker, "refuse");
          else
            io.call<std::int64_t>(*m.broker, "times", i, 2);
        } catch (const patio::remote_error&) {
        }
      }
    });
  }
  for (auto& c : callers) c.join();
  done = true;
  reader.get();
  CHECK(more_ended_than_started == 0);
  CHECK(too_many_in_flight == 0);
  CHECK(calls_went_down == 0);

  const auto s = m.broker->metrics();
  const auto times = entry(s, "times");
  CHECK(times.calls == threads * calls * 9 / 10);
  CHECK(times.succeeded == times.calls);
  CHECK(times.in_flight == 0);
  CHECK(histogram_count(times) == times.calls);
  const auto refuse = entry(s, "refuse");
  CHECK(refuse.calls == threads * calls / 10);
  CHECK(refuse.errors == refuse.calls);
}

namespace {

/// A hand-made snapshot: exact numbers for exact output.
patio::metrics_snapshot sample() {
  patio::metrics_snapshot s;
  patio::function_metrics add;
  add.name = "add";
  add.calls = 5;
  add.succeeded = 3;
  add.errors = 1;
  add.in_flight = 1;
  add.latency_counts[0] = 2;   // <= 10 us
  add.latency_counts[2] = 1;   // (25 us, 50 us]
  add.latency_counts[19] = 1;  // > 10 s
  add.latency_sum = 12s;
  patio::function_metrics slow;
  slow.name = "slow";
  slow.calls = 2;
  slow.timeouts = 2;
  slow.latency_counts[13] = 2;  // (100 ms, 250 ms]
  slow.latency_sum = 400ms;
  s.functions = {add, slow};
  return s;
}

}  // namespace

TEST_CASE("to_text prints one line per function and a total", "[metrics]") {
  const auto lines = lines_of(patio::to_text(sample()));
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "function      calls  succeeded   errors timeouts in_flight     mean      p50      p99");
  CHECK(lines[1] == "add               5          3        1        0         1       3s   <=10us     >10s");
  CHECK(lines[2] == "slow              2          0        0        2         0    200ms  <=250ms  <=250ms");
  CHECK(lines[3] == "(total)           7          3        1        2         1    2.07s   <=50us     >10s");

  SECTION("an empty snapshot has a header and a zero total") {
    const auto empty = lines_of(patio::to_text({}));
    REQUIRE(empty.size() == 2);
    CHECK(empty[1] == "(total)           0          0        0        0         0        -        -        -");
  }
}

TEST_CASE("to_prometheus writes valid exposition format", "[metrics]") {
  SECTION("families, labels and the cumulative histogram, line by line") {
    auto s = sample();
    s.functions.resize(1);
    s.functions[0].name = "a\"b\\c\nd";  // escaped in the label value
    const auto lines = lines_of(patio::to_prometheus(s, "svc", {{"broker", "orders \"eu\""}}));
    const std::string l = R"({broker="orders \"eu\"",function="a\"b\\c\nd")";
    const std::vector<std::string> expected{
        "# HELP svc_calls_total Calls started, per function.",
        "# TYPE svc_calls_total counter",
        "svc_calls_total" + l + "} 5",
        "# HELP svc_call_errors_total Calls that failed with an error other than a timeout.",
        "# TYPE svc_call_errors_total counter",
        "svc_call_errors_total" + l + "} 1",
        "# HELP svc_call_timeouts_total Calls that failed with patio::timeout_error.",
        "# TYPE svc_call_timeouts_total counter",
        "svc_call_timeouts_total" + l + "} 0",
        "# HELP svc_calls_in_flight Calls started and not yet ended.",
        "# TYPE svc_calls_in_flight gauge",
        "svc_calls_in_flight" + l + "} 1",
        "# HELP svc_call_duration_seconds Call latency from start to end, whatever the outcome.",
        "# TYPE svc_call_duration_seconds histogram",
        "svc_call_duration_seconds_bucket" + l + ",le=\"1e-05\"} 2",
        "svc_call_duration_seconds_bucket" + l + ",le=\"2.5e-05\"} 2",
        "svc_call_duration_seconds_bucket" + l + ",le=\"5e-05\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.0001\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.00025\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.0005\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.001\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.0025\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.005\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.01\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.025\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.05\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.1\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.25\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"0.5\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"1\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"2.5\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"5\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"10\"} 3",
        "svc_call_duration_seconds_bucket" + l + ",le=\"+Inf\"} 4",
        "svc_call_duration_seconds_sum" + l + "} 12",
        "svc_call_duration_seconds_count" + l + "} 4",
    };
    REQUIRE(lines.size() == expected.size());
    for (std::size_t i = 0; i < lines.size(); ++i) {
      INFO("line " << i);
      CHECK(lines[i] == expected[i]);
    }
  }

  SECTION("several snapshots share one HELP and TYPE per family, and every line parses") {
    const auto text = patio::to_prometheus(
        std::vector<patio::labelled_snapshot>{{{{"broker", "a"}}, sample()}, {{{"broker", "b"}}, sample()}});
    const std::regex comment(R"(# (HELP|TYPE) (patio_[a-z_]+) .+)");
    const std::regex sample_line(
        R"re((patio_[a-z_]+)\{broker="[ab]",function="(add|slow)"(,le="([0-9.e+-]+|\+Inf)")?\} ([0-9.e+-]+))re");
    std::map<std::string, int> types;
    int samples = 0;
    std::string family;
    for (const auto& line : lines_of(text)) {
      std::smatch match;
      if (std::regex_match(line, match, comment)) {
        if (match[1] == "TYPE") ++types[match[2]];
        family = match[2];
        continue;
      }
      INFO(line);
      REQUIRE(std::regex_match(line, match, sample_line));
      CHECK(match[1].str().starts_with(family));  // under its own family's TYPE
      ++samples;
    }
    CHECK(types.size() == 5);
    for (const auto& [name, count] : types) CHECK(count == 1);
    // Per snapshot and function: 4 plain samples and 20 buckets, a sum and a count.
    CHECK(samples == 2 * 2 * (4 + 20 + 2));
  }

  SECTION("an empty snapshot has the families and no samples") {
    const auto lines = lines_of(patio::to_prometheus(patio::metrics_snapshot{}));
    CHECK(lines.size() == 10);
  }

  SECTION("invalid names are refused") {
    CHECK_THROWS_AS(patio::to_prometheus(sample(), "9lives"), std::invalid_argument);
    CHECK_THROWS_AS(patio::to_prometheus(sample(), "with space"), std::invalid_argument);
    CHECK_THROWS_AS(patio::to_prometheus(sample(), ""), std::invalid_argument);
    CHECK_THROWS_AS(patio::to_prometheus(sample(), "patio", {{"le", "x"}}), std::invalid_argument);
    CHECK_THROWS_AS(patio::to_prometheus(sample(), "patio", {{"function", "x"}}), std::invalid_argument);
    CHECK_THROWS_AS(patio::to_prometheus(sample(), "patio", {{"__name__", "x"}}), std::invalid_argument);
    CHECK_THROWS_AS(patio::to_prometheus(sample(), "patio", {{"bad-name", "x"}}), std::invalid_argument);
    CHECK_NOTHROW(patio::to_prometheus(sample(), "ns:sub_1", {{"_ok9", "any \\ value"}}));
  }
}
