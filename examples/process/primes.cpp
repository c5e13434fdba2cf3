// SPDX-License-Identifier: MIT
// The process pool: a CPU-bound task (counting primes) runs in parallel in
// worker processes, and a task that crashes on purpose takes down only its
// worker; the service keeps answering.
#include <patio/patio.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <csignal>
#include <cstdint>
#include <vector>

// Primes in [from, to): deliberately plain trial division, to keep a core busy.
std::int64_t count_primes(std::int64_t from, std::int64_t to) {
  std::int64_t count = 0;
  for (std::int64_t n = std::max<std::int64_t>(from, 2); n < to; ++n) {
    bool prime = true;
    for (std::int64_t d = 2; d * d <= n && prime; ++d) prime = n % d != 0;
    count += prime;
  }
  return count;
}

// A bug in a task, simulated: a segmentation fault. In a thread it would end
// the whole service.
std::int64_t crash() {
  std::raise(SIGSEGV);
  return 0;
}

asio::awaitable<void> amain(patio::registry& rpc) {
  patio::process_pool_executor executor{rpc, 4};
  patio::memory_broker broker{executor};

  // Four slices of [0, 2'000'000), counted at once in four processes.
  std::vector<asio::awaitable<std::int64_t>> slices;
  for (std::int64_t i = 0; i < 4; ++i) slices.push_back(broker.call(count_primes, i * 500'000, (i + 1) * 500'000));
  const auto counts = co_await patio::gather(std::move(slices));
  std::int64_t total = 0;
  for (auto c : counts) total += c;
  fmt::print("primes below 2000000 by slice: {}, total {}\n", counts, total);

  try {
    co_await broker.call(crash);
  } catch (const patio::worker_crashed_error& e) {
    fmt::print("the crashing task failed alone: {}\n", e.what());
  }

  // The pool replaced the dead worker; the service goes on.
  fmt::print("still serving: primes below 100 = {}\n", co_await broker.call(count_primes, 0, 100));
}

int main() {
  patio::registry rpc{{.project = "patio-example"}};
  rpc.add<&count_primes>();
  rpc.add<&crash>();
  // Started as a worker by the pool? Then serve tasks, and nothing else.
  if (patio::serve_as_worker(rpc)) return 0;

  asio::io_context io;
  asio::co_spawn(io, amain(rpc), patio::rethrow);
  io.run();
}
