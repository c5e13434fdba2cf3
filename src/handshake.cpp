// SPDX-License-Identifier: MIT
#include <patio/detail/handshake.hpp>
#include <patio/detail/msgpack.hpp>
#include <patio/error.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace patio::detail::handshake {

namespace {

// Domain separation: a client's proof is never a valid server proof.
constexpr std::string_view client_label = "patio-cpp/1 client proof";
constexpr std::string_view server_label = "patio-cpp/1 server proof";

std::string proof(std::string_view key, std::string_view label, std::string_view server_nonce,
                  std::string_view client_nonce) {
  std::string message;
  message.reserve(label.size() + server_nonce.size() + client_nonce.size());
  message.append(label).append(server_nonce).append(client_nonce);
  return hmac_sha256(key, message);
}

std::string pack_bin(std::string_view data) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_bin(static_cast<std::uint32_t>(data.size()));
  p.pack_bin_body(data.data(), static_cast<std::uint32_t>(data.size()));
  return {out.data(), out.size()};
}

std::string pack_bin_pair(std::string_view a, std::string_view b) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(2);
  p.pack_bin(static_cast<std::uint32_t>(a.size()));
  p.pack_bin_body(a.data(), static_cast<std::uint32_t>(a.size()));
  p.pack_bin(static_cast<std::uint32_t>(b.size()));
  p.pack_bin_body(b.data(), static_cast<std::uint32_t>(b.size()));
  return {out.data(), out.size()};
}

/// A bin of exactly `size` bytes, or nothing.
bool unpack_bin(const msgpack::object& o, std::size_t size, std::string& out) {
  if (o.type != msgpack::type::BIN || o.via.bin.size != size) return false;
  out.assign(o.via.bin.ptr, o.via.bin.size);
  return true;
}

bool parse(std::string_view payload, msgpack::object_handle& out) {
  try {
    out = detail::decode_msgpack(payload.data(), payload.size());
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

step fail(std::string reason) { return {.send = {}, .done = false, .failed = true, .reason = std::move(reason)}; }
step send(std::string frame, bool done = false) {
  return {.send = std::move(frame), .done = done, .failed = false, .reason = {}};
}

std::string frame_of(frame::type t, std::string_view payload) {
  return frame::make(t, 0, payload.data(), payload.size());
}

}  // namespace

std::string random_bytes(std::size_t size) {
  std::string out(size, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(size)) != 1)
    throw error(errc::auth_failed, "the system's random number generator failed");
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  static const unsigned char empty = 0;
  const auto* k = key.empty() ? &empty : reinterpret_cast<const unsigned char*>(key.data());
  if (!HMAC(EVP_sha256(), k, static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
            message.size(), digest, &size))
    throw error(errc::auth_failed, "HMAC-SHA256 failed");
  return {reinterpret_cast<const char*>(digest), size};
}

bool equal(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---- server -----------------------------------------------------------------

server::server(std::string key) : key_(std::move(key)), nonce_(random_bytes(nonce_size)) {}

std::string server::start() const { return frame_of(frame::type::auth_digest, pack_bin(nonce_)); }

step server::on_frame(const frame::header& h, std::string_view payload) {
  if (state_ == state::wait_request && h.kind == frame::type::auth_request) {
    msgpack::object_handle oh;
    std::string client_proof;
    if (!parse(payload, oh) || oh.get().type != msgpack::type::ARRAY || oh.get().via.array.size != 2 ||
        !unpack_bin(oh.get().via.array.ptr[0], nonce_size, client_nonce_) ||
        !unpack_bin(oh.get().via.array.ptr[1], proof_size, client_proof)) {
      state_ = state::failed;
      return fail("malformed AUTH_REQUEST");
    }
    if (!equal(client_proof, proof(key_, client_label, nonce_, client_nonce_))) {
      state_ = state::failed;
      return fail("the client's proof does not match the key");
    }
    state_ = state::wait_ok;
    return send(frame_of(frame::type::auth_response, pack_bin(proof(key_, server_label, nonce_, client_nonce_))));
  }
  if (state_ == state::wait_ok && h.kind == frame::type::auth_ok) {
    state_ = state::done;
    return send({}, true);
  }
  state_ = state::failed;
  return fail("unexpected packet during the handshake");
}

// ---- client -----------------------------------------------------------------

client::client(std::string key) : key_(std::move(key)), nonce_(random_bytes(nonce_size)) {}

step client::on_frame(const frame::header& h, std::string_view payload) {
  if (state_ == state::wait_digest && h.kind == frame::type::auth_digest) {
    msgpack::object_handle oh;
    if (!parse(payload, oh) || !unpack_bin(oh.get(), nonce_size, server_nonce_)) {
      state_ = state::failed;
      return fail("malformed AUTH_DIGEST");
    }
    state_ = state::wait_response;
    return send(
        frame_of(frame::type::auth_request, pack_bin_pair(nonce_, proof(key_, client_label, server_nonce_, nonce_))));
  }
  if (state_ == state::wait_response && h.kind == frame::type::auth_response) {
    msgpack::object_handle oh;
    std::string server_proof;
    if (!parse(payload, oh) || !unpack_bin(oh.get(), proof_size, server_proof)) {
      state_ = state::failed;
      return fail("malformed AUTH_RESPONSE");
    }
    if (!equal(server_proof, proof(key_, server_label, server_nonce_, nonce_))) {
      state_ = state::failed;
      return fail("the server's proof does not match the key");
    }
    state_ = state::done;
    msgpack::sbuffer nil;
    msgpack::pack(nil, msgpack::type::nil_t{});
    return send(frame_of(frame::type::auth_ok, {nil.data(), nil.size()}), true);
  }
  state_ = state::failed;
  return fail("unexpected packet during the handshake");
}

}  // namespace patio::detail::handshake
