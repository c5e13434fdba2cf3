// SPDX-License-Identifier: MIT
// What the TCP broker tests share: the tasks each side serves, option
// builders for plain TCP, TLS and mutual TLS, a raw protocol peer that
// speaks the wire protocol over a bare socket, and a server in a child
// process that a test can kill (tests/test_tcp_*.cpp).
#pragma once

#include "support.hpp"

#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>

#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" char** environ;

namespace patio::test::tcp {

using namespace std::chrono_literals;

inline std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

inline asio::awaitable<std::string> slow(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
  co_return "done";
}

inline std::string fail(std::string what) { throw std::invalid_argument(what); }

inline asio::awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

/// Awaits (bounded: `limit`) until `done()` holds, looking every 5 ms: for
/// state no event announces, such as a connection count. @returns done().
template <class F>
asio::awaitable<bool> eventually(F done, std::chrono::milliseconds limit = 10s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < until) co_await pause(5ms);
  co_return done();
}

/// One side: a registry with the test tasks, an async executor, and a broker.
/// "who" answers `id`, so a test sees which side ran a call.
struct serving_side {
  patio::registry rpc;
  patio::async_executor executor;

  explicit serving_side(std::string id = "server") : executor(register_all(rpc, std::move(id)), 8) {}

  static patio::registry& register_all(patio::registry& rpc, std::string id) {
    rpc.add("mul", mul);
    rpc.add("slow", slow);
    rpc.add("fail", fail);
    rpc.add("who", [id] { return id; });
    return rpc;
  }
};

/// A side that only calls.
struct calling_side {
  patio::registry rpc;
  patio::null_executor executor{rpc};
};

// ---- options ------------------------------------------------------------------
// Options are built in plain functions: g++ 12 miscompiles nested
// designated initializers of structs holding strings inside a coroutine
// (the strings end up pointing into the coroutine frame).

inline std::string cert(const char* name) { return std::string(PATIO_TEST_CERTS) + "/" + name; }

inline patio::tls_options server_tls(bool require_client = false) {
  return {.certificate_chain_file = cert("server.pem"),
          .private_key_file = cert("server.key"),
          .ca_file = require_client ? cert("ca.pem") : std::string(),
          .require_client_certificate = require_client};
}

inline patio::tls_options trusting(const char* ca, std::string server_name = {}) {
  return {.ca_file = cert(ca), .server_name = std::move(server_name)};
}

/// A client certificate signed by the test CA, and the CA to verify the
/// server ("localhost") against.
inline patio::tls_options with_client_certificate() {
  return {.certificate_chain_file = cert("client.pem"),
          .private_key_file = cert("client.key"),
          .ca_file = cert("ca.pem"),
          .server_name = "localhost"};
}

/// A client that reconnects after 50 ms (the default waits 1 s).
inline patio::tcp_options client_options(std::optional<patio::tls_options> tls, std::string key = {}) {
  return {.key = std::move(key), .reconnect_delay = 50ms, .tls = std::move(tls)};
}

/// Plain TCP; a client reconnects after 50 ms, backing off to 200 ms at most.
inline patio::tcp_options plain_options(std::string key = {}) {
  return {.key = std::move(key), .reconnect_delay = 50ms, .max_reconnect_delay = 200ms};
}

// ---- a raw protocol peer ------------------------------------------------------
// A bare socket that speaks the protocol frame by frame, so a test can send
// what no broker would: replays, truncated frames, proofs with the wrong key.

namespace frame = patio::detail::frame;
namespace hs = patio::detail::handshake;
using asio::ip::tcp;

struct packet {
  frame::header header;
  std::string payload;
};

/// The next whole frame; nothing when the peer closed or sent a header no
/// receiver accepts.
inline asio::awaitable<std::optional<packet>> read_packet(tcp::socket& s) {
  unsigned char head[frame::header_size];
  std::error_code ec;
  co_await asio::async_read(s, asio::buffer(head), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return std::nullopt;
  packet p;
  if (frame::decode(head, 1u << 24, true, p.header) != frame::header_error::none) co_return std::nullopt;
  p.payload.resize(p.header.payload_size);
  co_await asio::async_read(s, asio::buffer(p.payload), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return std::nullopt;
  co_return p;
}

inline asio::awaitable<void> write_bytes(tcp::socket& s, std::string bytes) {
  co_await asio::async_write(s, asio::buffer(bytes), asio::use_awaitable);
}

/// Reads until the peer closes (end of file or reset); @returns the bytes
/// that arrived meanwhile.
inline asio::awaitable<std::string> read_until_closed(tcp::socket& s) {
  std::string received;
  std::string chunk(4096, '\0');
  for (;;) {
    std::error_code ec;
    const auto n = co_await s.async_read_some(asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return received;
    received.append(chunk, 0, n);
  }
}

/// What an honest client exchanged in a handshake.
struct handshake_record {
  std::string digest;  ///< the AUTH_DIGEST payload the server sent (its nonce)
  std::string sent;    ///< every byte the client sent: AUTH_REQUEST, then AUTH_OK
};

/// Authenticates `s` as a client with `key`, as the broker's client would,
/// and records the exchange.
inline asio::awaitable<handshake_record> authenticate(tcp::socket& s, std::string key) {
  hs::client client(std::move(key));
  handshake_record record;
  for (;;) {
    auto p = co_await read_packet(s);
    REQUIRE(p);
    if (p->header.kind == frame::type::auth_digest) record.digest = p->payload;
    auto step = client.on_frame(p->header, p->payload);
    REQUIRE_FALSE(step.failed);
    if (!step.send.empty()) {
      record.sent += step.send;
      co_await write_bytes(s, step.send);
    }
    if (step.done) co_return record;
  }
}

/// A connected socket to 127.0.0.1:`port`.
inline asio::awaitable<tcp::socket> connect_raw(std::uint16_t port) {
  tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  co_return s;
}

// ---- a server in a child process ------------------------------------------------
// The test binary started with PATIO_TEST_TCP_SERVE set (tests/main.cpp,
// patio::test::tcp_serve_mode): a TCP server on 127.0.0.1 that a test can
// kill with SIGKILL, as a crash or an OOM kill would.

/// A child process; killed and reaped on destruction.
struct child_process {
  pid_t pid = -1;
  int out = -1;  ///< the read end of its stdout

  child_process() = default;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() {
    if (out >= 0) ::close(out);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

/// Starts the server child: it prints "ready <port>" once it listens on
/// `port` (0: any free port), then serves the serving_side tasks and
/// "announced_wait" (prints "running", then waits).
inline void spawn_tcp_server(child_process& child, std::uint16_t port = 0) {
  int out[2];
  // Close-on-exec: a later child must not hold this one's pipe.
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  std::vector<std::string> env_text{"PATIO_TEST_TCP_SERVE=1"};
  if (port != 0) env_text.push_back("PATIO_TEST_TCP_SERVE_PORT=" + std::to_string(port));
  for (char** e = environ; e && *e; ++e) env_text.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), nullptr};
  const int spawned = ::posix_spawn(&child.pid, self.c_str(), &actions, nullptr, argv, envp.data());
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  child.out = out[0];
  REQUIRE(spawned == 0);
}

/// The next line from `in`, without its newline; `buffer` keeps what came
/// after it.
inline asio::awaitable<std::string> read_line(asio::posix::stream_descriptor& in, std::string& buffer) {
  const auto n = co_await asio::async_read_until(in, asio::dynamic_buffer(buffer), '\n', asio::use_awaitable);
  auto line = buffer.substr(0, n - 1);
  buffer.erase(0, n);
  co_return line;
}

}  // namespace patio::test::tcp
