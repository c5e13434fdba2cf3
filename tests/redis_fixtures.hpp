// SPDX-License-Identifier: MIT
// What the Redis broker tests share: a redis-server of their own on a free
// loopback port, a synchronous hiredis client to look at and tamper with
// Redis behind the broker's back, and a worker child process.
#pragma once

#include "support.hpp"

#include <patio/redis_broker.hpp>

#include <hiredis/hiredis.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace patio::test::redis {

/// A redis-server started for one test, in a temporary directory, on a free
/// port of 127.0.0.1; killed and removed at the end. Throws (the test fails
/// with the reason) if redis-server is missing or does not come up.
class server {
 public:
  /// `extra` are more command-line options, e.g. {"--requirepass", "s3cret"}.
  explicit server(std::vector<std::string> extra = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Kills it (SIGKILL: no save) and waits for it to be gone.
  void kill();
  /// Starts it again on the same port and directory.
  void start();

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// Broker options pointing at this server, under `project`, with timings
  /// shortened for tests.
  [[nodiscard]] patio::redis_options options(std::string project = "test") const;

 private:
  std::vector<std::string> extra_;
  std::string dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

struct context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply = std::unique_ptr<redisReply, reply_deleter>;

/// A blocking client for the test's own look at Redis.
class client {
 public:
  explicit client(std::uint16_t port, const std::string& password = {});
  /// Runs a command given as separate arguments. @throws on I/O errors.
  reply command(const std::vector<std::string>& args);
  /// An integer reply's value (XLEN, PTTL, ...). @throws on other replies.
  long long integer(const std::vector<std::string>& args);

 private:
  std::unique_ptr<redisContext, context_deleter> c_;
};

/// The test binary started with PATIO_TEST_REDIS_WORK set: a worker of
/// project "test" serving "stall" (prints "running", then waits 60 s) and
/// "mul"; killed at the end of the test.
class worker_process {
 public:
  explicit worker_process(std::uint16_t port);
  ~worker_process();
  worker_process(const worker_process&) = delete;
  worker_process& operator=(const worker_process&) = delete;

  /// Blocks until the child has printed `line` (bounded: throws after `limit`).
  void wait_for(const std::string& line, std::chrono::seconds limit = std::chrono::seconds(20));
  /// Whether the child has printed `line` by now; never blocks (for
  /// eventually() inside a test's io_context).
  bool saw(const std::string& line);
  void kill();

 private:
  /// Reads what the child printed, waiting up to `wait_ms`; false at its end.
  bool read_some(int wait_ms);
  bool take(const std::string& line);

  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
  std::set<std::string> seen_;  // every line printed so far
};

/// When PATIO_TEST_REDIS_WORK=<port> is set: runs the child of
/// worker_process and returns its exit status; returns -1 otherwise.
int work_mode();

}  // namespace patio::test::redis
