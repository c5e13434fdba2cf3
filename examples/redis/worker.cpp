// SPDX-License-Identifier: MIT
// The Redis example's worker: it executes mul, div and slow on a thread pool
// for every caller of the same Redis project, until SIGINT or SIGTERM, then
// closes (a call it was running is run again by another worker). Start as
// many as you like, on as many machines. Installed as
// patio-example-redis-worker.
//
//   patio-example-redis-worker [--host HOST] [--port PORT] [--db N] [--user USER] [--password PASSWORD]
//                              [--project NAME] [--workers N]
#include "common.hpp"

#include <patio/patio.hpp>
#include <patio/redis_broker.hpp>

#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/signal_set.hpp>
#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <stdexcept>
#include <thread>

namespace {

/// Like patio's `def mul(*args)`: the product of every positional argument.
std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

/// a / b. Dividing by zero throws: the caller gets a patio::remote_error
/// naming std::domain_error.
double divide(double a, double b) {
  if (b == 0) throw std::domain_error("division by zero");
  return a / b;
}

/// Holds a pool thread for `seconds` (blocking work), returns them: calls
/// beyond --workers wait their turn.
double slow(double seconds) {
  if (!(seconds >= 0 && seconds <= 60)) throw std::domain_error("slow: seconds must be in [0, 60]");
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return seconds;
}

/// Sets the broker up, serves until a signal, closes. @returns the exit status.
asio::awaitable<int> serve(patio::redis_broker& broker, asio::signal_set& signals, example::arguments args,
                           long workers) {
  try {
    co_await broker.setup();
  } catch (const patio::error& e) {
    co_return example::fail(args.name, example::setup_failure(args.redis, e));
  }
  example::print_line("serving mul, div, slow on {} with {} threads (worker {})", example::where(args.redis), workers,
                      broker.id());

  std::error_code ec;
  const int signal = co_await signals.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return example::fail(args.name, fmt::format("waiting for a signal: {}", ec.message()));
  example::print_line("{}: closing", signal == SIGINT ? "SIGINT" : "SIGTERM");
  co_await broker.close();
  example::print_line("closed");
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  example::program program{
      .summary = "Executes mul, div and slow for callers of the same Redis project until SIGINT or SIGTERM.",
      .extra = {{.name = "--workers",
                 .metavar = "N",
                 .help = "threads that run calls",
                 .minimum = 1,
                 .maximum = 1024,
                 .value = 4}}};
  const auto args = example::parse_command_line(argc, argv, program);
  const long workers = program.extra[0].value;

  patio::registry rpc{{.auto_naming = false}};  // names given: the callers spell them
  rpc.add("mul", mul);
  rpc.add("div", divide);
  rpc.add("slow", slow);
  patio::thread_pool_executor executor{rpc, static_cast<std::size_t>(workers)};

  asio::io_context io;
  // Before setup: a signal that comes while connecting waits for serve().
  asio::signal_set signals{io, SIGINT, SIGTERM};
  patio::redis_broker broker{io.get_executor(), executor, args.redis};

  int status = 1;
  asio::co_spawn(io, serve(broker, signals, args, workers), [&status](std::exception_ptr e, int s) {
    if (e) std::rethrow_exception(e);
    status = s;
  });
  io.run();
  return status;
} catch (const std::exception& e) {
  return example::fail(argv[0], e.what());
}
