// SPDX-License-Identifier: MIT
#pragma once

/// @cond internals
// Python patio 0.1.4's TCP protocol, for tcp_protocol::patio_compat: the same
// framing as ours, pickled payloads, and its blake2s key handshake. Socket
// free, so that tests and fuzzers drive it directly. docs/interop.md.

#include <patio/codec.hpp>
#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>
#include <patio/detail/messages.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace patio::detail::compat {

/// blake2s accepts keys of at most 32 bytes (Python's hashlib refuses longer).
inline constexpr std::size_t max_key_size = 32;
/// The handshake's largest payload (AUTH_REQUEST is about 90 bytes).
inline constexpr std::size_t max_handshake_payload = 512;
/// The server's challenge: this many random bytes, pickled.
inline constexpr std::size_t token_size = 16;
/// The client's salt (patio sends 4 bytes; blake2s takes up to 8).
inline constexpr std::size_t salt_size = 4;

/// blake2s-256 of `message`, keyed with `key` (at most 32 bytes, may be
/// empty) and salted with `salt` (at most 8 bytes, zero-padded), as Python's
/// `hashlib.blake2s(message, key=key, salt=salt).digest()`. A non-empty key
/// goes through OpenSSL's BLAKE2SMAC; OpenSSL 3.0 takes no salt without a
/// key, so an empty one is computed here (RFC 7693).
/// @throws std::invalid_argument for a key or salt too long.
std::string blake2s(std::string_view key, std::string_view salt, std::string_view message);

/// The same, always computed here (RFC 7693); for tests against OpenSSL.
std::string blake2s_reference(std::string_view key, std::string_view salt, std::string_view message);

/// @throws std::invalid_argument if `key` cannot be a patio compat key.
void check_key(std::string_view key);

/// The server's side: AUTH_DIGEST with a pickled random token; checks the
/// client's AUTH_REQUEST (salt, digest, token) and answers AUTH_OK. Unlike
/// Python patio it also requires the token to be the one it sent, so that an
/// AUTH_REQUEST recorded from another connection is refused.
class server {
 public:
  explicit server(std::string key);

  /// The AUTH_DIGEST frame to send first.
  [[nodiscard]] std::string start() const;

  handshake::step on_frame(const frame::header& h, std::string_view payload);

 private:
  enum class state { wait_request, done, failed };
  std::string key_;
  std::string challenge_;  // the AUTH_DIGEST payload: the pickled token
  state state_ = state::wait_request;
};

/// The client's side: answers AUTH_DIGEST with (salt, digest, payload),
/// then waits for AUTH_OK.
class client {
 public:
  explicit client(std::string key);

  handshake::step on_frame(const frame::header& h, std::string_view payload);

 private:
  enum class state { wait_digest, wait_ok, done, failed };
  std::string key_;
  state state_ = state::wait_digest;
};

/// Appends a REQUEST: the pickled CallRequest(func, args, kwargs, timeout).
/// @throws patio::type_mismatch_error for an argument Python cannot hold.
void append_request_frame(std::string& out, std::uint32_t serial, invocation& inv,
                          std::optional<double> timeout_seconds);

/// Decodes a REQUEST. Never throws: a payload that does not load is carried
/// as the invocation's error and answered with ERROR, as Python patio does.
messages::request decode_request(std::string_view payload);

/// Appends the RESPONSE with `inv`'s result, or the ERROR for `error` (or
/// for a result Python cannot hold).
void append_reply_frame(std::string& out, std::uint32_t serial, const encoded_invocation& inv,
                        std::exception_ptr error);

/// Decodes a RESPONSE or ERROR into the native form: the result as
/// MessagePack, a Python exception as a remote error with its type name.
/// @throws patio::protocol_error if the payload does not load.
messages::reply decode_reply(frame::type kind, std::string_view payload);

std::string discover_request_frame();
std::string discover_response_frame(const std::vector<std::string>& names);
/// @throws patio::protocol_error unless the payload is a list of str.
std::vector<std::string> decode_discover_response(std::string_view payload);

}  // namespace patio::detail::compat
/// @endcond
