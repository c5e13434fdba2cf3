// SPDX-License-Identifier: MIT
// What a Redis server sends, handled as the Redis broker handles it: bytes
// fed to the (bounded) hiredis reader in pieces, each reply parsed as a
// stream read and as claimed entries, each entry's fields parsed as a call
// and as a reply, and their payloads decoded as REQUEST, RESPONSE and ERROR.
// The first input byte sets the piece size.
// Invariants: parsers throw only patio::protocol_error; never a crash, UB, a
// leak or an allocation sized by a header rather than by received bytes.
#include "../src/redis_connection.hpp"

#include <patio/detail/messages.hpp>
#include <patio/detail/redis_protocol.hpp>
#include <patio/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace {

namespace redis = patio::detail::redis;
namespace messages = patio::detail::messages;

template <class F>
void expect_protocol_errors_only(F&& f) {
  try {
    f();
  } catch (const patio::protocol_error&) {
  }
}

void handle_entry(const redis::entry& e, const redis::keys& keys) {
  (void)redis::parse_entry_id(e.id);
  if (e.malformed) return;
  expect_protocol_errors_only([&] {
    const auto call = redis::parse_request_fields(e.fields, keys);
    (void)messages::decode_request(call.payload);
  });
  expect_protocol_errors_only([&] {
    const auto reply = redis::parse_reply_fields(e.fields);
    (void)messages::decode_reply(reply.ok ? patio::detail::frame::type::response : patio::detail::frame::type::error,
                                 reply.payload);
  });
}

void handle_reply(const redisReply* r, const redis::keys& keys) {
  (void)redis::is_error(r);
  (void)redis::text(r);
  expect_protocol_errors_only([&] {
    for (const auto& stream : redis::parse_read(r)) {
      (void)keys.function_of(stream.stream);
      for (const auto& e : stream.entries) handle_entry(e, keys);
    }
  });
  expect_protocol_errors_only([&] {
    for (const auto& e : redis::parse_entries(r)) handle_entry(e, keys);
  });
  const auto parts = redis::elements(r);  // XAUTOCLAIM: [cursor, entries, deleted]
  if (parts.size() >= 2)
    expect_protocol_errors_only([&] {
      for (const auto& e : redis::parse_entries(parts[1])) handle_entry(e, keys);
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t piece = 1 + data[0] % 64;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const redis::keys keys("fuzz");
  redisReader* reader = redis::make_reader();
  for (std::size_t at = 0; at < input.size(); at += piece) {
    const auto chunk = input.substr(at, piece);
    if (redisReaderFeed(reader, chunk.data(), chunk.size()) != REDIS_OK) break;
    bool broken = false;
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader, &raw) != REDIS_OK) {
        broken = true;  // the connection would close here
        break;
      }
      if (!raw) break;
      const redis::reply_ptr reply(static_cast<redisReply*>(raw));
      handle_reply(reply.get(), keys);
    }
    if (broken) break;
  }
  redisReaderFree(reader);
  return 0;
}
