// SPDX-License-Identifier: MIT
#pragma once

#include <patio/executor.hpp>
#include <patio/registry.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace patio {

/// @cond internals
namespace detail {
class process_pool;
}
/// @endcond

/// Options of a process_pool_executor. The defaults are patio's where patio
/// has one.
struct process_pool_options {
  /// Worker processes, each running one task at a time.
  std::size_t max_workers = 4;

  /// Calls that may wait for a free worker; beyond, executor_refused_error
  /// (errc::queue_full).
  std::size_t max_queue = 65536;

  /// The program the workers run; empty for this program itself
  /// (/proc/self/exe), which must then call patio::serve_as_worker early in
  /// main. See docs/executors.md.
  std::string program{};

  /// Arguments given to `program` (argv[1], ...).
  std::vector<std::string> args{};

  /// How long a new worker may take to start and greet the pool.
  std::chrono::milliseconds start_timeout{10'000};

  /// Largest result or request a worker may send, in bytes; a larger frame
  /// is a protocol error that ends that worker.
  std::size_t max_message = 64 * 1024 * 1024;
};

/// Runs registered functions in `max_workers` child processes: a task that
/// crashes (a signal, abort, exit) fails its call with
/// patio::worker_crashed_error naming what happened, the worker is replaced,
/// and the parent and the other calls go on. A call whose timeout passes gets
/// patio::timeout_error and its worker is killed and replaced: unlike a
/// thread, a process can be stopped.
///
/// Workers are new processes started (posix_spawn) from `program`, by default
/// this program, so that starting one is safe while the parent runs other
/// threads. Such a program must call patio::serve_as_worker(registry) at the
/// top of main, after registering its functions and before starting any
/// thread, I/O or process pool of its own.
///
/// Arguments and results cross the process boundary through the codec.
/// Workers exit by themselves when the parent dies, even by SIGKILL.
// NOLINTNEXTLINE(cppcoreguidelines-special-member-functions): executor already deletes copying and moving.
class process_pool_executor final : public executor {
 public:
  /// A pool of `max_workers` processes running this program, started at once.
  /// @param r           the functions it runs; the workers must register the
  ///                    same ones; must outlive the executor.
  /// @param max_workers how many worker processes.
  /// @throws patio::executor_refused_error if this process is itself a worker
  /// that did not call serve_as_worker() first.
  explicit process_pool_executor(patio::registry& r, std::size_t max_workers = 4)
      : process_pool_executor(r, process_pool_options{.max_workers = max_workers}) {}

  /// A pool with explicit options, started at once.
  /// @param r       the functions it runs; must outlive the executor.
  /// @param options workers, queue bound, program, limits (process_pool_options).
  /// @throws patio::executor_refused_error as the other constructor.
  process_pool_executor(patio::registry& r, process_pool_options options);

  /// Shuts the pool down (see shutdown()): no worker outlives it.
  ~process_pool_executor() override;

  /// Starts the worker processes. Idempotent; the constructors call it.
  void setup() override;

  /// Refuses new calls, fails queued ones with executor_refused_error
  /// (errc::shut_down), kills every worker (a running task's call fails with
  /// errc::shut_down) and reaps it. Idempotent; returns when no child is left.
  void shutdown() override;

  /// The live workers, for monitoring and tests.
  /// @returns their process ids.
  [[nodiscard]] std::vector<int> worker_pids() const;

 private:
  void start(std::shared_ptr<detail::invocation> inv) override;

  std::shared_ptr<detail::process_pool> pool_;
};

/// Worker mode. In a process started by a process_pool_executor, serves
/// tasks from `r` until the pool goes away, then returns true: main should
/// then return. In any other process returns false at once.
///
/// Call it at the top of main, after registering functions and before
/// anything else (threads, sockets, a process pool):
/// @code
/// int main() {
///   patio::registry rpc;
///   rpc.add("count_primes", count_primes);
///   if (patio::serve_as_worker(rpc)) return 0;
///   ...
/// }
/// @endcode
/// @param r the functions to serve: the same as the parent's registry.
/// @returns true after serving as a worker; false in a process that is not one.
bool serve_as_worker(registry& r);

}  // namespace patio
