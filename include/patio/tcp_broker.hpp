// SPDX-License-Identifier: MIT
#pragma once

#include <patio/call_options.hpp>
#include <patio/detail/calls.hpp>
#include <patio/executor.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace patio {

class tcp_broker_base;

/// @cond internals
namespace detail {
class tcp_core;

/// For tests: requests on connections this broker opens or accepts from now
/// on are numbered from `serial` + 1 (so a test can cross the wrap).
void set_last_serial(tcp_broker_base& broker, std::uint32_t serial);
}  // namespace detail
/// @endcond

/// patio's default port.
inline constexpr std::uint16_t default_port = 15383;

/// TLS for a TCP broker (OpenSSL through asio::ssl; TLS 1.2 or later).
/// Files are PEM.
struct tls_options {
  /// Server: its certificate chain and key (required). Client: its own, for
  /// mutual TLS (optional).
  std::string certificate_chain_file{};
  std::string private_key_file{};  ///< the key of certificate_chain_file

  /// The CA that signed the peer: a client verifies the server against it
  /// (empty: the system's default CAs); a server that requires client
  /// certificates verifies them against it.
  std::string ca_file{};

  /// Server: refuse clients without a certificate signed by ca_file.
  bool require_client_certificate = false;

  /// Client: the name the server's certificate must carry (also sent as
  /// SNI). Empty: the host given to connect(), as a browser checks the host
  /// in its URL. The test certificates name localhost, 127.0.0.1 and ::1.
  std::string server_name{};

  /// Client: false skips the name check (the chain is still verified
  /// against ca_file). Only for certificates that name no usable host.
  bool verify_server_name = true;
};

/// What a TCP broker speaks on its connections.
enum class tcp_protocol : std::uint8_t {
  /// patio-cpp's: MessagePack payloads, an HMAC-SHA256 handshake both ways,
  /// CANCEL of abandoned calls (docs/protocol.md).
  native,
  /// Python patio 0.1.4's, byte for byte: pickled payloads and its blake2s
  /// key handshake, so that Python patio peers call this side and are called
  /// by it (docs/interop.md). Its handshake can be replayed by whoever
  /// records one (this side refuses a replayed answer, a Python server does
  /// not): use TLS with it off loopback. An abandoned call sends no CANCEL.
  patio_compat,
};

/// Options of the TCP brokers. Defaults follow patio where it has one.
struct tcp_options {
  /// The shared key both sides prove they know (HMAC-SHA256 challenge and
  /// response, both ways). Empty by default, as in patio.
  std::string key{};

  /// How long a new connection may take to authenticate before it is closed.
  std::chrono::milliseconds handshake_timeout{5'000};

  /// The largest payload accepted after authentication; a larger frame
  /// closes the connection.
  std::size_t max_payload = 16 * 1024 * 1024;

  /// Requests from one peer that run on this side at once. At the limit this
  /// side stops reading from that peer until one finishes, so a flood waits
  /// in the peer's socket buffers rather than in this side's memory. (A task
  /// that itself calls back over the same connection counts against it.)
  std::size_t max_in_flight = 1024;

  /// Bytes queued for sending on one connection. A peer that stops reading
  /// until more than this waits for it is disconnected (its calls fail with
  /// connection_error), so it cannot make this side buffer without bound.
  /// At least max_payload plus a frame header.
  std::size_t max_write_buffer = 64 * 1024 * 1024;

  /// Client: first delay before reconnecting (patio: 1 s); it doubles after
  /// each failed attempt up to max_reconnect_delay, and starts over after a
  /// connection that authenticated.
  std::chrono::milliseconds reconnect_delay{1'000};
  std::chrono::milliseconds max_reconnect_delay{30'000};  ///< the longest delay between attempts

  /// TLS on every connection when set; plain TCP otherwise. The shared key
  /// is checked inside TLS as well.
  std::optional<tls_options> tls{};

  /// The wire protocol. patio_compat takes a key of at most 32 bytes.
  tcp_protocol protocol = tcp_protocol::native;
};

/// The calling and serving state shared by both TCP brokers.
class tcp_broker_base {
 public:
  tcp_broker_base(const tcp_broker_base&) = delete;
  tcp_broker_base& operator=(const tcp_broker_base&) = delete;

  /// Stops: closes listeners and connections (calls in flight on them fail
  /// with connection_error, later calls with closed_error), stops
  /// reconnecting, shuts the executor down as patio does, wakes join().
  /// Idempotent.
  /// @returns an awaitable that completes once closed.
  /// @par Cancellation
  /// Not meant to be cancelled: await it to its end.
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> close();

  /// Completes when the broker is closed: "serve until stopped".
  /// @returns an awaitable that completes on close().
  /// @par Cancellation
  /// Cancelling the awaiting coroutine ends the wait with operation_aborted.
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> join();

  /// @returns how many authenticated connections whose functions are known
  /// there are now.
  [[nodiscard]] std::size_t connections() const;

  /// @returns the executor that runs the tasks peers call.
  [[nodiscard]] patio::executor& executor() const noexcept { return executor_; }
  /// @returns the executor's registry.
  [[nodiscard]] patio::registry& registry() const noexcept { return executor_.registry(); }

  /// Part of the calling interface (call() uses it): sends `inv` round-robin
  /// to a live connection that offers its function, waiting for one until
  /// the call's deadline (without a timeout, as long as it takes).
  /// @param inv     the call, named.
  /// @param options per-call options (call_options).
  /// @returns an awaitable that completes when the reply arrives.
  /// @throws patio::closed_error if the broker is closed;
  /// patio::no_route_error if no peer offered the function by the deadline;
  /// patio::connection_error if the connection goes away; the task's error.
  /// @par Cancellation
  /// As call().
  /// @par Object lifetimes
  /// The broker must outlive the awaitable.
  asio::awaitable<void> dispatch(std::shared_ptr<detail::invocation> inv, call_options options);

 protected:
  /// Locks the executor's registry and sets the executor up.
  /// @param io       where connections run.
  /// @param executor runs what peers call; must outlive the broker.
  /// @param options  authentication, limits, reconnection, TLS.
  /// @param server   whether this is the listening side.
  /// @throws std::invalid_argument for options that cannot work (TLS server
  /// without a certificate, max_in_flight 0, max_write_buffer < max_payload).
  tcp_broker_base(asio::any_io_executor io, patio::executor& executor, tcp_options options, bool server);
  /// Closes without waiting, and shuts the executor down.
  ~tcp_broker_base();

  patio::executor& executor_;               ///< runs what peers call
  std::shared_ptr<detail::tcp_core> core_;  ///< connections, shared with their coroutines

 private:
  friend void detail::set_last_serial(tcp_broker_base& broker, std::uint32_t serial);
};

/// Listens for TCP connections (patio's server broker). Either side of a
/// connection may call and execute: what this side runs is up to its
/// executor (a null executor only calls).
///
/// @par Object lifetimes
/// The executor (and its registry) must outlive the broker; destroying the
/// broker closes it.
class tcp_server_broker : public tcp_broker_base, public detail::calls<tcp_server_broker> {
 public:
  /// Locks the executor's registry and sets the executor up; listens only
  /// in listen().
  /// @param io       where connections run (e.g. io_context::get_executor()).
  /// @param executor runs what peers call; must outlive the broker.
  /// @param options  authentication, limits, TLS (tcp_options).
  /// @throws std::invalid_argument for options that cannot work.
  tcp_server_broker(asio::any_io_executor io, patio::executor& executor, tcp_options options = {});

  /// Listens on `address` (IPv4 or IPv6) and `port`; may be called for
  /// several addresses.
  /// @param address an IP address, not a host name ("::" for IPv6).
  /// @param port    the port; 0 for one the system picks.
  /// @returns the bound port (useful with port 0).
  /// @throws std::system_error if `address` is not an IP address or it
  /// cannot bind.
  std::uint16_t listen(std::string_view address = "0.0.0.0", std::uint16_t port = default_port);

  using tcp_broker_base::dispatch;
  using tcp_broker_base::registry;
};

/// Connects to TCP servers (patio's client broker), and keeps reconnecting
/// each until close().
///
/// @par Object lifetimes
/// The executor (and its registry) must outlive the broker; destroying the
/// broker closes it.
class tcp_client_broker : public tcp_broker_base, public detail::calls<tcp_client_broker> {
 public:
  /// Locks the executor's registry and sets the executor up; connects only
  /// in connect().
  /// @param io       where connections run (e.g. io_context::get_executor()).
  /// @param executor runs what servers call back; must outlive the broker.
  /// @param options  authentication, limits, reconnection, TLS (tcp_options).
  /// @throws std::invalid_argument for options that cannot work.
  tcp_client_broker(asio::any_io_executor io, patio::executor& executor, tcp_options options = {});

  /// Starts connecting to `host`:`port`, reconnecting after a refused or
  /// dropped connection. Returns at once; calls wait for a route.
  /// @param host a host name or IP address.
  /// @param port the server's port.
  void connect(std::string host, std::uint16_t port = default_port);

  using tcp_broker_base::dispatch;
  using tcp_broker_base::registry;
};

}  // namespace patio
