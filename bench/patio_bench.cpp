// SPDX-License-Identifier: MIT
// patio-bench: throughput of patio calls beside the raw work they wrap.
// Prints one JSON object per case and line. Uses the public API only.
//
//   patio-bench [--calls N] [--inflight N] [--case NAME]...
//
// Cases: memory_async, memory_thread_pool.
#include <patio/patio.hpp>

#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

asio::awaitable<std::int64_t> mul_async(patio::varargs<std::int64_t> args) { co_return mul(std::move(args)); }

struct options {
  std::size_t calls = 1'000'000;
  std::size_t inflight = 256;
  std::vector<std::string> cases;
};

template <class Call>
asio::awaitable<void> worker(std::size_t* remaining, Call call) {
  while (*remaining > 0) {
    --*remaining;
    co_await call();
  }
}

// Makes `o.calls` calls from `o.inflight` coroutines, each calling back to
// back; returns wall seconds.
template <class Call>
double drive(const options& o, Call call) {
  asio::io_context io;
  std::size_t remaining = o.calls;
  auto start = clock_type::now();
  for (std::size_t i = 0; i < o.inflight; ++i) asio::co_spawn(io, worker(&remaining, call), patio::rethrow);
  io.run();
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

void check(std::int64_t r) {
  if (r != 6) {
    fmt::print(stderr, "wrong result {}\n", r);
    std::abort();
  }
}

asio::awaitable<void> broker_mul(patio::memory_broker* broker) {
  check(co_await broker->call<std::int64_t>("mul", 1, 2, 3));
}

asio::awaitable<void> direct_mul() {
  // Built outside the co_await: g++ 12 rejects an initializer list inside one.
  patio::varargs<std::int64_t> args{1, 2, 3};
  check(co_await mul_async(std::move(args)));
}

asio::awaitable<void> pool_mul(asio::thread_pool* pool) {
  auto caller = co_await asio::this_coro::executor;
  co_await asio::post(*pool, asio::use_awaitable);
  patio::varargs<std::int64_t> args{1, 2, 3};
  const auto r = mul(std::move(args));
  co_await asio::post(caller, asio::use_awaitable);
  check(r);
}

void report(std::string_view name, const options& o, double seconds, double raw_seconds) {
  const double rate = static_cast<double>(o.calls) / seconds;
  const double raw_rate = static_cast<double>(o.calls) / raw_seconds;
  fmt::print(R"({{"case":"{}","calls":{},"inflight":{},"calls_per_s":{:.0f},"raw_calls_per_s":{:.0f},"ratio":{:.3f}}})"
             "\n",
             name, o.calls, o.inflight, rate, raw_rate, rate / raw_rate);
  std::fflush(stdout);
}

void memory_async(const options& o) {
  patio::registry rpc;
  rpc.add("mul", mul_async);
  patio::async_executor executor{rpc, {.max_workers = o.inflight, .max_queue = o.inflight}};
  patio::memory_broker broker{executor};
  const double patio_s = drive(o, [&] { return broker_mul(&broker); });
  // The limit: the same coroutine called directly on the same kind of io_context.
  const double raw_s = drive(o, [] { return direct_mul(); });
  report("memory_async", o, patio_s, raw_s);
}

void memory_thread_pool(const options& o) {
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::thread_pool_executor executor{rpc, {.max_workers = 4, .max_queue = o.inflight}};
  patio::memory_broker broker{executor};
  const double patio_s = drive(o, [&] { return broker_mul(&broker); });
  // The limit: a bare post to an asio::thread_pool of as many threads, and
  // back to the caller's executor.
  asio::thread_pool pool{4};
  const double raw_s = drive(o, [&] { return pool_mul(&pool); });
  pool.join();
  report("memory_thread_pool", o, patio_s, raw_s);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto next = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", arg);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--calls")
      o.calls = std::stoull(std::string(next()));
    else if (arg == "--inflight")
      o.inflight = std::max<std::size_t>(1, std::stoull(std::string(next())));
    else if (arg == "--case")
      o.cases.emplace_back(next());
    else {
      fmt::print(stderr, "usage: patio-bench [--calls N] [--inflight N] [--case memory_async|memory_thread_pool]...\n");
      return 2;
    }
  }
  auto wanted = [&](std::string_view name) {
    return o.cases.empty() || std::find(o.cases.begin(), o.cases.end(), name) != o.cases.end();
  };
  if (wanted("memory_async")) memory_async(o);
  if (wanted("memory_thread_pool")) memory_thread_pool(o);
}
