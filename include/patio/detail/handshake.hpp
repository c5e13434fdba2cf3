// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/frame.hpp>

#include <cstddef>
#include <string>
#include <string_view>

/// The TCP broker's mutual authentication, as two state machines that do no
/// I/O (see docs/protocol.md). Each side proves it knows the shared key with
/// an HMAC-SHA256 over both sides' fresh random nonces; proofs are compared
/// in constant time; a proof is only valid for the nonce the verifier issued
/// on this connection, so a captured handshake does not replay.
namespace patio::detail::handshake {

inline constexpr std::size_t nonce_size = 32;
inline constexpr std::size_t proof_size = 32;
/// No handshake payload is larger: the reader refuses larger frames.
inline constexpr std::size_t max_payload = 128;

/// `size` bytes from OpenSSL's CSPRNG. @throws patio::error if it fails.
std::string random_bytes(std::size_t size);

/// HMAC-SHA256 of `message` under `key`.
std::string hmac_sha256(std::string_view key, std::string_view message);

/// Constant-time comparison of equal-length strings (false if lengths differ).
bool equal(std::string_view a, std::string_view b) noexcept;

/// What the connection does after a frame: send `send` (if not empty); then
/// the handshake is `done`, or `failed` with a reason to log before closing.
struct step {
  std::string send;
  bool done = false;
  bool failed = false;
  std::string reason;
};

/// The accepting side: issues a nonce, checks the client's proof, proves
/// itself, and is done on AUTH_OK.
class server {
 public:
  explicit server(std::string key);

  /// The AUTH_DIGEST frame that opens the handshake.
  [[nodiscard]] std::string start() const;

  step on_frame(const frame::header& h, std::string_view payload);

 private:
  enum class state { wait_request, wait_ok, done, failed };
  std::string key_;
  std::string nonce_;
  std::string client_nonce_;
  state state_ = state::wait_request;
};

/// The connecting side: answers the server's nonce with its proof and a
/// nonce of its own, checks the server's proof, and is done when it sends
/// AUTH_OK.
class client {
 public:
  explicit client(std::string key);

  step on_frame(const frame::header& h, std::string_view payload);

 private:
  enum class state { wait_digest, wait_response, done, failed };
  std::string key_;
  std::string nonce_;
  std::string server_nonce_;
  state state_ = state::wait_digest;
};

}  // namespace patio::detail::handshake
