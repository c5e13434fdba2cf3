// SPDX-License-Identifier: MIT
// Writes the seed corpora of the fuzz targets: valid frames, a genuine
// handshake transcript, valid REQUEST, RESPONSE, ERROR and DISCOVER payloads.
// Usage: make_seeds DIR (writes DIR/<target>/<name>). The committed seeds in
// fuzz/corpus/ were made with it.
#include <patio/codec.hpp>
#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>
#include <patio/detail/invocation.hpp>
#include <patio/detail/messages.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

namespace frame = patio::detail::frame;
namespace hs = patio::detail::handshake;
namespace messages = patio::detail::messages;

std::filesystem::path root;

void write(const std::string& target, const std::string& name, const std::string& bytes) {
  std::filesystem::create_directories(root / target);
  std::ofstream(root / target / name, std::ios::binary) << bytes;
}

std::string payload(const std::string& f) { return f.substr(frame::header_size); }

template <class Side>
std::string feed(Side& side, const std::string& f) {
  frame::header h;
  frame::decode(reinterpret_cast<const unsigned char*>(f.data()), hs::max_payload, false, h);
  return side.on_frame(h, payload(f)).send;
}

template <class... A>
std::string request(const std::string& name, A&&... args) {
  auto inv = patio::detail::make_invocation<patio::value>(std::forward<A>(args)...);
  inv->name = name;
  return messages::request_frame(1, *inv, 5.0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  root = argv[1];

  // A handshake: its four messages, each a frame.
  hs::server server("key");
  hs::client client("key");
  const auto digest = server.start();
  const auto req = feed(client, digest);
  const auto resp = feed(server, req);
  const auto ok = feed(client, resp);
  const std::string transcript = digest + req + resp + ok;

  // fuzz_frame: two configuration bytes (limit, when authenticated), then a stream.
  write("fuzz_frame", "handshake", std::string("\x03\x02", 2) + transcript);
  const auto call = request("concat", 1, "x");
  const auto discover = messages::discover_request_frame() + messages::discover_response_frame({"a", "b"});
  write("fuzz_frame", "after-auth", std::string("\x03\x00", 2) + discover + call);
  write("fuzz_frame", "cancel", std::string("\x02\x00", 2) + messages::cancel_frame(9));

  // fuzz_handshake: mode 0 server, 1 client, 2/3 structured exchange.
  write("fuzz_handshake", "server", std::string("\x00", 1) + req + ok);
  write("fuzz_handshake", "client", std::string("\x01", 1) + digest + resp);
  write("fuzz_handshake", "exchange", std::string("\x02\x00\x00", 3));
  write("fuzz_handshake", "exchange-wrong-key", std::string("\x06\x00\x00", 3));
  write("fuzz_handshake", "exchange-flip", std::string("\x02\x01\x01\x00\x0c\x10", 6));
  write("fuzz_handshake", "exchange-payload", std::string("\x02\x02\x06\x03", 4) + "\xc4\x01x");

  // fuzz_messages: mode byte, then the payload.
  const auto m = [](char mode, const std::string& f) { return std::string(1, mode) + payload(f); };
  write("fuzz_messages", "request-concat", m(0, call));
  write("fuzz_messages", "request-sum", m(0, request("sum", std::vector<double>{1.5, 2})));
  write("fuzz_messages", "request-mul", m(0, request("mul", patio::varargs<std::int64_t>{2, 3, 7})));
  write("fuzz_messages", "request-optionals", m(0, request("optionals", "s", 4)));
  write("fuzz_messages", "request-greet", m(0, request("greet", "Ann", patio::kwargs{{"times", 2}})));
  write("fuzz_messages", "request-echo",
        m(0, request("echo", std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"", {}}})));
  write("fuzz_messages", "request-count",
        m(0, request("count", patio::bytes{std::byte{1}}, std::map<std::string, std::vector<std::int64_t>>{},
                     std::tuple<bool, float>{true, 1.5f})));
  write("fuzz_messages", "request-nothing", m(0, request("nothing", 3)));
  write("fuzz_messages", "request-later", m(0, request("later", "a", "b", "c")));
  write("fuzz_messages", "request-later-nothing", m(0, request("later_nothing", patio::kwargs{{"k", 1}})));
  {
    msgpack::sbuffer p;
    msgpack::packer<msgpack::sbuffer> pk(p);
    pk.pack_map(3);
    pk.pack("x"), pk.pack(1.0), pk.pack("y"), pk.pack(2.0), pk.pack("label"), pk.pack("p");
    auto inv = patio::detail::make_invocation<patio::value>(patio::value(msgpack::unpack(p.data(), p.size()).get()));
    inv->name = "scale";
    write("fuzz_messages", "request-scale", m(0, messages::request_frame(1, *inv, std::nullopt)));
    write("fuzz_messages", "response-point", m(2, messages::response_frame(1, p)));
  }
  write("fuzz_messages", "request-by-pick", std::string("\x01\x05", 2) + payload(request("?", "s", 1, "t")));
  for (const auto& [name, v] : std::vector<std::pair<std::string, patio::value>>{
           {"int", patio::value(42)},
           {"str", patio::value(std::string("hi"))},
           {"list", patio::value(std::vector<double>{1, 2.5})},
           {"tuple", patio::value(std::tuple<int, std::string>{1, "a"})}}) {
    msgpack::sbuffer p;
    msgpack::pack(p, v);
    write("fuzz_messages", "response-" + name, m(2, messages::response_frame(1, p)));
  }
  write("fuzz_messages", "error-remote", m(3, messages::error_frame(1, {patio::errc::remote_error, "E", "boom"})));
  write("fuzz_messages", "error-args", m(3, messages::error_frame(1, {patio::errc::bad_arguments, "", "bad"})));
  write("fuzz_messages", "discover", m(4, messages::discover_response_frame({"concat", "sum", ""})));
  return 0;
}
