// SPDX-License-Identifier: MIT
// patio's examples/tcp/client-is-caller, the client: it only calls (a null
// executor). It connects to the server, calls mul(i, i) for i in 0..9 at
// once, prints [0, 1, 4, ..., 81] and exits. Installed as
// patio-example-client.
//
//   patio-example-client [--connect HOST:PORT]... [--key KEY] [--patio-compat] [--tls-ca FILE]
//                        [--tls-cert FILE --tls-key FILE]
//                        [--timeout SECONDS]
#include "common.hpp"

#include <patio/patio.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

// Each call waits up to `timeout` for a server to connect and answer.
asio::awaitable<void> call_mul(patio::tcp_client_broker& client, std::chrono::seconds timeout) {
  std::vector<asio::awaitable<std::int64_t>> calls;
  for (std::int64_t i = 0; i < 10; ++i) calls.push_back(client.call<std::int64_t>({.timeout = timeout}, "mul", i, i));
  example::print_list(co_await patio::gather(std::move(calls)));
}

int main(int argc, char** argv) try {
  const auto args = example::parse_command_line(argc, argv,
                                                {.end = example::side::connects,
                                                 .summary = "Calls mul(i, i) for i in 0..9 on a server; prints them.",
                                                 .timeout = 5s,
                                                 .timeout_help = "give up if no server answers within"});

  patio::registry rpc;
  patio::null_executor executor{rpc};  // offers nothing: it only calls

  asio::io_context io;
  patio::tcp_client_broker client{io.get_executor(), executor, args.tcp};
  for (const auto& [host, port] : args.addresses) client.connect(host, port);  // returns at once; reconnects

  return example::run_calls(io, client, call_mul(client, args.timeout), args,
                            fmt::format("no server reachable at {} within {} s (running? same --key and TLS?)",
                                        fmt::join(args.addresses, ", "), args.timeout.count()));
} catch (const std::exception& e) {
  return example::fail(argv[0], e.what());
}
