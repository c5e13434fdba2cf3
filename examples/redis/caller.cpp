// SPDX-License-Identifier: MIT
// The Redis example's caller: it only calls (a null executor). Through the
// workers of its Redis project it calls mul, div and slow and prints the
// results, catches a task's exception as patio::remote_error and a call of a
// function no worker offers as patio::no_route_error; with --calls N it then
// makes N calls, 64 at a time, and prints calls per second. Exits 0 if every
// call did what it should, 1 otherwise (one line on stderr says why).
// Installed as patio-example-redis-caller.
//
//   patio-example-redis-caller [--host HOST] [--port PORT] [--db N] [--user USER] [--password PASSWORD]
//                              [--project NAME] [--calls N] [--timeout SECONDS]
#include "common.hpp"

#include <patio/patio.hpp>
#include <patio/redis_broker.hpp>

#include <asio/io_context.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

/// Calls in flight at once during the burst.
constexpr std::int64_t burst_width = 64;

/// Seconds since `start`.
double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// The tour: results, a remote error, no route. Throws what a call threw
/// unexpectedly.
asio::awaitable<void> show_calls(patio::redis_broker& broker, patio::call_options options) {
  std::vector<asio::awaitable<std::int64_t>> squares;
  for (std::int64_t i = 0; i < 10; ++i) squares.push_back(broker.call<std::int64_t>(options, "mul", i, i));
  example::print_line("mul(i, i) for i in 0..9 = {}", co_await patio::gather(std::move(squares)));
  example::print_line("mul(1, 2, 3, 4, 5) = {}", co_await broker.call<std::int64_t>(options, "mul", 1, 2, 3, 4, 5));
  example::print_line("div(1, 4) = {}", co_await broker.call<double>(options, "div", 1.0, 4.0));

  const auto start = std::chrono::steady_clock::now();
  std::vector<asio::awaitable<double>> sleeps;
  for (int i = 0; i < 4; ++i) sleeps.push_back(broker.call<double>(options, "slow", 0.25));
  co_await patio::gather(std::move(sleeps));
  example::print_line("4 x slow(0.25) at once took {:.2f} s (the workers' threads run them side by side)",
                      since(start));

  try {
    co_await broker.call<double>(options, "div", 1.0, 0.0);
    throw std::logic_error("div(1, 0) returned instead of throwing");
  } catch (const patio::remote_error& e) {
    example::print_line("div(1, 0) raised remote_error: {}: {}", e.type_name(), e.what());
  }

  try {
    co_await broker.call(options, "no_such_function", 1);
    throw std::logic_error("no_such_function(1) returned");
  } catch (const patio::no_route_error& e) {
    example::print_line("no_such_function(1) raised no_route_error: {}", e.what());
  }
}

/// One lane of the burst: calls mul(k, 2) for k = first, first + step, ...
/// below `count`, one after another, and checks each result.
asio::awaitable<std::int64_t> burst_lane(patio::redis_broker& broker, patio::call_options options, std::int64_t first,
                                         std::int64_t step, std::int64_t count) {
  std::int64_t made = 0;
  for (std::int64_t k = first; k < count; k += step, ++made) {
    const auto r = co_await broker.call<std::int64_t>(options, "mul", k, 2);
    if (r != 2 * k) throw std::logic_error(fmt::format("mul({}, 2) returned {}", k, r));
  }
  co_return made;
}

/// `count` calls, `burst_width` at a time; prints how fast they went.
asio::awaitable<void> burst(patio::redis_broker& broker, patio::call_options options, std::int64_t count) {
  const auto width = std::min(count, burst_width);
  const auto start = std::chrono::steady_clock::now();
  std::vector<asio::awaitable<std::int64_t>> lanes;
  for (std::int64_t i = 0; i < width; ++i) lanes.push_back(burst_lane(broker, options, i, width, count));
  std::int64_t made = 0;
  for (auto n : co_await patio::gather(std::move(lanes))) made += n;
  const double seconds = since(start);
  example::print_line("burst: {} calls of mul, {} at once, in {:.2f} s: {:.0f} calls/s", made, width, seconds,
                      static_cast<double>(made) / seconds);
}

/// Sets the broker up, makes the calls, closes. @returns the exit status.
asio::awaitable<int> run(patio::redis_broker& broker, example::arguments args, std::int64_t calls,
                         std::chrono::seconds timeout) {
  try {
    co_await broker.setup();
  } catch (const patio::error& e) {
    co_return example::fail(args.name, example::setup_failure(args.redis, e));
  }
  example::print_line("calling through {}", example::where(args.redis));

  std::string failure;
  try {
    const patio::call_options options{.timeout = timeout};
    co_await show_calls(broker, options);
    if (calls > 0) co_await burst(broker, options, calls);
  } catch (const patio::no_route_error& e) {
    failure = fmt::format(
        "no_route_error: {} (is patio-example-redis-worker running against the same Redis, --db and --project?)",
        e.what());
  } catch (const patio::timeout_error& e) {
    failure = fmt::format("timeout_error: {} (no worker answered within {} s)", e.what(), timeout.count());
  } catch (const std::exception& e) {
    failure = e.what();
  }
  co_await broker.close();
  co_return failure.empty() ? 0 : example::fail(args.name, failure);
}

}  // namespace

int main(int argc, char** argv) try {
  example::program program{
      .summary = "Calls mul, div and slow through Redis workers; shows a remote error and a missing function.",
      .extra = {{.name = "--calls",
                 .metavar = "N",
                 .help = "then make N calls and print calls/s",
                 .minimum = 0,
                 .maximum = 100'000'000,
                 .value = 0},
                {.name = "--timeout",
                 .metavar = "SECONDS",
                 .help = "seconds each call may take",
                 .minimum = 1,
                 .maximum = 3600,
                 .value = 10}}};
  const auto args = example::parse_command_line(argc, argv, program);

  patio::registry rpc;
  patio::null_executor executor{rpc};  // offers nothing: it only calls

  asio::io_context io;
  patio::redis_broker broker{io.get_executor(), executor, args.redis};
  int status = 1;
  asio::co_spawn(io, run(broker, args, program.extra[0].value, std::chrono::seconds{program.extra[1].value}),
                 [&status](std::exception_ptr e, int s) {
                   if (e) std::rethrow_exception(e);
                   status = s;
                 });
  io.run();
  return status;
} catch (const std::exception& e) {
  return example::fail(argv[0], e.what());
}
