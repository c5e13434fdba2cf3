// SPDX-License-Identifier: MIT
#include "msgpack_compare.hpp"
#include "support.hpp"

#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>
#include <patio/detail/messages.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace frame = patio::detail::frame;
namespace hs = patio::detail::handshake;

struct parsed {
  frame::header header;
  std::string payload;
};

parsed parse(const std::string& f, bool authenticated = false) {
  REQUIRE(f.size() >= frame::header_size);
  parsed out;
  REQUIRE(frame::decode(reinterpret_cast<const unsigned char*>(f.data()), hs::max_payload, authenticated, out.header) ==
          frame::header_error::none);
  REQUIRE(out.header.payload_size == f.size() - frame::header_size);
  out.payload = f.substr(frame::header_size);
  return out;
}

template <class Side>
hs::step feed(Side& side, const std::string& f) {
  const auto p = parse(f);
  return side.on_frame(p.header, p.payload);
}

std::string hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

}  // namespace

TEST_CASE("frame headers round-trip in network byte order", "[protocol]") {
  const auto h = frame::encode({frame::type::response, 0x01020304, 0xA0B0C0D0});
  CHECK(h[0] == 20);
  CHECK(h[1] == 0x01);
  CHECK(h[4] == 0x04);
  CHECK(h[5] == 0xA0);
  CHECK(h[8] == 0xD0);
  frame::header out;
  REQUIRE(frame::decode(h.data(), 0x01020304, true, out) == frame::header_error::none);
  CHECK(out.kind == frame::type::response);
  CHECK(out.payload_size == 0x01020304);
  CHECK(out.serial == 0xA0B0C0D0);

  SECTION("bad headers are refused") {
    CHECK(frame::decode(h.data(), 0x01020303, true, out) == frame::header_error::too_large);
    auto unknown = h;
    unknown[0] = 4;
    CHECK(frame::decode(unknown.data(), 1u << 30, true, out) == frame::header_error::unknown_type);
    unknown[0] = 255;
    CHECK(frame::decode(unknown.data(), 1u << 30, true, out) == frame::header_error::unknown_type);
    CHECK(frame::decode(h.data(), 1u << 30, false, out) == frame::header_error::not_allowed);
    const auto digest = frame::encode({frame::type::auth_digest, 10, 0});
    CHECK(frame::decode(digest.data(), 100, false, out) == frame::header_error::none);
  }
  SECTION("serials run from 1 to 4294967294 and wrap to 1") {
    CHECK(frame::next_serial(1) == 2);
    CHECK(frame::next_serial(4294967293u) == 4294967294u);
    CHECK(frame::next_serial(4294967294u) == 1);
    CHECK(frame::next_serial(0) == 1);
  }
}

TEST_CASE("HMAC-SHA256 matches RFC 4231 and comparison is exact", "[protocol]") {
  CHECK(hex(hs::hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hs::hmac_sha256("", "").size() == 32);
  CHECK(hs::equal("abc", "abc"));
  CHECK_FALSE(hs::equal("abc", "abd"));
  CHECK_FALSE(hs::equal("abc", "ab"));
  CHECK(hs::random_bytes(32).size() == 32);
  CHECK(hs::random_bytes(32) != hs::random_bytes(32));
}

TEST_CASE("the handshake succeeds both ways with the same key", "[protocol]") {
  for (std::string key : {std::string(), std::string("s3cret"), std::string(1000, 'k')}) {
    hs::server server{key};
    hs::client client{key};
    const auto request = feed(client, server.start());
    REQUIRE_FALSE(request.failed);
    REQUIRE_FALSE(request.done);
    CHECK(parse(request.send).header.kind == frame::type::auth_request);
    const auto response = feed(server, request.send);
    REQUIRE_FALSE(response.failed);
    CHECK(parse(response.send).header.kind == frame::type::auth_response);
    const auto ok = feed(client, response.send);
    REQUIRE_FALSE(ok.failed);
    CHECK(ok.done);
    CHECK(parse(ok.send).header.kind == frame::type::auth_ok);
    const auto done = feed(server, ok.send);
    CHECK(done.done);
    CHECK_FALSE(done.failed);
    CHECK(done.send.empty());
  }
}

TEST_CASE("the handshake fails on a wrong key, a replay, a forgery or disorder", "[protocol]") {
  SECTION("the server refuses a client with another key") {
    hs::server server{"right"};
    hs::client client{"wrong"};
    const auto refused = feed(server, feed(client, server.start()).send);
    CHECK(refused.failed);
    CHECK(refused.send.empty());
    CHECK_THAT(refused.reason, Catch::Contains("proof"));
  }
  SECTION("the client refuses a server whose proof is wrong") {
    hs::server server{"one"};
    hs::client client{"one"};
    const auto request = feed(client, server.start());
    auto forged = feed(server, request.send).send;
    forged[forged.size() - 1] ^= 1;  // one bit of the server's proof
    const auto refused = feed(client, forged);
    CHECK(refused.failed);
    CHECK(refused.send.empty());
    CHECK_THAT(refused.reason, Catch::Contains("server's proof"));
  }
  SECTION("a client with another key refuses the real server too") {
    hs::server server{"one"};
    hs::client client{"two"};
    const auto request = feed(client, server.start());
    // The server refuses first; a client never sees a valid proof for its key.
    CHECK(feed(server, request.send).failed);
  }
  SECTION("a captured AUTH_REQUEST does not open another connection") {
    hs::server first{"key"};
    hs::client client{"key"};
    const auto captured = feed(client, first.start()).send;
    hs::server second{"key"};  // a new connection: a new nonce
    (void)second.start();
    CHECK(feed(second, captured).failed);
  }
  SECTION("packets out of order, or application packets, fail") {
    hs::server server{"key"};
    CHECK(feed(server, server.start()).failed);  // a server does not take AUTH_DIGEST
    hs::client client{"key"};
    const auto ok = frame::make(frame::type::auth_ok, 0, "\xc0", 1);
    CHECK(feed(client, ok).failed);
    hs::server other{"key"};
    frame::header request{frame::type::request, 0, 1};
    CHECK(other.on_frame(request, "").failed);
  }
  SECTION("malformed payloads fail, whatever their bytes") {
    for (std::string_view payload : {std::string_view(""), std::string_view("\xc1"), std::string_view("\x92\xc0\xc0"),
                                     std::string_view("\xc4\x01\x00")}) {
      hs::server server{"key"};
      CHECK(
          server.on_frame({frame::type::auth_request, static_cast<std::uint32_t>(payload.size()), 0}, payload).failed);
      hs::client client{"key"};
      CHECK(client.on_frame({frame::type::auth_digest, static_cast<std::uint32_t>(payload.size()), 0}, payload).failed);
    }
  }
  SECTION("after a failure nothing succeeds") {
    hs::server server{"right"};
    hs::client wrong{"wrong"};
    const auto request = feed(wrong, server.start()).send;
    REQUIRE(feed(server, request).failed);
    const auto ok = frame::make(frame::type::auth_ok, 0, "\xc0", 1);
    CHECK(feed(server, ok).failed);
  }
}

namespace {

namespace messages = patio::detail::messages;

std::int64_t mul3(patio::varargs<std::int64_t> args, patio::kwargs kw) {
  std::int64_t product = kw.get<std::int64_t>("scale", 1);
  for (auto a : args) product *= a;
  return product;
}

}  // namespace

TEST_CASE("a call crosses REQUEST and RESPONSE frames without a socket", "[protocol]") {
  auto caller = patio::detail::make_invocation<std::int64_t>(2, 3, patio::kwargs{{"scale", 7}});
  caller->name = "mul";
  const auto request = messages::request_frame(42, *caller, 1.5);
  frame::header h;
  REQUIRE(frame::decode(reinterpret_cast<const unsigned char*>(request.data()), 1 << 20, true, h) ==
          frame::header_error::none);
  CHECK(h.kind == frame::type::request);
  CHECK(h.serial == 42);
  const auto decoded = messages::decode_request(std::string_view(request).substr(frame::header_size));
  REQUIRE(decoded.timeout_seconds);
  CHECK(*decoded.timeout_seconds == 1.5);
  CHECK(decoded.invocation->name == "mul");

  // The executing side runs it as any executor would.
  patio::detail::make_function(mul3)->invoke(*decoded.invocation);
  REQUIRE_FALSE(decoded.invocation->error());
  const auto response = messages::response_frame(42, decoded.invocation->result());
  REQUIRE(frame::decode(reinterpret_cast<const unsigned char*>(response.data()), 1 << 20, true, h) ==
          frame::header_error::none);
  CHECK(h.kind == frame::type::response);
  auto reply = messages::decode_reply(h.kind, std::string_view(response).substr(frame::header_size));
  REQUIRE(reply.ok);
  caller->set_object_result(reply.result);
  CHECK(caller->take_result() == 42);

  SECTION("a task's error comes back typed") {
    const auto error = messages::error_frame(42, {patio::errc::bad_arguments, "", "mul: argument 1: nope"});
    auto e = messages::decode_reply(frame::type::error, std::string_view(error).substr(frame::header_size));
    CHECK_FALSE(e.ok);
    CHECK_THROWS_AS(std::rethrow_exception(patio::detail::exception_of(e.error)), patio::bad_arguments_error);
  }
  SECTION("no timeout travels as nil") {
    const auto r = messages::request_frame(1, *caller, std::nullopt);
    CHECK_FALSE(messages::decode_request(std::string_view(r).substr(frame::header_size)).timeout_seconds);
  }
}

TEST_CASE("malformed REQUEST, RESPONSE, ERROR and DISCOVER payloads are protocol errors", "[protocol]") {
  auto packed = [](auto&&... fields) {
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> p(out);
    p.pack_array(sizeof...(fields));
    (p.pack(fields), ...);
    return std::string(out.data(), out.size());
  };
  CHECK_THROWS_AS(messages::decode_request("\xc1"), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_request(packed(1, 2, 3)), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_request(packed(1, std::vector<int>{}, std::map<std::string, int>{}, 1.0)),
                  patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_request(packed("f", 5, std::map<std::string, int>{}, 1.0)), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_request(packed("f", std::vector<int>{}, std::map<std::string, int>{}, -1.0)),
                  patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_request(packed("f", std::vector<int>{}, std::map<std::string, int>{}, "soon")),
                  patio::protocol_error);
  // Keywords that are not a map are the caller's error: answered, not fatal.
  const auto bad_kw = messages::decode_request(packed("f", std::vector<int>{}, 5, msgpack::type::nil_t{}));
  CHECK(bad_kw.invocation->has_error());

  CHECK_THROWS_AS(messages::decode_reply(frame::type::response, "\xc1"), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_reply(frame::type::error, packed(1, "t")), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_reply(frame::type::error, packed(9999, "t", "m")), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_reply(frame::type::request, packed(1, "t", "m")), patio::protocol_error);

  const auto discover = messages::discover_response_frame({"a", "b"});
  CHECK(messages::decode_discover_response(std::string_view(discover).substr(frame::header_size)) ==
        std::vector<std::string>{"a", "b"});
  CHECK_THROWS_AS(messages::decode_discover_response(packed(1, 2)), patio::protocol_error);
  CHECK(messages::discover_request_frame().size() == frame::header_size + 1);
}

TEST_CASE("a container header that claims more elements than its payload holds is refused", "[protocol]") {
  // Found by fuzz_handshake and fuzz_messages: msgpack-cxx allocated the
  // claimed elements (here 2^32 - 1 map entries, 128 GiB) before reading them.
  const std::string huge_map("\xdf\xff\xff\xff\xff", 5);
  const std::string huge_array("\xdd\xff\xff\xff\xff", 5);
  CHECK_THROWS_AS(messages::decode_request(huge_map), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_request(huge_array), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_reply(frame::type::response, huge_array), patio::protocol_error);
  CHECK_THROWS_AS(messages::decode_discover_response(huge_array), patio::protocol_error);
  hs::client client("key");
  const auto step = client.on_frame({frame::type::auth_digest, 5, 0}, huge_map);
  CHECK(step.failed);

  SECTION("and so is nesting deeper than the limit") {
    const std::string deep(patio::detail::max_unpack_depth + 2, '\x91');
    CHECK_THROWS_AS(messages::decode_reply(frame::type::response, deep + '\xc0'), patio::protocol_error);
    const std::string fine(16, '\x91');
    CHECK(messages::decode_reply(frame::type::response, fine + '\xc0').ok);
  }
}

TEST_CASE("an empty string in a received payload copies and packs like any other", "[protocol]") {
  // Found by fuzz_messages: msgpack-cxx unpacked "" with a null pointer and
  // then passed it to memcpy when copying it into a patio::value (UBSan).
  const auto reply = messages::decode_reply(frame::type::response, std::string("\xa0", 1));
  REQUIRE(reply.ok);
  const patio::value v(reply.result);
  CHECK(v.as<std::string>().empty());
  msgpack::sbuffer packed;
  msgpack::pack(packed, reply.result);
  CHECK(std::string(packed.data(), packed.size()) == std::string("\xa0", 1));
}

TEST_CASE("a lone number, bool or nil is read as msgpack-cxx reads it, and a cut one is refused", "[protocol]") {
  using patio::detail::protocol_unpack;
  std::vector<msgpack::sbuffer> encoded;
  const auto add = [&](const auto& v) {
    encoded.emplace_back();
    msgpack::pack(encoded.back(), v);
  };
  for (const std::uint64_t v : {0ULL, 1ULL, 127ULL, 128ULL, 255ULL, 256ULL, 65535ULL, 65536ULL, 4294967295ULL,
                                4294967296ULL, 18446744073709551615ULL})
    add(v);
  for (const std::int64_t v :
       std::initializer_list<std::int64_t>{-1, -32, -33, -128, -129, -32768, -32769, -2147483648LL, -2147483649LL,
                                           std::numeric_limits<std::int64_t>::min()})
    add(v);
  add(true);
  add(false);
  add(msgpack::type::nil_t{});
  add(1.5F);
  add(-0.25F);
  add(2.25);
  add(-1e300);
  // Signed encodings of values >= 0, which msgpack-cxx's packer never makes.
  for (const std::string& raw :
       {std::string("\xd0\x05", 2), std::string("\xd1\x00\x80", 3), std::string("\xd2\x00\x00\x00\x01", 5),
        std::string("\xd3\x00\x00\x00\x00\x00\x00\x00\x07", 9), std::string("\xd0\x80", 2),
        std::string("\xd3\xff\xff\xff\xff\xff\xff\xff\xfe", 9)}) {
    encoded.emplace_back();
    encoded.back().write(raw.data(), raw.size());
  }
  for (const auto& b : encoded) {
    const auto mine = protocol_unpack(b.data(), b.size(), "test");
    const auto theirs = msgpack::unpack(b.data(), b.size());
    INFO(patio::value(theirs.get()).to_string());
    CHECK(mine.get().type == theirs.get().type);
    CHECK(mine.get() == theirs.get());
    // Cut short: refused with a protocol error, as msgpack-cxx refuses it.
    for (std::size_t n = 1; n < b.size(); ++n)
      CHECK_THROWS_AS(protocol_unpack(b.data(), n, "test"), patio::protocol_error);
  }
  CHECK_THROWS_AS(protocol_unpack("", 0, "test"), patio::protocol_error);
}

namespace {

/// Random MessagePack documents, each value in a random one of the
/// encodings that can hold it (not only the shortest, as packers write).
class random_msgpack {
 public:
  explicit random_msgpack(std::uint32_t seed) : rng_(seed) {}

  std::string document() {
    std::string out;
    value(out, 0);
    return out;
  }

 private:
  std::uint64_t pick(std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_); }
  std::uint64_t bits(unsigned n) {
    return n == 64 ? rng_() | (std::uint64_t{rng_()} << 32) : pick(std::uint64_t{1} << n);
  }

  static void big_endian(std::string& out, std::uint64_t v, unsigned bytes) {
    for (unsigned i = bytes; i-- > 0;) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffU));
  }
  /// A length `n` after one of the heads that can carry it: `fix` (a
  /// fixstr/fixarray/fixmap lead for n < fix_limit), or lead, lead+1,
  /// lead+2 with a 1-, 2- or 4-byte length (`wide_from`: 1, or 2 where there
  /// is no 1-byte form).
  void length_head(std::string& out, std::uint64_t n, int fix, std::uint64_t fix_limit, int lead, unsigned wide_from) {
    std::vector<std::pair<int, unsigned>> fits;
    if (fix >= 0 && n < fix_limit) fits.emplace_back(fix + static_cast<int>(n), 0);
    for (unsigned w = wide_from, i = 0; w <= 4; w *= 2, ++i)
      if (n < (std::uint64_t{1} << (8 * w))) fits.emplace_back(lead + static_cast<int>(i), w);
    const auto [head, width] = fits[pick(fits.size())];
    out.push_back(static_cast<char>(head));
    big_endian(out, n, width);
  }
  std::uint64_t some_length() {
    switch (pick(8)) {
      case 0: return 0;
      case 1: return 200 + pick(400);
      default: return pick(20);
    }
  }
  void body(std::string& out, std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(static_cast<char>(pick(256)));
  }

  void value(std::string& out, int depth) {
    switch (pick(depth < 4 ? 9 : 6)) {
      case 0: out.push_back("\xc0\xc2\xc3"[pick(3)]); break;
      case 1: {  // a number >= 0, in an unsigned or a signed encoding
        const std::uint64_t v = bits(static_cast<unsigned>(1 + pick(64))) >> pick(2);
        std::vector<std::pair<int, unsigned>> fits;
        if (v < 128) fits.emplace_back(static_cast<int>(v), 0);
        for (unsigned i = 0; i < 4; ++i) {
          const unsigned w = 1U << i;
          if (w == 8 || v < (std::uint64_t{1} << (8 * w))) fits.emplace_back(0xcc + i, w);
          if (v < (std::uint64_t{1} << (8 * w - 1))) fits.emplace_back(0xd0 + i, w);
        }
        const auto [head, width] = fits[pick(fits.size())];
        out.push_back(static_cast<char>(head));
        big_endian(out, v, width);
        break;
      }
      case 2: {  // a negative number
        const auto v = static_cast<std::int64_t>(~(bits(static_cast<unsigned>(pick(63)))));
        std::vector<std::pair<int, unsigned>> fits;
        if (v >= -32) fits.emplace_back(static_cast<int>(v) & 0xff, 0);
        for (unsigned i = 0; i < 4; ++i) {
          const unsigned w = 1U << i;
          if (w == 8 || v >= -(std::int64_t{1} << (8 * w - 1))) fits.emplace_back(0xd0 + i, w);
        }
        const auto [head, width] = fits[pick(fits.size())];
        out.push_back(static_cast<char>(head));
        big_endian(out, static_cast<std::uint64_t>(v), width);
        break;
      }
      case 3:  // any bits, NaNs too
        if (pick(2)) {
          out.push_back('\xca');
          big_endian(out, bits(32), 4);
        } else {
          out.push_back('\xcb');
          big_endian(out, bits(64), 8);
        }
        break;
      case 4: {
        const auto n = some_length();
        length_head(out, n, 0xa0, 32, 0xd9, 1);
        body(out, n);
        break;
      }
      case 5: {
        const auto n = some_length();
        length_head(out, n, -1, 0, 0xc4, 1);
        body(out, n);
        break;
      }
      case 6: {
        const auto n = pick(5) == 0 ? pick(40) : pick(5);
        length_head(out, n, 0x90, 16, 0xdc, 2);
        for (std::uint64_t i = 0; i < n; ++i) value(out, depth + 1);
        break;
      }
      case 7: {
        const auto n = pick(5);
        length_head(out, n, 0x80, 16, 0xde, 2);
        for (std::uint64_t i = 0; i < 2 * n; ++i) value(out, depth + 1);
        break;
      }
      default: {  // an extension: fixext 1 to 16, or ext 8, 16, 32 of any size
        const auto fixed = pick(6);
        if (fixed < 5) {
          out.push_back(static_cast<char>(0xd4 + fixed));
          out.push_back(static_cast<char>(pick(256)));  // its type
          body(out, std::uint64_t{1} << fixed);
        } else {
          const auto n = some_length();
          length_head(out, n, -1, 0, 0xc7, 1);
          out.push_back(static_cast<char>(pick(256)));
          body(out, n);
        }
        break;
      }
    }
  }

  std::mt19937 rng_;
};

}  // namespace

TEST_CASE("patio's MessagePack decoder reads what msgpack-cxx reads and refuses what it refuses", "[protocol]") {
  using patio_test::decoders_agree;
  random_msgpack gen(20261203);
  std::mt19937 rng(7);
  std::size_t decoded = 0;
  for (int doc = 0; doc < 1500; ++doc) {
    const std::string b = gen.document();
    INFO("document " << doc << " of " << b.size() << " bytes");
    REQUIRE(decoders_agree(b.data(), b.size()));
    const auto mine = patio::detail::decode_msgpack(b.data(), b.size());  // a well-formed one decodes
    ++decoded;
    // Bytes after the value are ignored by both.
    const std::string longer = b + "\x91\xc0";
    CHECK(decoders_agree(longer.data(), longer.size()));
    // Cut anywhere: refused by both.
    for (std::size_t n = 0; n < b.size(); ++n) {
      CHECK_THROWS_AS(patio::detail::decode_msgpack(b.data(), n), msgpack::unpack_error);
      REQUIRE(decoders_agree(b.data(), n));
    }
    // A byte changed, anywhere: whatever it becomes, both read it alike.
    for (int m = 0; m < 8; ++m) {
      std::string bent = b;
      bent[rng() % bent.size()] = static_cast<char>(rng());
      REQUIRE(decoders_agree(bent.data(), bent.size()));
    }
  }
  CHECK(decoded == 1500);
}

TEST_CASE("patio's MessagePack decoder limits nesting and never trusts a length", "[protocol]") {
  using patio::detail::decode_msgpack;
  using patio::detail::max_unpack_depth;
  const auto nested = [](std::size_t levels) { return std::string(levels, '\x91') + '\xc0'; };
  const std::string deepest = nested(max_unpack_depth);
  CHECK(patio_test::decoders_agree(deepest.data(), deepest.size()));
  const auto ok = decode_msgpack(deepest.data(), deepest.size());
  CHECK(ok.get().type == msgpack::type::ARRAY);
  const std::string too_deep = nested(max_unpack_depth + 1);
  CHECK_THROWS_AS(decode_msgpack(too_deep.data(), too_deep.size()), msgpack::depth_size_overflow);
  CHECK(patio_test::decoders_agree(too_deep.data(), too_deep.size()));
  // Headers that claim far more than the bytes after them hold.
  for (const std::string& liar :
       {std::string("\xdd\xff\xff\xff\xff\xc0", 6), std::string("\xdf\x7f\xff\xff\xff\xc0\xc0", 7),
        std::string("\xdb\xff\xff\xff\xff"
                    "abc",
                    8),
        std::string("\xc9\xff\xff\xff\xff\x01", 6), std::string("\xc1", 1)}) {
    CHECK_THROWS_AS(decode_msgpack(liar.data(), liar.size()), msgpack::unpack_error);
    CHECK(patio_test::decoders_agree(liar.data(), liar.size()));
  }
  // An empty string or binary points somewhere (msgpack-cxx's would be null).
  for (const std::string& empty :
       {std::string("\xa0", 1), std::string("\xc4\x00", 2), std::string("\xdb\0\0\0\0", 5)}) {
    const auto h = decode_msgpack(empty.data(), empty.size());
    CHECK(h.get().via.str.ptr != nullptr);  // str and bin share their layout
    CHECK(h.get().via.str.size == 0);
  }
}
