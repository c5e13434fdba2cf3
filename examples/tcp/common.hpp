// SPDX-License-Identifier: MIT
// What the four TCP examples share, so that each example shows only its
// patio calls: the tasks the workers offer, the command line (addresses, key,
// TLS files, timeout), printing, running the calls, stopping at a signal.
#pragma once

#include <patio/patio.hpp>

#include <asio/ip/address.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace example {

// ---- the tasks ------------------------------------------------------------

/// Like patio's `def mul(*args)`: the product of every positional argument.
inline std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

/// a / b. Dividing by zero throws: the caller gets a patio::remote_error
/// naming std::domain_error.
inline double divide(double a, double b) {
  if (b == 0) throw std::domain_error("division by zero");
  return a / b;
}

/// A coroutine task: waits `seconds` without holding a thread, returns them.
inline asio::awaitable<double> sleep_for(double seconds) {
  if (!(seconds >= 0 && seconds <= 86'400)) throw std::domain_error("sleep: seconds must be in [0, 86400]");
  const std::chrono::duration<double> duration{seconds};
  asio::steady_timer timer{co_await asio::this_coro::executor,
                           std::chrono::duration_cast<asio::steady_timer::duration>(duration)};
  co_await timer.async_wait(asio::use_awaitable);
  co_return seconds;
}

// ---- printing -------------------------------------------------------------

/// argv[0] without its directory.
inline std::string_view base_name(std::string_view path) { return path.substr(path.rfind('/') + 1); }

/// Prints "program: message" on stderr. @returns 1, the exit status of a failure.
inline int fail(std::string_view program, std::string_view message) {
  fmt::print(stderr, "{}: {}\n", base_name(program), message);
  return 1;
}

/// Prints one line on stdout and flushes it: scripts wait for these lines.
template <class... Args>
void print_line(fmt::format_string<Args...> format, Args&&... args) {
  fmt::print("{}\n", fmt::format(format, std::forward<Args>(args)...));
  std::fflush(stdout);
}

/// Prints results as patio's examples do: [0, 1, 4, 9].
inline void print_list(const std::vector<std::int64_t>& results) { print_line("{}", results); }

// ---- the command line -----------------------------------------------------

/// A HOST:PORT of the command line; IPv6 addresses go in brackets: [::1]:15383.
struct address {
  std::string host;
  std::uint16_t port = patio::default_port;
};

/// Parses HOST, HOST:PORT, [IPv6] or [IPv6]:PORT. @returns nullopt if malformed.
inline std::optional<address> parse_address(std::string_view text) {
  address a;
  std::string_view port;
  bool has_port = false;
  if (text.starts_with('[')) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    a.host = text.substr(1, close - 1);
    const auto rest = text.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return std::nullopt;
    has_port = !rest.empty();
    if (has_port) port = rest.substr(1);
  } else {
    const auto colon = text.find(':');
    if (colon != text.rfind(':')) return std::nullopt;  // a bare IPv6 address: brackets needed
    a.host = text.substr(0, colon);
    has_port = colon != std::string_view::npos;
    if (has_port) port = text.substr(colon + 1);
  }
  if (a.host.empty()) return std::nullopt;
  if (has_port) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65'535) return std::nullopt;
    a.port = static_cast<std::uint16_t>(value);
  }
  return a;
}

inline bool is_ip_address(const std::string& host) {
  std::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

/// Which end of a TCP connection a program is; decides the address flag and
/// what the TLS flags mean.
enum class side { listens, connects };

/// What a program's command line offers.
struct program {
  side end;
  std::string_view summary;                       ///< one line for --help
  std::optional<std::chrono::seconds> timeout{};  ///< --timeout's default; none: no such flag
  std::string_view timeout_help = "how long to wait";
};

/// The parsed command line.
struct arguments {
  std::string name;                ///< argv[0], for messages
  std::vector<address> addresses;  ///< --listen or --connect
  patio::tcp_options tcp;          ///< --key and the --tls-* files
  std::chrono::seconds timeout{};  ///< --timeout
};

/// The one-line synopsis of `p`'s command line.
inline std::string usage(std::string_view name, const program& p) {
  const bool server = p.end == side::listens;
  return fmt::format(
      "usage: {} [{} HOST:PORT]... [--key KEY] [--patio-compat] {}{}", name, server ? "--listen" : "--connect",
      server ? "[--tls-cert FILE --tls-key FILE [--tls-ca FILE]]" : "[--tls-ca FILE] [--tls-cert FILE --tls-key FILE]",
      p.timeout ? " [--timeout SECONDS]" : "");
}

inline void print_help(std::string_view name, const program& p) {
  fmt::print("{}\n{}\n\n", usage(name, p), p.summary);
  if (p.end == side::listens)
    fmt::print(
        "  --listen HOST:PORT   an IP address and port to listen on, repeatable; IPv6 as [::1]:15383\n"
        "                       (default 0.0.0.0:{})\n"
        "  --key KEY            the shared key both sides must know (default: none)\n"
        "  --patio-compat       speak Python patio 0.1.4's protocol (pickle, its key handshake)\n"
        "  --tls-cert FILE      speak TLS with this certificate chain (PEM) ...\n"
        "  --tls-key FILE       ... and its private key (PEM)\n"
        "  --tls-ca FILE        require client certificates signed by this CA (mutual TLS)\n",
        patio::default_port);
  else
    fmt::print(
        "  --connect HOST:PORT  a server to connect to, repeatable; IPv6 as [::1]:15383\n"
        "                       (default 127.0.0.1:{})\n"
        "  --key KEY            the shared key both sides must know (default: none)\n"
        "  --patio-compat       speak Python patio 0.1.4's protocol (pickle, its key handshake)\n"
        "  --tls-ca FILE        speak TLS; trust servers signed by this CA and named HOST\n"
        "                       (the host of the first --connect)\n"
        "  --tls-cert FILE      present this client certificate (PEM; mutual TLS) ...\n"
        "  --tls-key FILE       ... with its private key (PEM)\n",
        patio::default_port);
  if (p.timeout) fmt::print("  --timeout SECONDS    {} (default {})\n", p.timeout_help, p.timeout->count());
}

/// Parses the command line as `p` says. --help prints the usage and exits 0;
/// a bad flag prints what is wrong and the usage on stderr, and exits 2.
inline arguments parse_command_line(int argc, char** argv, const program& p) {
  arguments args{.name = std::string(base_name(argv[0])),
                 .addresses = {},
                 .tcp = {},
                 .timeout = p.timeout.value_or(std::chrono::seconds{})};
  const auto usage_error = [&](std::string_view message) {
    fail(args.name, message);
    fmt::print(stderr, "{}\n(--help for more)\n", usage(args.name, p));
    std::exit(2);
  };
  const std::string_view address_flag = p.end == side::listens ? "--listen" : "--connect";
  std::string cert, key, ca;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      print_help(args.name, p);
      std::exit(0);
    }
    if (flag == "--patio-compat") {
      args.tcp.protocol = patio::tcp_protocol::patio_compat;
      continue;
    }
    const bool known = flag == address_flag || flag == "--key" || flag == "--tls-cert" || flag == "--tls-key" ||
                       flag == "--tls-ca" || (flag == "--timeout" && p.timeout);
    if (!known) usage_error(fmt::format("unknown flag {}", flag));
    if (i + 1 == argc) usage_error(fmt::format("{} needs a value", flag));
    const std::string_view value = argv[++i];
    if (flag == address_flag) {
      const auto a = parse_address(value);
      if (!a) usage_error(fmt::format("bad address {}: use HOST:PORT, or [IPv6]:PORT", value));
      if (p.end == side::listens && !is_ip_address(a->host))
        usage_error(fmt::format("--listen needs an IP address, not {}", a->host));
      args.addresses.push_back(*a);
    } else if (flag == "--key") {
      args.tcp.key = value;
    } else if (flag == "--tls-cert") {
      cert = value;
    } else if (flag == "--tls-key") {
      key = value;
    } else if (flag == "--tls-ca") {
      ca = value;
    } else {
      int seconds = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
      if (ec != std::errc{} || end != value.data() + value.size() || seconds <= 0)
        usage_error(fmt::format("bad --timeout {}: a whole number of seconds, at least 1", value));
      args.timeout = std::chrono::seconds{seconds};
    }
  }
  if (args.tcp.protocol == patio::tcp_protocol::patio_compat && args.tcp.key.size() > 32)
    usage_error("with --patio-compat, --key holds at most 32 bytes (blake2s's limit)");
  if (args.addresses.empty()) args.addresses.push_back({p.end == side::listens ? "0.0.0.0" : "127.0.0.1"});

  if (!cert.empty() || !key.empty() || !ca.empty()) {
    if (cert.empty() != key.empty()) usage_error("--tls-cert and --tls-key go together");
    patio::tls_options tls{.certificate_chain_file = cert, .private_key_file = key, .ca_file = ca};
    // A client checks each server's certificate against the host it
    // connects to (tls_options::server_name left empty).
    if (p.end == side::listens) {
      if (cert.empty()) usage_error("a TLS server needs --tls-cert and --tls-key");
      tls.require_client_certificate = !ca.empty();
    }
    args.tcp.tls = tls;
  }
  return args;
}

// ---- running --------------------------------------------------------------

namespace detail {
inline asio::awaitable<void> stop_waiting_when_closed(patio::tcp_broker_base& broker,
                                                      std::shared_ptr<asio::signal_set> signals) {
  co_await broker.join();
  signals->cancel();
}

inline asio::awaitable<std::string> run_then_close(asio::awaitable<void> calls, patio::tcp_broker_base& broker,
                                                   std::string no_route) {
  std::string failure;
  try {
    co_await std::move(calls);
  } catch (const patio::no_route_error&) {
    failure = std::move(no_route);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  co_await broker.close();
  co_return failure;
}
}  // namespace detail

/// Closes `broker` at SIGINT or SIGTERM, so that io.run() returns and the
/// program exits 0. Call it before saying the program is ready: a signal
/// that comes earlier still kills it.
inline void close_on_signal(asio::io_context& io, patio::tcp_broker_base& broker) {
  auto signals = std::make_shared<asio::signal_set>(io, SIGINT, SIGTERM);
  signals->async_wait([&io, &broker](std::error_code ec, int) {
    if (!ec) asio::co_spawn(io, broker.close(), asio::detached);
  });
  asio::co_spawn(io, detail::stop_waiting_when_closed(broker, signals), asio::detached);
}

/// Runs `calls` on `io` to their end, then closes `broker`.
/// @returns the exit status: 0 if the calls succeeded; otherwise 1, after
/// one line on stderr: `no_route` if no peer offered the function before
/// the timeout, the error's message for any other failure.
inline int run_calls(asio::io_context& io, patio::tcp_broker_base& broker, asio::awaitable<void> calls,
                     const arguments& args, std::string no_route) {
  std::string failure;
  asio::co_spawn(io, detail::run_then_close(std::move(calls), broker, std::move(no_route)),
                 [&failure](std::exception_ptr e, std::string f) {
                   if (e) std::rethrow_exception(e);
                   failure = std::move(f);
                 });
  io.run();
  return failure.empty() ? 0 : fail(args.name, failure);
}

}  // namespace example

/// Formats an address as the command line spells it: 127.0.0.1:15383, [::1]:15383.
template <>
struct fmt::formatter<example::address> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const example::address& a, FormatContext& ctx) const {
    const bool v6 = a.host.find(':') != std::string::npos;
    return fmt::formatter<std::string_view>::format(
        v6 ? fmt::format("[{}]:{}", a.host, a.port) : fmt::format("{}:{}", a.host, a.port), ctx);
  }
};
