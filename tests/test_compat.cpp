// SPDX-License-Identifier: MIT
// Python patio 0.1.4's protocol (tcp_protocol::patio_compat) without a
// socket: blake2s, the key handshake, and the pickled call frames. The
// conversation with a real Python peer is in test_interop.cpp.
#include "support.hpp"

#include <patio/detail/compat.hpp>
#include <patio/detail/frame.hpp>
#include <patio/detail/pickle.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

namespace frame = patio::detail::frame;
namespace compat = patio::detail::compat;
namespace pk = patio::detail::pickle;
using step = patio::detail::handshake::step;

struct parsed {
  frame::header header;
  std::string payload;
};

parsed parse(const std::string& f) {
  REQUIRE(f.size() >= frame::header_size);
  parsed out;
  REQUIRE(frame::decode(reinterpret_cast<const unsigned char*>(f.data()), 1 << 20, true, out.header) ==
          frame::header_error::none);
  REQUIRE(out.header.payload_size == f.size() - frame::header_size);
  out.payload = f.substr(frame::header_size);
  return out;
}

template <class Side>
step feed(Side& side, const std::string& f) {
  const auto p = parse(f);
  return side.on_frame(p.header, p.payload);
}

std::string frame_of(frame::type t, std::string_view payload) {
  return frame::make(t, 0, payload.data(), payload.size());
}

std::string hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string range_bytes(std::size_t n, std::size_t repeat = 1) {
  std::string out;
  for (std::size_t r = 0; r < repeat; ++r)
    for (std::size_t i = 0; i < n; ++i) out += static_cast<char>(i);
  return out;
}

std::int64_t mul3(patio::varargs<std::int64_t> args) {
  std::int64_t p = 1;
  for (const auto a : args) p *= a;
  return p;
}

}  // namespace

TEST_CASE("blake2s matches RFC 7693 and Python's hashlib, keyed and salted", "[compat]") {
  // Expected values: hashlib.blake2s(message, key=..., salt=...).hexdigest().
  struct vector {
    std::string key, salt, message, want;
  };
  const vector vectors[] = {
      {"", "", "abc", "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"},  // RFC 7693 B
      {"", "", "", "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9"},
      {"secret", "\x01\x02\x03\x04", "hello", "03e429190b5012ac0e441f4b64d2b5d9744ee39cc092d9d065706a8bd690aa92"},
      {"", "\x01\x02\x03\x04", "hello", "1061352c2969b7be30c239d40fc67e454d5b4ac95b7de49029cfa5159729a2a8"},
      {std::string(32, 'k'), "12345678", range_bytes(256, 3),
       "7e9f7fecb4c2b0541f83912662e197e6bbf7b3192a655297627633ebe1aeaba1"},
      {"", "", range_bytes(64), "56f34e8b96557e90c1f24b52d0c89d51086acf1b00f634cf1dde9233b8eaaa3e"},  // one block
      {"key", "", range_bytes(64), "ced78cba8387c7369a7c4097fa69a37692f1193abd1a490deb42db013a1423a8"},
  };
  for (const auto& v : vectors) {
    INFO("key " << hex(v.key) << " salt " << hex(v.salt) << " message of " << v.message.size() << " bytes");
    CHECK(hex(compat::blake2s(v.key, v.salt, v.message)) == v.want);
    CHECK(hex(compat::blake2s_reference(v.key, v.salt, v.message)) == v.want);
  }
  CHECK_THROWS_AS(compat::blake2s(std::string(33, 'k'), "", "x"), std::invalid_argument);
  CHECK_THROWS_AS(compat::blake2s("k", "123456789", "x"), std::invalid_argument);
  CHECK_THROWS_AS(compat::server(std::string(33, 'k')), std::invalid_argument);
  CHECK_THROWS_AS(compat::client(std::string(33, 'k')), std::invalid_argument);
}

TEST_CASE("the patio compat handshake succeeds with the same key, with or without one", "[compat]") {
  const std::string key = GENERATE(std::string(), std::string("secret"), std::string(32, 'x'));
  compat::server server(key);
  compat::client client(key);

  const auto digest = server.start();
  const auto d = parse(digest);
  CHECK(d.header.kind == frame::type::auth_digest);
  // The challenge is the pickle of 16 random bytes, as patio's uuid4().bytes.
  const auto token = pk::loads_object(d.payload);
  REQUIRE(token.is(pk::kind::bytes));
  CHECK(token.as_bytes().size() == compat::token_size);

  const auto answer = feed(client, digest);
  REQUIRE_FALSE(answer.failed);
  CHECK_FALSE(answer.done);
  const auto a = parse(answer.send);
  CHECK(a.header.kind == frame::type::auth_request);
  // (salt, digest, the challenge's payload as it came)
  const auto request = pk::loads_object(a.payload);
  REQUIRE(request.is(pk::kind::tuple));
  REQUIRE(request.items().size() == 3);
  CHECK(request.items()[0].as_bytes().size() == compat::salt_size);
  CHECK(request.items()[2].as_bytes() == d.payload);
  CHECK(request.items()[1].as_bytes() == compat::blake2s(key, request.items()[0].as_bytes(), d.payload));

  const auto ok = feed(server, answer.send);
  REQUIRE_FALSE(ok.failed);
  CHECK(ok.done);
  const auto o = parse(ok.send);
  CHECK(o.header.kind == frame::type::auth_ok);
  CHECK(pk::loads_object(o.payload).is(pk::kind::none));

  const auto done = feed(client, ok.send);
  CHECK(done.done);
  CHECK_FALSE(done.failed);
  CHECK(done.send.empty());
}

TEST_CASE("the patio compat handshake refuses a wrong key, a replay, garbage and disorder", "[compat]") {
  compat::server server("right");

  SECTION("a wrong key") {
    compat::client client("wrong");
    const auto r = feed(server, feed(client, server.start()).send);
    CHECK(r.failed);
    CHECK(r.send.empty());
    CHECK_THAT(r.reason, Catch::Contains("wrong key"));
  }
  SECTION("no key against a key") {
    compat::client client("");
    CHECK(feed(server, feed(client, server.start()).send).failed);
  }
  SECTION("an answer recorded from another connection (Python patio's server would take it)") {
    compat::server other("right");
    compat::client client("right");
    const auto recorded = feed(client, other.start()).send;
    const auto r = feed(server, recorded);
    CHECK(r.failed);
    CHECK_THAT(r.reason, Catch::Contains("replay"));
  }
  SECTION("a forged digest for our own challenge") {
    const auto challenge = parse(server.start()).payload;
    const auto forged = pk::object::tuple(
        {pk::object::bytes("salt"), pk::object::bytes(std::string(32, '\0')), pk::object::bytes(challenge)});
    CHECK(feed(server, frame_of(frame::type::auth_request, pk::dumps(forged))).failed);
  }
  SECTION("malformed answers") {
    const auto challenge = parse(server.start()).payload;
    const std::string bad_payloads[] = {
        "garbage",
        pk::dumps(pk::object::none()),
        pk::dumps(pk::object::tuple({pk::object::bytes("salt"), pk::object::bytes(challenge)})),
        pk::dumps(pk::object::tuple(
            {pk::object::str("salt"), pk::object::bytes(std::string(32, '\0')), pk::object::bytes(challenge)})),
        pk::dumps(pk::object::tuple({pk::object::bytes("a salt too long"), pk::object::bytes(std::string(32, '\0')),
                                     pk::object::bytes(challenge)})),
        pk::dumps(pk::object::tuple(
            {pk::object::bytes("salt"), pk::object::bytes(std::string(31, '\0')), pk::object::bytes(challenge)})),
    };
    for (const auto& payload : bad_payloads) {
      compat::server fresh("right");
      const auto r = feed(fresh, frame_of(frame::type::auth_request, payload));
      CHECK(r.failed);
      CHECK_THAT(r.reason, Catch::Contains("malformed") || Catch::Contains("another challenge"));
    }
  }
  SECTION("out of order") {
    CHECK(feed(server, frame_of(frame::type::request, pk::dumps(pk::object::none()))).failed);
    // A failed server stays failed.
    compat::client client("right");
    CHECK(feed(server, feed(client, server.start()).send).failed);

    compat::client c2("right");
    CHECK(feed(c2, frame_of(frame::type::auth_ok, pk::dumps(pk::object::none()))).failed);
    compat::client c3("right");
    CHECK(feed(c3, frame_of(frame::type::auth_digest, "not a pickle")).failed);
    compat::client c4("right");
    CHECK(feed(c4, frame_of(frame::type::auth_digest, pk::dumps(pk::object::str("not bytes")))).failed);
    compat::client c5("right");
    REQUIRE_FALSE(feed(c5, server.start()).failed);
    CHECK(feed(c5, frame_of(frame::type::auth_digest, pk::dumps(pk::object::none()))).failed);
  }
}

TEST_CASE("a call crosses pickled REQUEST and RESPONSE frames without a socket", "[compat]") {
  auto caller = patio::detail::make_invocation<std::int64_t>(2, 3, 7);
  caller->name = "mul";
  std::string request;
  compat::append_request_frame(request, 42, *caller, 1.5);
  const auto r = parse(request);
  CHECK(r.header.kind == frame::type::request);
  CHECK(r.header.serial == 42);
  // It is the pickle of patio.broker.tcp.broker.CallRequest.
  const auto call = pk::loads_call_request(r.payload);
  CHECK(call.func == "mul");
  CHECK(call.args == std::vector{pk::object::integer(2), pk::object::integer(3), pk::object::integer(7)});
  CHECK(call.kwargs.empty());
  REQUIRE(call.timeout);
  CHECK(*call.timeout == 1.5);

  const auto decoded = compat::decode_request(r.payload);
  REQUIRE_FALSE(decoded.invocation->error());
  CHECK(decoded.invocation->name == "mul");
  REQUIRE(decoded.timeout_seconds);
  CHECK(*decoded.timeout_seconds == 1.5);
  patio::detail::make_function(mul3)->invoke(*decoded.invocation);
  REQUIRE_FALSE(decoded.invocation->error());

  std::string response;
  compat::append_reply_frame(response, 42, *decoded.invocation, nullptr);
  const auto resp = parse(response);
  CHECK(resp.header.kind == frame::type::response);
  CHECK(resp.header.serial == 42);
  CHECK(pk::loads_object(resp.payload) == pk::object::integer(42));
  auto reply = compat::decode_reply(resp.header.kind, resp.payload);
  REQUIRE(reply.ok);
  caller->set_object_result(reply.result);
  CHECK(caller->take_result() == 42);

  SECTION("keyword arguments travel as the CallRequest's kwargs") {
    auto kw = patio::detail::make_invocation<std::int64_t>(2, patio::kwargs{{"scale", 7}});
    kw->name = "scaled";
    std::string out;
    compat::append_request_frame(out, 1, *kw, std::nullopt);
    const auto c = pk::loads_call_request(parse(out).payload);
    REQUIRE(c.kwargs.size() == 1);
    CHECK(c.kwargs[0].first == "scale");
    CHECK(c.kwargs[0].second == pk::object::integer(7));
    CHECK_FALSE(c.timeout);
  }
  SECTION("a task's error goes back as a builtin Python exception") {
    std::string out;
    compat::append_reply_frame(out, 42, *decoded.invocation,
                               std::make_exception_ptr(patio::bad_arguments_error("mul: argument 1: nope")));
    const auto e = parse(out);
    CHECK(e.header.kind == frame::type::error);
    const auto exc = pk::loads_exception(e.payload);
    CHECK(exc.type_name == "TypeError");
    CHECK(exc.message() == "mul: argument 1: nope");

    std::string runtime;
    compat::append_reply_frame(runtime, 43, *decoded.invocation,
                               std::make_exception_ptr(std::domain_error("out of the domain")));
    const auto rt = pk::loads_exception(parse(runtime).payload);
    CHECK(rt.type_name == "RuntimeError");
    CHECK(rt.message() == "out of the domain");
  }
  SECTION("a Python exception arrives as a remote error with its type and message") {
    const auto payload = pk::dumps(pk::exception{"ZeroDivisionError", {pk::object::str("division by zero")}});
    auto e = compat::decode_reply(frame::type::error, payload);
    CHECK_FALSE(e.ok);
    const auto thrown = patio::detail::exception_of(e.error);
    try {
      std::rethrow_exception(thrown);
    } catch (const patio::remote_error& x) {
      CHECK(x.type_name() == "ZeroDivisionError");
      CHECK_THAT(x.what(), Catch::Contains("division by zero"));
    }
  }
}

TEST_CASE("undecodable pickled requests are answered, not fatal, and replies are checked", "[compat]") {
  const std::string hostile[] = {
      "hello",
      "\x80\x05\x8c\x02os\x8c\x06system\x93.",                    // STACK_GLOBAL os.system
      std::string("\x80\x05", 2) + std::string(1000, ']') + ".",  // nested too deep
      pk::dumps(pk::call_request{"mul", {pk::object::integer(1)}, {}, std::nullopt}).substr(0, 20),  // truncated
      pk::dumps(pk::object::none()),                                                                 // not a call
  };
  for (const auto& payload : hostile) {
    INFO(hex(payload.substr(0, 40)));
    const auto r = compat::decode_request(payload);
    REQUIRE(r.invocation);
    REQUIRE(r.invocation->error());
    // ... and its ERROR frame is a loadable builtin exception.
    std::string out;
    compat::append_reply_frame(out, 7, *r.invocation, r.invocation->error());
    const auto exc = pk::loads_exception(parse(out).payload);
    CHECK(exc.type_name == "TypeError");
    CHECK_THAT(exc.message(), Catch::Contains("did not load"));
  }
  SECTION("a timeout Python could not mean") {
    const auto r = compat::decode_request(pk::dumps(pk::call_request{"mul", {}, {}, -1.0}));
    CHECK(r.invocation->error());
  }
  SECTION("an exception class of the peer's own is refused as Python's reader refuses it") {
    // pickle.dumps(CustomError("x")) with CustomError defined in __main__.
    using namespace std::string_literals;
    const std::string custom =
        "\x80\x05\x95\x24\x00\x00\x00\x00\x00\x00\x00\x8c\x08__main__\x94\x8c\x0b"
        "CustomError\x94\x93\x94\x8c\x01x\x94\x85\x94R\x94."s;
    CHECK_THROWS_AS(compat::decode_reply(frame::type::error, custom), patio::protocol_error);
  }
  SECTION("RESPONSE payloads") {
    CHECK_THROWS_AS(compat::decode_reply(frame::type::response, "garbage"), patio::protocol_error);
    CHECK_THROWS_AS(compat::decode_reply(frame::type::request, pk::dumps(pk::object::none())), patio::protocol_error);
  }
}

TEST_CASE("patio compat discovery frames carry pickled lists of names", "[compat]") {
  const auto request = parse(compat::discover_request_frame());
  CHECK(request.header.kind == frame::type::discover_request);
  CHECK(pk::loads_object(request.payload).is(pk::kind::none));

  const auto response = parse(compat::discover_response_frame({"mul", "div", "\xc3\xa9t\xc3\xa9"}));
  CHECK(response.header.kind == frame::type::discover_response);
  CHECK(compat::decode_discover_response(response.payload) ==
        std::vector<std::string>{"mul", "div", "\xc3\xa9t\xc3\xa9"});
  CHECK(compat::decode_discover_response(pk::dumps(pk::object::tuple({pk::object::str("a")}))) ==
        std::vector<std::string>{"a"});
  CHECK_THROWS_AS(compat::decode_discover_response(pk::dumps(pk::object::none())), patio::protocol_error);
  CHECK_THROWS_AS(compat::decode_discover_response(pk::dumps(pk::object::list({pk::object::integer(1)}))),
                  patio::protocol_error);
  CHECK_THROWS_AS(compat::decode_discover_response("\x80\x05"), patio::protocol_error);
}
