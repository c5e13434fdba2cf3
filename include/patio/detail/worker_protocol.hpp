// SPDX-License-Identifier: MIT
#pragma once

#include <patio/codec.hpp>
#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/invocation.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

/// The pipe between a process pool and its workers: frames of a 4-byte
/// big-endian payload length and a MessagePack array. Pure functions: no
/// I/O, so they are tested without processes.
///
///   hello    [0, version, pid]                          worker -> pool, once
///   request  [1, id, name, args (array), kwargs (map)]  pool -> worker
///   result   [2, id, result]                            worker -> pool
///   error    [3, id, errc, type name, message]          worker -> pool
namespace patio::detail::worker_protocol {

inline constexpr std::uint32_t version = 1;
inline constexpr std::size_t header_size = 4;

enum class kind : std::uint8_t { hello = 0, request = 1, result = 2, error = 3 };

/// The payload length a frame header announces.
std::uint32_t payload_size(const unsigned char* header) noexcept;

/// A whole frame (header and payload) for `payload`.
std::string frame(const msgpack::sbuffer& payload);

msgpack::sbuffer encode_hello(std::int64_t pid);
msgpack::sbuffer encode_request(std::uint64_t id, invocation& inv);
msgpack::sbuffer encode_result(std::uint64_t id, std::string_view packed_result);
msgpack::sbuffer encode_error(std::uint64_t id, const error_record& error);

struct hello {
  std::uint32_t version = 0;
  std::int64_t pid = 0;
};

/// A decoded result or error; the result object lives in `handle`.
struct reply {
  std::uint64_t id = 0;
  bool ok = false;
  msgpack::object_handle handle;
  msgpack::object result;
  error_record error;
};

struct request {
  std::uint64_t id = 0;
  std::shared_ptr<encoded_invocation> invocation;
};

/// Each decoder throws patio::protocol_error on anything malformed.
hello decode_hello(const char* data, std::size_t size);
reply decode_reply(const char* data, std::size_t size);
request decode_request(const char* data, std::size_t size);

}  // namespace patio::detail::worker_protocol
