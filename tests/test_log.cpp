// SPDX-License-Identifier: MIT
// The log sink: levels, the default sink, sinks called from many threads,
// and what the TCP brokers log for connection events and failures.
#include "tcp_fixtures.hpp"

#include <patio/log.hpp>

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace patio::test::tcp;

struct line {
  patio::log_level level;
  std::string component;
  std::string message;
};

/// The lines a sink received. Guarded by its own mutex, so that a test may
/// read it while the library's threads log.
struct captured {
  mutable std::mutex mutex;
  std::vector<line> lines;

  std::vector<line> snapshot() const {
    std::lock_guard lock(mutex);
    return lines;
  }
  /// The lines that contain `text`.
  std::vector<line> with(std::string_view text) const {
    std::vector<line> found;
    for (auto& l : snapshot())
      if (l.message.find(text) != std::string::npos) found.push_back(l);
    return found;
  }
  std::size_t count(std::string_view text) const { return with(text).size(); }
};

/// Captures every line at or above `level` while it lives; then restores
/// the default sink and the threshold it found.
class log_capture {
 public:
  explicit log_capture(patio::log_level level = patio::log_level::debug) : saved_(patio::get_log_level()) {
    patio::set_log_sink([lines = lines_](const patio::log_record& r) {
      std::lock_guard lock(lines->mutex);
      lines->lines.push_back({r.level, std::string(r.component), std::string(r.message)});
    });
    patio::set_log_level(level);
  }
  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;
  ~log_capture() {
    patio::set_log_sink({});
    patio::set_log_level(saved_);
  }

  const captured& operator*() const { return *lines_; }
  const captured* operator->() const { return lines_.get(); }

 private:
  std::shared_ptr<captured> lines_ = std::make_shared<captured>();
  patio::log_level saved_;
};

/// Restores the default sink and threshold at the end of a test that
/// installs sinks of its own.
struct restore_default_log {
  patio::log_level saved = patio::get_log_level();
  ~restore_default_log() {
    patio::set_log_sink({});
    patio::set_log_level(saved);
  }
};

/// A value that counts how often it is formatted, and throws if asked to.
struct counted {
  int* formatted;
  bool throws = false;
};

}  // namespace

template <>
struct fmt::formatter<counted> : fmt::formatter<std::string_view> {
  auto format(const counted& c, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    ++*c.formatted;
    if (c.throws) throw std::runtime_error("cannot format this");
    return fmt::formatter<std::string_view>::format("counted", ctx);
  }
};

namespace {

/// Captures what this process writes to stderr while it lives.
class stderr_redirect {
 public:
  stderr_redirect() : file_(std::tmpfile()) {
    REQUIRE(file_);
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    ::dup2(::fileno(file_), STDERR_FILENO);
  }
  stderr_redirect(const stderr_redirect&) = delete;
  stderr_redirect& operator=(const stderr_redirect&) = delete;
  ~stderr_redirect() { finish(); }

  /// Restores stderr, echoes what was captured there, and returns it.
  std::string finish() {
    if (saved_ < 0) return text_;
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
    std::rewind(file_);
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, file_)) > 0;) text_.append(buffer, n);
    std::fclose(file_);
    std::fwrite(text_.data(), 1, text_.size(), stderr);
    return text_;
  }

 private:
  std::FILE* file_;
  int saved_ = -1;
  std::string text_;
};

}  // namespace

// ---- levels and sinks -----------------------------------------------------------

TEST_CASE("log: lines below the threshold are dropped without being formatted", "[log]") {
  log_capture log(patio::log_level::warning);
  int formatted = 0;

  SECTION("below the threshold: neither formatted nor written") {
    patio::detail::log(patio::log_level::debug, "test", "{}", counted{&formatted});
    patio::detail::log(patio::log_level::info, "test", "{}", counted{&formatted});
    CHECK(formatted == 0);
    CHECK(log->snapshot().empty());
    CHECK_FALSE(patio::detail::log_enabled(patio::log_level::info));
  }
  SECTION("at and above it: formatted once and written once, with level and component") {
    patio::detail::log(patio::log_level::warning, "test", "a {} line", counted{&formatted});
    patio::detail::log(patio::log_level::error, "other", "{} and {}", 1, "two");
    CHECK(formatted == 1);
    const auto lines = log->snapshot();
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].level == patio::log_level::warning);
    CHECK(lines[0].component == "test");
    CHECK(lines[0].message == "a counted line");
    CHECK(lines[1].level == patio::log_level::error);
    CHECK(lines[1].component == "other");
    CHECK(lines[1].message == "1 and two");
  }
  SECTION("the threshold off drops everything, and a line at level off is never written") {
    patio::set_log_level(patio::log_level::off);
    CHECK(patio::get_log_level() == patio::log_level::off);
    patio::detail::log(patio::log_level::error, "test", "{}", counted{&formatted});
    patio::set_log_level(patio::log_level::debug);
    patio::detail::log(patio::log_level::off, "test", "{}", counted{&formatted});
    CHECK(formatted == 0);
    CHECK(log->snapshot().empty());
  }
  SECTION("a line that cannot be formatted is dropped, not thrown") {
    patio::detail::log(patio::log_level::error, "test", "{}", counted{&formatted, true});
    CHECK(formatted == 1);
    CHECK(log->snapshot().empty());
  }
}

TEST_CASE("log: the level names", "[log]") {
  CHECK(patio::to_string(patio::log_level::debug) == "debug");
  CHECK(patio::to_string(patio::log_level::info) == "info");
  CHECK(patio::to_string(patio::log_level::warning) == "warning");
  CHECK(patio::to_string(patio::log_level::error) == "error");
  CHECK(patio::to_string(patio::log_level::off) == "off");
}

TEST_CASE("log: an empty sink restores the default, which writes one line to stderr", "[log]") {
  restore_default_log restore;
  auto replaced = std::make_shared<int>(0);
  patio::set_log_sink([replaced](const patio::log_record&) { ++*replaced; });
  patio::set_log_level(patio::log_level::info);
  patio::detail::log(patio::log_level::warning, "test", "to the sink");
  CHECK(*replaced == 1);

  patio::set_log_sink({});
  stderr_redirect err;
  patio::detail::log(patio::log_level::warning, "test", "back on stderr: {}", 42);
  patio::detail::log(patio::log_level::debug, "test", "below the threshold");
  const auto text = err.finish();
  CHECK(*replaced == 1);
  CHECK(text == "patio test warning: back on stderr: 42\n");
}

TEST_CASE("log: a sink that throws loses the line, not the caller", "[log]") {
  restore_default_log restore;
  int calls = 0;
  patio::set_log_sink([&calls](const patio::log_record&) {
    ++calls;
    throw std::runtime_error("sink broken");
  });
  patio::detail::log(patio::log_level::error, "test", "one");
  patio::detail::log(patio::log_level::error, "test", "two");
  CHECK(calls == 2);
}

TEST_CASE("log: the sink is called from many threads one call at a time, while sinks and levels change", "[log]") {
  restore_default_log restore;
  // Deliberately unsynchronised: the library serialises calls to the sink,
  // and a ThreadSanitizer build checks that it does.
  struct tally {
    std::size_t lines = 0;
    std::size_t bytes = 0;
  };
  auto shared = std::make_shared<tally>();
  auto first = [shared](const patio::log_record& r) {
    ++shared->lines;
    shared->bytes += r.message.size();
  };
  auto second = [shared](const patio::log_record& r) {
    shared->lines += 1;
    shared->bytes += r.message.size();
  };
  patio::set_log_sink(first);
  patio::set_log_level(patio::log_level::info);

  constexpr int writers = 4;
  constexpr int per_writer = 2000;
  std::atomic<bool> done{false};
  std::thread changer([&] {
    for (int i = 0; !done; ++i) {
      if (i % 2 == 0)
        patio::set_log_sink(second);
      else
        patio::set_log_sink(first);
      patio::set_log_level(i % 2 == 0 ? patio::log_level::debug : patio::log_level::info);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < writers; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < per_writer; ++i) patio::detail::log(patio::log_level::warning, "test", "{}:{:04}", t, i);
    });
  for (auto& t : threads) t.join();
  done = true;
  changer.join();
  patio::set_log_sink({});  // no call to either sink is under way once this returns

  CHECK(shared->lines == writers * per_writer);
  CHECK(shared->bytes == writers * per_writer * std::string_view("0:0000").size());
}

// ---- what the TCP brokers log ---------------------------------------------------

namespace {

/// Runs a wrong-key handshake against `port` as a raw client, until the
/// server hangs up. No read after that end of file: with Asio 1.22 a second
/// read of a socket at its end did not complete here.
asio::awaitable<void> wrong_key_handshake(std::uint16_t port) {
  auto s = co_await connect_raw(port);
  hs::client client("wrong");
  for (;;) {
    auto p = co_await read_packet(s);
    if (!p) break;  // the server closed without answering the proof
    auto step = client.on_frame(p->header, p->payload);
    if (!step.send.empty()) co_await write_bytes(s, step.send);
    if (step.failed || step.done) break;
  }
}

asio::awaitable<void> refused_once(patio::tcp_server_broker* server, std::uint16_t port, const captured* log) {
  co_await wrong_key_handshake(port);
  const bool logged = co_await eventually([log] { return log->count("authentication") > 0; });
  CHECK(logged);
  co_await server->close();
}

}  // namespace

TEST_CASE("log: a client with the wrong key is logged once, as a tcp warning, by the server", "[log][tcp]") {
  log_capture log;
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.key = "right"}};
  const auto port = server.listen("127.0.0.1", 0);
  patio::test::run(io, refused_once(&server, port, &*log));

  const auto lines = log->snapshot();
  std::vector<line> warnings;
  std::copy_if(lines.begin(), lines.end(), std::back_inserter(warnings),
               [](const line& l) { return l.level >= patio::log_level::warning; });
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].level == patio::log_level::warning);
  CHECK(warnings[0].component == "tcp");
  CHECK_THAT(warnings[0].message, Catch::StartsWith("authentication with 127.0.0.1:") &&
                                      Catch::EndsWith("failed: the client's proof does not match the key; closing"));
  // A connection that never authenticated is not "connected" or "disconnected".
  CHECK(log->count("connected") == 0);
  CHECK(log->count(fmt::format("listening on 127.0.0.1:{}", port)) == 1);
}

namespace {

asio::awaitable<void> keep_failing(patio::tcp_client_broker* client, patio::tcp_server_broker* server,
                                   const captured* log) {
  const bool enough = co_await eventually([log] { return log->count("the client's proof does not match") >= 25; });
  CHECK(enough);
  co_await client->close();
  co_await server->close();
}

}  // namespace

TEST_CASE("log: a client that keeps failing to authenticate logs the first failure and every tenth, not each retry",
          "[log][tcp]") {
  log_capture log;
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor, {.key = "right"}};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{
      io.get_executor(), client_side.executor, {.key = "wrong", .reconnect_delay = 1ms, .max_reconnect_delay = 2ms}};
  client.connect("127.0.0.1", port);
  patio::test::run(io, keep_failing(&client, &server, &*log));

  // The server logs each refused connection: each is a separate event.
  const auto refused = log->count("the client's proof does not match");
  CHECK(refused >= 25);
  // The client logs its 1st, 10th, 20th, ... failure in a row: the server
  // refused at least 25 times, so the client saw at least 24 of them.
  const auto client_lines = log->with("reconnecting in");
  CHECK(client_lines.size() >= 3);
  CHECK(client_lines.size() <= refused / 10 + 1);
  REQUIRE_FALSE(client_lines.empty());
  for (const auto& l : client_lines) {
    CHECK(l.level == patio::log_level::warning);
    CHECK(l.component == "tcp");
    CHECK_THAT(l.message, Catch::Contains("closed the connection during authentication (a different key?); "
                                          "closing, reconnecting in"));
  }
  CHECK_THAT(client_lines[0].message, !Catch::Contains("in a row"));
  CHECK_THAT(client_lines[1].message, Catch::EndsWith("(10 failed attempts in a row)"));
}

namespace {

asio::awaitable<void> calls_then_close(patio::tcp_client_broker* client, patio::tcp_server_broker* server,
                                       const captured* log) {
  for (int i = 0; i < 50; ++i) {
    const auto r = co_await client->call<std::int64_t>({.timeout = 5s}, "mul", i, 2);
    CHECK(r == 2 * i);
  }
  co_await client->close();
  const bool ended =
      co_await eventually([log] { return log->count("disconnected") == 1 && log->count("closed") == 1; });
  CHECK(ended);
  co_await server->close();
}

}  // namespace

TEST_CASE("log: a connection is logged when it comes up and when it ends, on each side, never per call", "[log][tcp]") {
  log_capture log;
  asio::io_context io;
  serving_side server_side;
  patio::tcp_server_broker server{io.get_executor(), server_side.executor};
  const auto port = server.listen("127.0.0.1", 0);
  calling_side client_side;
  patio::tcp_client_broker client{io.get_executor(), client_side.executor, plain_options()};
  client.connect("127.0.0.1", port);
  patio::test::run(io, calls_then_close(&client, &server, &*log));

  const auto lines = log->snapshot();
  std::vector<std::string> messages;
  for (const auto& l : lines) {
    CHECK(l.level == patio::log_level::info);
    CHECK(l.component == "tcp");
    messages.push_back(l.message);
  }
  const auto address = fmt::format("127.0.0.1:{}", port);
  CHECK(log->count("listening on " + address) == 1);
  CHECK(log->count("connected to " + address) == 1);
  CHECK(log->count("connection to " + address + " closed") == 1);
  const auto server_side_lines = log->with(" connected");
  REQUIRE(server_side_lines.size() == 1);
  CHECK_THAT(server_side_lines[0].message, Catch::StartsWith("127.0.0.1:") && Catch::EndsWith(" connected"));
  CHECK(log->count(" disconnected") == 1);
  CHECK(lines.size() == 5);
}
