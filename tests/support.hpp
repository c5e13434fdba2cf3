// SPDX-License-Identifier: MIT
#pragma once

#include "catch_coro.hpp"

#include <patio/patio.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <utility>

namespace patio::test {

/// Registers the tasks the process pool tests run (tests/test_process_pool.cpp).
/// main() registers them too, so the test binary can serve as the worker.
void register_process_tasks(patio::registry& rpc);

/// When PATIO_TEST_ORPHAN_PARENT is set: starts a process pool, prints its
/// worker pids and waits to be killed; returns -1 otherwise.
int orphan_parent_mode(patio::registry& rpc);

/// When PATIO_TEST_TCP_SERVE is set: serves "announced_wait" (prints
/// "running", then waits) and the tasks of tests/tcp_fixtures.hpp's
/// serving_side on a TCP server broker on 127.0.0.1, on the port
/// PATIO_TEST_TCP_SERVE_PORT names (any free port without it), prints
/// "ready <port>" and runs until killed (tests/test_tcp_broker.cpp);
/// returns -1 otherwise.
int tcp_serve_mode();

/// Runs `task` on a fresh io_context until it finishes and returns its
/// result; rethrows what it threw. Fails (throws) if the io_context runs out
/// of work first, or if the task takes longer than `limit`: a hang is a
/// failure, not a stuck test.
template <class T>
T run(asio::awaitable<T> task, std::chrono::seconds limit = std::chrono::seconds(20)) {
  asio::io_context io;
  std::optional<T> result;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T value) {
    done = true;
    error = e;
    if (!e) result.emplace(std::move(value));
  });
  io.run_for(limit);
  if (!done) throw std::runtime_error("test task did not finish in time");
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

/// Runs `task` on `io` (where the brokers under test live too) until it
/// finishes; rethrows what it threw; fails after `limit`. Then runs `io`
/// briefly so connections wind down before it is destroyed.
inline void run(asio::io_context& io, asio::awaitable<void> task,
                std::chrono::seconds limit = std::chrono::seconds(30)) {
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr e) {
    done = true;
    error = e;
    io.stop();
  });
  io.run_for(limit);
  if (!done) throw std::runtime_error("test task did not finish in time");
  io.restart();
  io.run_for(std::chrono::milliseconds(50));
  if (error) std::rethrow_exception(error);
}

inline void run(asio::awaitable<void> task, std::chrono::seconds limit = std::chrono::seconds(20)) {
  asio::io_context io;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr e) {
    done = true;
    error = e;
  });
  io.run_for(limit);
  if (!done) throw std::runtime_error("test task did not finish in time");
  if (error) std::rethrow_exception(error);
}

}  // namespace patio::test
