// SPDX-License-Identifier: MIT
#pragma once

/// The Redis broker's keys, commands and entries (docs/redis.md), as pure
/// functions: no I/O, no hiredis. Decoders throw patio::protocol_error.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace patio::detail::redis {

/// The consumer group every worker of a project reads through.
inline constexpr std::string_view group = "workers";

/// The keys of one project. All carry the hash tag `{project}`, so under
/// Redis Cluster a project lives in one slot and multi-stream reads work.
class keys {
 public:
  /// @throws std::invalid_argument for an empty project or one with braces.
  explicit keys(std::string_view project);

  /// The stream of calls of `function`.
  [[nodiscard]] std::string calls(std::string_view function) const;
  /// The sorted set of workers that offer `function`, scored by expiry.
  [[nodiscard]] std::string route(std::string_view function) const;
  /// The reply stream of the caller `caller_id`.
  [[nodiscard]] std::string reply(std::string_view caller_id) const;
  /// Where entries that cannot or must not run go.
  [[nodiscard]] std::string dead_letter() const;
  /// Whether `key` is some caller's reply stream of this project: a worker
  /// writes replies nowhere else, whatever an entry says.
  [[nodiscard]] bool is_reply(std::string_view key) const noexcept;
  /// The function whose calls stream `key` is, if it is one.
  [[nodiscard]] std::optional<std::string_view> function_of(std::string_view key) const noexcept;

  [[nodiscard]] const std::string& prefix() const noexcept { return prefix_; }

 private:
  std::string prefix_;
};

/// Appends one command in RESP: an array of bulk strings.
void append_command(std::string& out, std::span<const std::string_view> args);
inline void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  append_command(out, std::span<const std::string_view>(args.begin(), args.size()));
}

/// A stream entry's ID, "<ms>-<seq>".
struct entry_id {
  std::uint64_t ms = 0;
  std::uint64_t seq = 0;
};
std::optional<entry_id> parse_entry_id(std::string_view text) noexcept;

/// An entry's fields, in order, viewing the reply they came in.
using field_list = std::vector<std::pair<std::string_view, std::string_view>>;

/// The fields of a call entry: "c" the REQUEST payload (docs/protocol.md),
/// "r" the caller's reply stream, "i" the caller's call number.
namespace field {
inline constexpr std::string_view call = "c";
inline constexpr std::string_view reply_to = "r";
inline constexpr std::string_view call_id = "i";
/// Reply entries: "i" the call number, "k" "ok" or "error", "v" a RESPONSE
/// or ERROR payload.
inline constexpr std::string_view kind = "k";
inline constexpr std::string_view value = "v";
}  // namespace field

struct request_fields {
  std::string_view payload;
  std::string_view reply_to;
  std::uint64_t call_id = 0;
};
/// @throws protocol_error naming what is missing or wrong, including a reply
/// stream that is not one of `k`'s.
request_fields parse_request_fields(const field_list& fields, const keys& k);

struct reply_fields {
  std::uint64_t call_id = 0;
  bool ok = false;
  std::string_view payload;
};
/// @throws protocol_error
reply_fields parse_reply_fields(const field_list& fields);

/// The decimal text of `n`, into `buffer` (at least 20 chars).
std::string_view decimal(std::uint64_t n, char (&buffer)[24]) noexcept;

}  // namespace patio::detail::redis
