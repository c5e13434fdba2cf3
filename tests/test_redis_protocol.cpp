// SPDX-License-Identifier: MIT
// The Redis broker's keys, commands and entry parsing, without a server.
#include "../src/redis_connection.hpp"
#include "support.hpp"

#include <patio/detail/redis_protocol.hpp>
#include <patio/error.hpp>

#include <catch2/catch.hpp>

#include <hiredis/hiredis.h>

#include <string>
#include <vector>

namespace redis = patio::detail::redis;

namespace {

/// What hiredis's own formatter makes of `args`.
std::string hiredis_format(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* out = nullptr;
  const int n = redisFormatCommandArgv(&out, static_cast<int>(args.size()), argv.data(), lens.data());
  REQUIRE(n > 0);
  std::string s(out, static_cast<std::size_t>(n));
  redisFreeCommand(out);
  return s;
}

/// Parses RESP bytes into one reply with hiredis's reader.
redis::reply_ptr parse_resp(std::string_view bytes) {
  redisReader* reader = redisReaderCreate();
  REQUIRE(redisReaderFeed(reader, bytes.data(), bytes.size()) == REDIS_OK);
  void* raw = nullptr;
  const int rc = redisReaderGetReply(reader, &raw);
  redisReaderFree(reader);
  REQUIRE(rc == REDIS_OK);
  REQUIRE(raw != nullptr);
  return redis::reply_ptr(static_cast<redisReply*>(raw));
}

}  // namespace

TEST_CASE("redis commands are formatted byte for byte as hiredis formats them", "[redis][protocol]") {
  const std::vector<std::vector<std::string>> commands{
      {"PING"},
      {"XADD", "patio:{p}:calls:mul", "*", "c", std::string("\x94\xa3mul\x00\xff", 7), "r", "x", "i", "42"},
      {"SET", "", ""},
      {"XREADGROUP", "GROUP", "workers", "abc", "COUNT", "128", "BLOCK", "1000", "STREAMS", "s", ">"},
      {"ECHO", std::string(100'000, 'x')},
  };
  for (const auto& args : commands) {
    std::vector<std::string_view> views(args.begin(), args.end());
    std::string ours;
    redis::append_command(ours, views);
    CHECK(ours == hiredis_format(args));
  }
  // Appending keeps what was there: commands pipeline into one buffer.
  std::string two;
  redis::append_command(two, {"PING"});
  redis::append_command(two, {"ECHO", "hi"});
  CHECK(two == hiredis_format({"PING"}) + hiredis_format({"ECHO", "hi"}));
}

TEST_CASE("redis keys carry the project as a hash tag and reply streams are recognised", "[redis][protocol]") {
  const redis::keys k("shop");
  CHECK(k.calls("mul") == "patio:{shop}:calls:mul");
  CHECK(k.route("mul") == "patio:{shop}:route:mul");
  CHECK(k.reply("abc") == "patio:{shop}:reply:abc");
  CHECK(k.dead_letter() == "patio:{shop}:dead");
  CHECK(k.is_reply("patio:{shop}:reply:abc"));
  CHECK_FALSE(k.is_reply("patio:{shop}:reply:"));
  CHECK_FALSE(k.is_reply("patio:{other}:reply:abc"));
  CHECK_FALSE(k.is_reply("patio:{shop}:calls:mul"));
  CHECK(k.function_of("patio:{shop}:calls:mul") == "mul");
  CHECK_FALSE(k.function_of("patio:{shop}:reply:mul").has_value());
  CHECK_THROWS_AS(redis::keys(""), std::invalid_argument);
  CHECK_THROWS_AS(redis::keys("a}b"), std::invalid_argument);
}

TEST_CASE("redis entry ids parse, and anything else is refused", "[redis][protocol]") {
  const auto id = redis::parse_entry_id("1700000000123-7");
  REQUIRE(id.has_value());
  CHECK(id->ms == 1700000000123u);
  CHECK(id->seq == 7u);
  for (const char* bad : {"", "-", "12", "12-", "-3", "a-1", "1-b", "1-2-3", "99999999999999999999999-0"})
    CHECK_FALSE(redis::parse_entry_id(bad).has_value());
}

TEST_CASE("redis call and reply entries parse their fields and refuse others", "[redis][protocol]") {
  const redis::keys k("p");
  const auto reply_to = k.reply("me");
  SECTION("a call entry") {
    const redis::field_list fields{{"c", "payload"}, {"r", reply_to}, {"i", "12"}, {"extra", "ignored"}};
    const auto f = redis::parse_request_fields(fields, k);
    CHECK(f.payload == "payload");
    CHECK(f.reply_to == reply_to);
    CHECK(f.call_id == 12u);
  }
  SECTION("call entries that are not ours or lie") {
    CHECK_THROWS_AS(redis::parse_request_fields({{"foo", "bar"}}, k), patio::protocol_error);
    CHECK_THROWS_AS(redis::parse_request_fields({{"c", "x"}, {"r", reply_to}}, k), patio::protocol_error);
    CHECK_THROWS_AS(redis::parse_request_fields({{"c", "x"}, {"r", k.calls("mul")}, {"i", "1"}}, k),
                    patio::protocol_error);
    CHECK_THROWS_AS(redis::parse_request_fields({{"c", "x"}, {"r", reply_to}, {"i", "-1"}}, k), patio::protocol_error);
  }
  SECTION("reply entries") {
    const auto ok = redis::parse_reply_fields({{"i", "3"}, {"k", "ok"}, {"v", "\x01"}});
    CHECK(ok.call_id == 3u);
    CHECK(ok.ok);
    CHECK(ok.payload == "\x01");
    CHECK_FALSE(redis::parse_reply_fields({{"i", "3"}, {"k", "error"}, {"v", ""}}).ok);
    CHECK_THROWS_AS(redis::parse_reply_fields({{"i", "3"}, {"k", "maybe"}, {"v", ""}}), patio::protocol_error);
    CHECK_THROWS_AS(redis::parse_reply_fields({{"k", "ok"}, {"v", ""}}), patio::protocol_error);
  }
}

TEST_CASE("redis stream reads parse, and broken entries are marked rather than thrown", "[redis][protocol]") {
  SECTION("an XREADGROUP reply with two streams") {
    const auto r = parse_resp(
        "*2\r\n"
        "*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nc\r\n$1\r\nx\r\n"
        "*2\r\n$1\r\nb\r\n*2\r\n*2\r\n$3\r\n2-0\r\n*1\r\n$1\r\nc\r\n*2\r\n$3\r\n3-0\r\n*2\r\n:1\r\n$1\r\ny\r\n");
    const auto streams = redis::parse_read(r.get());
    REQUIRE(streams.size() == 2);
    CHECK(streams[0].stream == "a");
    REQUIRE(streams[0].entries.size() == 1);
    CHECK(streams[0].entries[0].id == "1-0");
    CHECK_FALSE(streams[0].entries[0].malformed);
    CHECK(streams[0].entries[0].fields == redis::field_list{{"c", "x"}});
    REQUIRE(streams[1].entries.size() == 2);
    CHECK(streams[1].entries[0].malformed);  // an odd number of fields
    CHECK(streams[1].entries[1].malformed);  // a field that is not a string
  }
  SECTION("no entries") {
    CHECK(redis::parse_read(parse_resp("*-1\r\n").get()).empty());
    CHECK(redis::parse_entries(parse_resp("*0\r\n").get()).empty());
  }
  SECTION("entries deleted while pending are skipped (XAUTOCLAIM, XCLAIM)") {
    const auto r = parse_resp("*2\r\n*-1\r\n*2\r\n$3\r\n4-0\r\n*0\r\n");
    const auto entries = redis::parse_entries(r.get());
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].id == "4-0");
  }
  SECTION("replies of another outline are protocol errors") {
    CHECK_THROWS_AS(redis::parse_read(parse_resp(":1\r\n").get()), patio::protocol_error);
    CHECK_THROWS_AS(redis::parse_read(parse_resp("*1\r\n$1\r\na\r\n").get()), patio::protocol_error);
    CHECK_THROWS_AS(redis::parse_read(parse_resp("*1\r\n*2\r\n:1\r\n*0\r\n").get()), patio::protocol_error);
    CHECK_THROWS_AS(redis::parse_entries(parse_resp("*1\r\n*1\r\n$3\r\n1-0\r\n").get()), patio::protocol_error);
  }
}

TEST_CASE("the redis reader refuses an array header too large to allocate for, and reads normal ones",
          "[redis][protocol]") {
  auto read = [](std::string_view bytes) {
    redisReader* reader = redis::make_reader();
    redisReaderFeed(reader, bytes.data(), bytes.size());
    void* raw = nullptr;
    const int rc = redisReaderGetReply(reader, &raw);
    if (raw) freeReplyObject(raw);
    redisReaderFree(reader);
    return rc;
  };
  CHECK(read("*2000000000\r\n") == REDIS_ERR);
  CHECK(read("*" + std::to_string(redis::max_reply_elements + 1) + "\r\n") == REDIS_ERR);
  CHECK(read("*2\r\n:1\r\n:2\r\n") == REDIS_OK);
  CHECK(read("*-1\r\n") == REDIS_OK);
}
