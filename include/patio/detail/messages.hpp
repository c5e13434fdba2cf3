// SPDX-License-Identifier: MIT
#pragma once

#include <patio/codec.hpp>
#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/frame.hpp>
#include <patio/detail/invocation.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// Payloads of the TCP broker's packets after authentication (see
/// docs/protocol.md), as whole frames out and decoded values in. Pure: no
/// I/O. Decoders throw patio::protocol_error on anything malformed.
namespace patio::detail::messages {

/// REQUEST: [name, args, kwargs, timeout seconds or nil].
std::string request_frame(std::uint32_t serial, invocation& inv, std::optional<double> timeout_seconds);
/// As request_frame(), appended to `out` (a connection's unsent bytes):
/// no buffer of its own.
void append_request_frame(std::string& out, std::uint32_t serial, invocation& inv,
                          std::optional<double> timeout_seconds);

/// A REQUEST's payload alone, appended to `out` (the Redis broker's entries
/// carry it).
void append_request_payload(std::string& out, invocation& inv, std::optional<double> timeout_seconds);

struct request {
  std::shared_ptr<encoded_invocation> invocation;  // carries a decoding error as its error, if any
  std::optional<double> timeout_seconds;
};
request decode_request(std::string_view payload);

/// RESPONSE: the packed result as it is.
std::string response_frame(std::uint32_t serial, std::string_view packed_result);
void append_response_frame(std::string& out, std::uint32_t serial, std::string_view packed_result);

/// ERROR: [errc, type name, message].
std::string error_frame(std::uint32_t serial, const error_record& error);
void append_error_frame(std::string& out, std::uint32_t serial, const error_record& error);

/// An ERROR's payload alone, appended to `out`.
void append_error_payload(std::string& out, const error_record& error);

/// A RESPONSE's result (alive while `handle` is) or an ERROR's record.
struct reply {
  bool ok = false;
  msgpack::object_handle handle;
  msgpack::object result;
  error_record error;
};
reply decode_reply(frame::type kind, std::string_view payload);

/// CANCEL: nil, with the serial of the REQUEST its caller gave up on.
std::string cancel_frame(std::uint32_t serial);

/// DISCOVER_REQUEST: nil. DISCOVER_RESPONSE: [name, ...].
std::string discover_request_frame();
std::string discover_response_frame(const std::vector<std::string>& names);
std::vector<std::string> decode_discover_response(std::string_view payload);

}  // namespace patio::detail::messages
