// SPDX-License-Identifier: MIT
// Calling from synchronous code: a plain main (and plain threads) with no
// coroutine and no Asio. patio::io_thread runs the I/O on a background
// thread and blocks each caller until its call ends, returning the result or
// throwing the call's error. Prints 100 results of mul(1, 2, 3), one error,
// and the broker's metrics.
#include <patio/patio.hpp>

#include <fmt/ranges.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

double divide(double a, double b) {
  if (b == 0) throw std::domain_error("division by zero");
  return a / b;
}

int main() {
  patio::registry rpc{{.project = "patio-example", .auto_naming = false}};
  rpc.add("mul", mul);
  rpc.add("divide", divide);

  patio::io_thread io;  // declared first: outlives the broker
  patio::thread_pool_executor executor{rpc, 4};
  patio::memory_broker broker{executor};  // a TCP broker would take io.executor()

  // Four legacy threads share the broker; each call blocks only its thread.
  std::vector<std::int64_t> products(100);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = t; i < 100; i += 4) products[i] = io.call<std::int64_t>(broker, {.timeout = 5s}, "mul", 1, 2, 3);
    });
  for (auto& t : threads) t.join();
  fmt::print("{}\n", products);

  try {
    io.call<double>(broker, {.timeout = 5s}, "divide", 1.0, 0.0);
  } catch (const patio::remote_error& e) {  // the task's exception, by type name and message
    fmt::print("divide failed: {}: {}\n", e.type_name(), e.what());
  }

  fmt::print("{}", patio::to_text(broker.metrics()));
}
