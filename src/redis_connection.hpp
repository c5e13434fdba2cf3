// SPDX-License-Identifier: MIT
#pragma once

// One connection to Redis: commands pipelined over an Asio socket, replies
// parsed by hiredis's reader, matched to their commands in order. Lives on
// one strand; every member is called there.

#include <patio/detail/redis_protocol.hpp>
#include <patio/redis_broker.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <hiredis/hiredis.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace patio::detail::redis {

struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

/// The most elements one reply array may announce. hiredis allocates an
/// array's slots when it reads the header, before the elements arrive: a
/// bound keeps a broken or hostile server from making it allocate gigabytes.
inline constexpr int max_reply_elements = 1 << 22;

/// A hiredis reader whose arrays are bounded by max_reply_elements (a larger
/// one is a reader error, as if out of memory). Free with redisReaderFree.
redisReader* make_reader();

/// Views into replies, checked: each returns nullopt/false/empty for a reply
/// of another shape, never reads out of bounds.
bool is_error(const redisReply* r) noexcept;
std::string_view text(const redisReply* r) noexcept;                  // string, status or error; else empty
std::span<redisReply* const> elements(const redisReply* r) noexcept;  // array; else empty

/// One stream's entries from an XREAD/XREADGROUP/XAUTOCLAIM reply.
struct entry {
  std::string_view id;
  field_list fields;
  bool malformed = false;  // fields not in pairs, or not strings
};
struct stream_entries {
  std::string_view stream;
  std::vector<entry> entries;
};
/// Parses an XREAD or XREADGROUP reply (nil: no entries). Entries whose
/// fields are broken are kept, marked malformed, so they can be dead-lettered.
/// @throws protocol_error if the reply's outline is not a stream read's.
std::vector<stream_entries> parse_read(const redisReply* r);
/// The entries of an array of [id, [field, value, ...]] (XAUTOCLAIM's second
/// element, XCLAIM's reply); deleted entries (nil) are skipped.
std::vector<entry> parse_entries(const redisReply* r);

class connection : public std::enable_shared_from_this<connection> {
 public:
  /// Receives the replies of one send(), in order; on a connection that ended
  /// first, the error connection_lost and no replies.
  using reply_handler = std::function<void(std::error_code, std::span<reply_ptr>)>;

  connection(asio::any_io_executor strand, std::string label);
  ~connection();

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Connects, authenticates, selects the database and names the client.
  /// @throws connection_error (unreachable, timed out), auth_error (refused).
  asio::awaitable<void> open(redis_options options, std::string client_name);

  /// Queues `count` commands (RESP in `commands`) to be written with others
  /// queued meanwhile; `done` (may be empty) gets their replies. Errors of
  /// commands nobody waits for are logged.
  void send(std::string_view commands, std::size_t count, reply_handler done = {});

  /// Sends and waits. @returns the replies (error replies included).
  /// @throws connection_error if the connection ends first.
  asio::awaitable<std::vector<reply_ptr>> exec(std::string commands, std::size_t count);

  /// Closes the socket; waiting commands fail. Idempotent.
  void close();
  [[nodiscard]] bool is_open() const noexcept { return open_ && !closed_; }
  [[nodiscard]] const std::string& label() const noexcept { return label_; }

  /// Bytes written and not yet answered (for backpressure and tests).
  [[nodiscard]] std::size_t waiting_commands() const noexcept { return waiting_; }

 private:
  struct pending {
    std::size_t count;
    reply_handler done;
    std::vector<reply_ptr> replies;
  };

  asio::awaitable<void> read_loop();
  void flush();
  void deliver(reply_ptr reply);
  void fail_all();

  asio::any_io_executor strand_;
  std::string label_;
  asio::ip::tcp::socket socket_;
  redisReader* reader_;
  std::string unsent_;
  std::string writing_;
  bool writing_now_ = false;
  bool open_ = false;
  bool closed_ = false;
  std::deque<pending> pending_;
  std::size_t waiting_ = 0;
};

}  // namespace patio::detail::redis
