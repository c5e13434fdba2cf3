// SPDX-License-Identifier: MIT
// patio's examples/tcp/client-is-caller, the server: it executes mul, div and
// sleep (on a thread pool) for every client that connects, until SIGINT or
// SIGTERM. Installed as patio-example-server.
//
//   patio-example-server [--listen HOST:PORT]... [--key KEY] [--patio-compat]
//                        [--tls-cert FILE --tls-key FILE [--tls-ca FILE]]
#include "common.hpp"

#include <patio/patio.hpp>

#include <fmt/format.h>

#include <vector>

int main(int argc, char** argv) try {
  const auto args = example::parse_command_line(
      argc, argv, {.end = example::side::listens, .summary = "Executes mul, div and sleep for clients until stopped."});

  patio::registry rpc{{.project = "patio-example", .auto_naming = false}};
  rpc.add("mul", example::mul);
  rpc.add("div", example::divide);
  rpc.add("sleep", example::sleep_for);
  patio::thread_pool_executor executor{rpc, 4};

  asio::io_context io;
  patio::tcp_server_broker server{io.get_executor(), executor, args.tcp};
  example::close_on_signal(io, server);

  std::vector<example::address> bound;
  for (const auto& [host, port] : args.addresses) bound.push_back({host, server.listen(host, port)});
  example::print_line("serving mul, div, sleep on {}", fmt::join(bound, ", "));

  io.run();  // until a signal closes the broker
  return 0;
} catch (const std::exception& e) {
  return example::fail(argv[0], e.what());
}
