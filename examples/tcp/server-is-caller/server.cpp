// SPDX-License-Identifier: MIT
// patio's examples/tcp/server-is-caller, the server: the reverse roles. It
// executes nothing (a null executor); it waits for a client that offers mul,
// calls mul(i, i) for i in 0..9 on it, prints [0, 1, 4, ..., 81] and exits.
// Built as patio-example-calling-server.
//
//   patio-example-calling-server [--listen HOST:PORT]... [--key KEY] [--patio-compat] [--timeout SECONDS]
//                                [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]
#include "common.hpp"

#include <patio/patio.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

// Each call waits up to `timeout` for a client offering mul to connect.
asio::awaitable<void> call_mul(patio::tcp_server_broker& server, std::chrono::seconds timeout) {
  std::vector<asio::awaitable<std::int64_t>> calls;
  for (std::int64_t i = 0; i < 10; ++i) calls.push_back(server.call<std::int64_t>({.timeout = timeout}, "mul", i, i));
  example::print_list(co_await patio::gather(std::move(calls)));
}

int main(int argc, char** argv) try {
  const auto args = example::parse_command_line(
      argc, argv,
      {.end = example::side::listens,
       .summary = "Waits for a client offering mul, calls mul(i, i) for i in 0..9 on it, prints them.",
       .timeout = 30s,
       .timeout_help = "give up if no client offering mul connects within"});

  patio::registry rpc;
  patio::null_executor executor{rpc};  // offers nothing: it only calls

  asio::io_context io;
  patio::tcp_server_broker server{io.get_executor(), executor, args.tcp};
  std::vector<example::address> bound;
  for (const auto& [host, port] : args.addresses) bound.push_back({host, server.listen(host, port)});
  example::print_line("waiting for a client offering mul on {}", fmt::join(bound, ", "));

  return example::run_calls(
      io, server, call_mul(server, args.timeout), args,
      fmt::format("no client offering mul connected within {} s (same --key and TLS?)", args.timeout.count()));
} catch (const std::exception& e) {
  return example::fail(argv[0], e.what());
}
