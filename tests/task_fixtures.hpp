// SPDX-License-Identifier: MIT
// Tasks, gates and counters shared by the executor and memory broker tests.
#pragma once

#include "support.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;

namespace {

using clock_type = std::chrono::steady_clock;

// ---- helpers ------------------------------------------------------------------

/// Rethrows `e`; throws std::logic_error if there is none, so that
/// CHECK_THROWS_AS(raise(e), ...) fails when the call did not throw.
void raise(const std::exception_ptr& e) {
  if (e) std::rethrow_exception(e);
  throw std::logic_error("expected the call to throw, but it succeeded");
}

/// What `task` threw, or nullptr. Keeps co_await out of Catch's macros.
template <class T>
asio::awaitable<std::exception_ptr> error_of(asio::awaitable<T> task) {
  std::exception_ptr error;
  try {
    co_await std::move(task);
  } catch (...) {
    error = std::current_exception();
  }
  co_return error;
}

/// `e` as an E, if it is one.
template <class E>
std::optional<E> caught(const std::exception_ptr& e) {
  if (!e) return std::nullopt;
  try {
    std::rethrow_exception(e);
  } catch (const E& x) {
    return x;
  } catch (...) {
  }
  return std::nullopt;
}

asio::awaitable<void> pause(clock_type::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

asio::awaitable<void> yield() { co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable); }

/// A one-shot gate a task thread can wait on; opened from the test.
class gate {
 public:
  void open() {
    if (!opened_.exchange(true)) promise_.set_value();
  }
  void wait() const { future_.wait(); }
  [[nodiscard]] bool wait_for(clock_type::duration d) const { return future_.wait_for(d) == std::future_status::ready; }

 private:
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
  std::atomic<bool> opened_{false};
};

/// Counts notifications; a thread can block until it has seen n of them.
class beacon {
 public:
  void notify() {
    {
      std::lock_guard lock(mutex_);
      ++count_;
    }
    cv_.notify_all();
  }
  /// False when `limit` passes first.
  [[nodiscard]] bool wait(int n = 1, clock_type::duration limit = 5s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, [&] { return count_ >= n; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_ = 0;
};

/// What the registered tasks record.
struct probes {
  std::atomic<int> noop_calls{0};
  std::atomic<int> slow_started{0};
  std::atomic<bool> slow_cancelled{false};
  std::atomic<bool> slow_finished{false};
  std::atomic<int> late_runs{0};
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  std::atomic<std::thread::id> task_thread{};
  gate release;
  beacon started;

  void enter() {
    const int now = ++running;
    int seen = max_running.load();
    while (seen < now && !max_running.compare_exchange_weak(seen, now)) {
    }
  }
  void leave() { --running; }
};

// ---- tasks ----------------------------------------------------------------------

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

asio::awaitable<std::int64_t> amul(patio::varargs<std::int64_t> args) {
  co_await yield();  // really asynchronous
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  co_return product;
}

int add(int a, int b) { return a + b; }

asio::awaitable<int> aadd(int a, int b) {
  co_await yield();
  co_return a + b;
}

int boom() { throw std::runtime_error("boom"); }

asio::awaitable<int> aboom() {
  co_await yield();
  throw std::runtime_error("boom");
}

int throw_int() { throw 42; }

asio::awaitable<int> athrow_int() {
  co_await yield();
  throw 42;
}

asio::awaitable<int> ahold() {
  co_await pause(150ms);
  co_return 6;
}

/// Never registered anywhere.
int unregistered(int a) { return a; }

/// Registers every task twice over: "sync_*" synchronous and "coro_*"
/// coroutine versions, so each executor can be tried with both kinds.
void register_tasks(patio::registry& rpc, probes& p) {
  rpc.add("sync_mul", mul);
  rpc.add("coro_mul", amul);
  rpc.add("sync_add", add);
  rpc.add("coro_add", aadd);
  rpc.add("sync_boom", boom);
  rpc.add("coro_boom", aboom);
  rpc.add("sync_throw_int", throw_int);
  rpc.add("coro_throw_int", athrow_int);
  rpc.add("coro_hold", ahold);
  rpc.add("sync_noop", [&p] { ++p.noop_calls; });
  rpc.add("coro_noop", [&p]() -> asio::awaitable<void> {
    co_await yield();
    ++p.noop_calls;
  });
  // Slow work: the sync version waits (at most 3 s) for the gate, the
  // coroutine version for a 3 s timer, recording whether it was cancelled.
  rpc.add("sync_slow", [&p] {
    ++p.slow_started;
    p.started.notify();
    const bool released = p.release.wait_for(3s);
    p.slow_finished = true;
    return released ? 1 : 0;
  });
  rpc.add("coro_slow", [&p]() -> asio::awaitable<int> {
    ++p.slow_started;
    asio::steady_timer timer(co_await asio::this_coro::executor, 3s);
    try {
      co_await timer.async_wait(asio::use_awaitable);
    } catch (const std::system_error& e) {
      if (e.code() == asio::error::operation_aborted) p.slow_cancelled = true;
      throw;
    }
    p.slow_finished = true;
    co_return 1;
  });
  // Blocks its thread until the test opens the gate.
  rpc.add("sync_block", [&p] {
    p.started.notify();
    p.release.wait();
    return 6;
  });
  // Must never run: its call is abandoned before it starts.
  rpc.add("sync_late", [&p] { return ++p.late_runs; });
  rpc.add("coro_late", [&p]() -> asio::awaitable<int> { co_return ++p.late_runs; });
  rpc.add("sync_where", [&p] {
    p.task_thread = std::this_thread::get_id();
    return 1;
  });
  rpc.add("coro_where", [&p]() -> asio::awaitable<int> {
    co_await yield();
    p.task_thread = std::this_thread::get_id();
    co_return 1;
  });
  rpc.add("sync_track", [&p] {
    p.enter();
    std::this_thread::sleep_for(5ms);  // the task's own (simulated) work
    p.leave();
    return 1;
  });
  rpc.add("coro_track", [&p]() -> asio::awaitable<int> {
    p.enter();
    co_await pause(5ms);
    p.leave();
    co_return 1;
  });
}

// ---- the two executors, for template tests ----------------------------------

}  // namespace
