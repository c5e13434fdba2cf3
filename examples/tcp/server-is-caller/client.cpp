// SPDX-License-Identifier: MIT
// patio's examples/tcp/server-is-caller, the client: it connects to the
// server and executes mul, div and sleep (on a thread pool) for it. It runs
// until SIGINT or SIGTERM, reconnecting whenever the server goes away. Built as
// patio-example-serving-client.
//
//   patio-example-serving-client [--connect HOST:PORT]... [--key KEY] [--patio-compat]
//                                [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
#include "common.hpp"

#include <patio/patio.hpp>

int main(int argc, char** argv) try {
  const auto args = example::parse_command_line(
      argc, argv,
      {.end = example::side::connects, .summary = "Executes mul, div and sleep for a server until stopped."});

  patio::registry rpc{{.project = "patio-example", .auto_naming = false}};
  rpc.add("mul", example::mul);
  rpc.add("div", example::divide);
  rpc.add("sleep", example::sleep_for);
  patio::thread_pool_executor executor{rpc, 4};

  asio::io_context io;
  patio::tcp_client_broker client{io.get_executor(), executor, args.tcp};
  example::close_on_signal(io, client);
  for (const auto& [host, port] : args.addresses) client.connect(host, port);  // returns at once; reconnects

  io.run();  // until a signal closes the broker
  return 0;
} catch (const std::exception& e) {
  return example::fail(argv[0], e.what());
}
