// SPDX-License-Identifier: MIT
#include <patio/detail/compat.hpp>
#include <patio/detail/pickle.hpp>
#include <patio/detail/pickle_msgpack.hpp>
#include <patio/error.hpp>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <utility>

namespace patio::detail::compat {

namespace {

// ---- blake2s (RFC 7693) -------------------------------------------------------

constexpr std::size_t block_size = 64;
constexpr std::size_t digest_size = 32;
constexpr std::size_t max_salt_size = 8;

constexpr std::array<std::uint32_t, 8> blake2s_iv = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                                                     0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};

constexpr std::uint8_t sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

std::uint32_t load32(const unsigned char* p) noexcept {
  return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[3]} << 24);
}

std::uint32_t rotr(std::uint32_t x, int n) noexcept { return (x >> n) | (x << (32 - n)); }

class blake2s_state {
 public:
  blake2s_state(std::string_view key, std::string_view salt) : h_(blake2s_iv) {
    // The parameter block: digest length, key length, fanout 1, depth 1; the
    // salt in words 4 and 5.
    h_[0] ^= 0x01010000U ^ (static_cast<std::uint32_t>(key.size()) << 8) ^ digest_size;
    std::array<unsigned char, max_salt_size> s{};
    std::memcpy(s.data(), salt.data(), salt.size());
    h_[4] ^= load32(s.data());
    h_[5] ^= load32(s.data() + 4);
    if (!key.empty()) {
      std::array<unsigned char, block_size> k{};
      std::memcpy(k.data(), key.data(), key.size());
      update({reinterpret_cast<const char*>(k.data()), k.size()});
    }
  }

  void update(std::string_view data) {
    for (const char c : data) {
      if (filled_ == block_size) {  // a full block compresses only once more follows
        count_ += block_size;
        compress(false);
        filled_ = 0;
      }
      buffer_[filled_++] = static_cast<unsigned char>(c);
    }
  }

  std::string final() {
    count_ += filled_;
    std::fill(buffer_.begin() + static_cast<std::ptrdiff_t>(filled_), buffer_.end(), 0);
    compress(true);
    std::string out(digest_size, '\0');
    for (std::size_t i = 0; i < digest_size; ++i) out[i] = static_cast<char>(h_[i / 4] >> (8 * (i % 4)));
    return out;
  }

 private:
  void compress(bool last) {
    std::array<std::uint32_t, 16> m{};
    for (std::size_t i = 0; i < 16; ++i) m[i] = load32(buffer_.data() + 4 * i);
    std::array<std::uint32_t, 16> v{};
    for (std::size_t i = 0; i < 8; ++i) {
      v[i] = h_[i];
      v[i + 8] = blake2s_iv[i];
    }
    v[12] ^= static_cast<std::uint32_t>(count_);
    v[13] ^= static_cast<std::uint32_t>(count_ >> 32);
    if (last) v[14] = ~v[14];
    const auto g = [&](int a, int b, int c, int d, std::uint32_t x, std::uint32_t y) {
      v[a] = v[a] + v[b] + x;
      v[d] = rotr(v[d] ^ v[a], 16);
      v[c] = v[c] + v[d];
      v[b] = rotr(v[b] ^ v[c], 12);
      v[a] = v[a] + v[b] + y;
      v[d] = rotr(v[d] ^ v[a], 8);
      v[c] = v[c] + v[d];
      v[b] = rotr(v[b] ^ v[c], 7);
    };
    for (const auto& s : sigma) {
      g(0, 4, 8, 12, m[s[0]], m[s[1]]);
      g(1, 5, 9, 13, m[s[2]], m[s[3]]);
      g(2, 6, 10, 14, m[s[4]], m[s[5]]);
      g(3, 7, 11, 15, m[s[6]], m[s[7]]);
      g(0, 5, 10, 15, m[s[8]], m[s[9]]);
      g(1, 6, 11, 12, m[s[10]], m[s[11]]);
      g(2, 7, 8, 13, m[s[12]], m[s[13]]);
      g(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (std::size_t i = 0; i < 8; ++i) h_[i] ^= v[i] ^ v[i + 8];
  }

  std::array<std::uint32_t, 8> h_{};
  std::array<unsigned char, block_size> buffer_{};
  std::size_t filled_ = 0;
  std::uint64_t count_ = 0;
};

void check_sizes(std::string_view key, std::string_view salt) {
  check_key(key);
  if (salt.size() > max_salt_size)
    throw std::invalid_argument("patio compat: a blake2s salt holds at most 8 bytes, not " +
                                std::to_string(salt.size()));
}

std::string blake2s_mac_openssl(std::string_view key, std::string_view salt, std::string_view message) {
  const std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)> mac(EVP_MAC_fetch(nullptr, "BLAKE2SMAC", nullptr),
                                                              EVP_MAC_free);
  if (!mac) throw error(errc::auth_failed, "OpenSSL has no BLAKE2SMAC");
  const std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(EVP_MAC_CTX_new(mac.get()), EVP_MAC_CTX_free);
  std::array<unsigned char, max_salt_size> s{};
  std::memcpy(s.data(), salt.data(), salt.size());
  std::size_t size = digest_size;
  const std::array<OSSL_PARAM, 3> params = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_SALT, s.data(), salt.size()),
      OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
      OSSL_PARAM_construct_end(),
  };
  std::array<unsigned char, digest_size> out{};
  std::size_t written = 0;
  if (!ctx ||
      EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(), params.data()) != 1 ||
      EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      EVP_MAC_final(ctx.get(), out.data(), &written, out.size()) != 1 || written != digest_size)
    throw error(errc::auth_failed, "BLAKE2SMAC failed");
  return {reinterpret_cast<const char*>(out.data()), out.size()};
}

// ---- frames -------------------------------------------------------------------

std::string frame_of(frame::type kind, std::uint32_t serial, std::string_view payload) {
  return frame::make(kind, serial, payload.data(), payload.size());
}

handshake::step fail(std::string reason) {
  return {.send = {}, .done = false, .failed = true, .reason = std::move(reason)};
}

const std::string& pickled_none() {
  static const std::string none = pickle::dumps(pickle::object::none());
  return none;
}

/// The (salt, digest, token) of an AUTH_REQUEST, or nullopt.
struct auth_request {
  std::string salt;
  std::string digest;
  std::string token;
};
std::optional<auth_request> parse_auth_request(std::string_view payload) {
  try {
    const auto o = pickle::loads_object(payload);
    if (!o.is(pickle::kind::tuple) || o.items().size() != 3) return std::nullopt;
    for (const auto& item : o.items())
      if (!item.is(pickle::kind::bytes)) return std::nullopt;
    auth_request r{o.items()[0].as_bytes(), o.items()[1].as_bytes(), o.items()[2].as_bytes()};
    if (r.salt.size() > max_salt_size || r.digest.size() != digest_size) return std::nullopt;
    return r;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::exception_ptr undecodable_request(const std::exception& e) {
  return std::make_exception_ptr(bad_arguments_error(std::string("the request did not load: ") + e.what()));
}

}  // namespace

// ---- keys ---------------------------------------------------------------------

void check_key(std::string_view key) {
  if (key.size() > max_key_size)
    throw std::invalid_argument("patio compat: blake2s takes a key of at most 32 bytes, not " +
                                std::to_string(key.size()) + " (Python's hashlib refuses it too)");
}

std::string blake2s_reference(std::string_view key, std::string_view salt, std::string_view message) {
  check_sizes(key, salt);
  blake2s_state state(key, salt);
  state.update(message);
  return state.final();
}

std::string blake2s(std::string_view key, std::string_view salt, std::string_view message) {
  check_sizes(key, salt);
  if (key.empty()) return blake2s_reference(key, salt, message);
  return blake2s_mac_openssl(key, salt, message);
}

// ---- handshake ------------------------------------------------------------------

server::server(std::string key)
    : key_(std::move(key)), challenge_(pickle::dumps(pickle::object::bytes(handshake::random_bytes(token_size)))) {
  check_key(key_);
}

std::string server::start() const { return frame_of(frame::type::auth_digest, 0, challenge_); }

handshake::step server::on_frame(const frame::header& h, std::string_view payload) {
  if (state_ != state::wait_request) return fail("unexpected packet after the handshake");
  state_ = state::failed;
  if (h.kind != frame::type::auth_request) return fail("expected AUTH_REQUEST");
  const auto request = parse_auth_request(payload);
  if (!request) return fail("malformed AUTH_REQUEST");
  // The token must be ours: one recorded from another connection is a replay.
  if (!handshake::equal(request->token, challenge_)) return fail("AUTH_REQUEST answers another challenge (a replay?)");
  if (!handshake::equal(request->digest, blake2s(key_, request->salt, request->token)))
    return fail("wrong key (blake2s digest mismatch)");
  state_ = state::done;
  return {.send = frame_of(frame::type::auth_ok, 0, pickled_none()), .done = true, .failed = false, .reason = {}};
}

client::client(std::string key) : key_(std::move(key)) { check_key(key_); }

handshake::step client::on_frame(const frame::header& h, std::string_view payload) {
  switch (state_) {
    case state::wait_digest: {
      state_ = state::failed;
      if (h.kind != frame::type::auth_digest) return fail("expected AUTH_DIGEST");
      // Python patio's client signs the payload as it came; check at least
      // that it is the pickle of a token.
      try {
        if (!pickle::loads_object(payload).is(pickle::kind::bytes)) return fail("AUTH_DIGEST holds no token");
      } catch (const std::exception& e) {
        return fail(std::string("malformed AUTH_DIGEST: ") + e.what());
      }
      const auto salt = handshake::random_bytes(salt_size);
      const auto digest = blake2s(key_, salt, payload);
      const auto answer = pickle::object::tuple(
          {pickle::object::bytes(salt), pickle::object::bytes(digest), pickle::object::bytes(std::string(payload))});
      state_ = state::wait_ok;
      return {.send = frame_of(frame::type::auth_request, 0, pickle::dumps(answer)),
              .done = false,
              .failed = false,
              .reason = {}};
    }
    case state::wait_ok:
      state_ = state::failed;
      if (h.kind != frame::type::auth_ok) return fail("expected AUTH_OK");
      state_ = state::done;
      return {.send = {}, .done = true, .failed = false, .reason = {}};
    case state::done:
    case state::failed: break;
  }
  return fail("unexpected packet after the handshake");
}

// ---- calls --------------------------------------------------------------------------

void append_request_frame(std::string& out, std::uint32_t serial, invocation& inv,
                          std::optional<double> timeout_seconds) {
  pickle::call_request request;
  request.func = inv.name;
  lazy_zone zone;
  const auto args = pickle::from_msgpack(inv.args_object(zone));
  request.args = args.items();
  if (const kwargs* kw = inv.keywords())
    for (const auto& item : *kw) request.kwargs.emplace_back(item.name, pickle::from_msgpack(item.value.object()));
  request.timeout = timeout_seconds;
  frame::append(out, frame::type::request, serial, [&](std::string& o) { pickle::dump(o, request); });
}

messages::request decode_request(std::string_view payload) {
  messages::request out;
  try {
    const auto request = pickle::loads_call_request(payload);
    out.invocation = pickle::to_invocation(request);
    if (request.timeout) {
      const double t = *request.timeout;
      if (!(t >= 0) || t > 1e9) {
        out.invocation->set_error(std::make_exception_ptr(bad_arguments_error("CallRequest: timeout out of range")));
        return out;
      }
      out.timeout_seconds = t;
    }
  } catch (const std::exception& e) {
    out.invocation = std::make_shared<encoded_invocation>(msgpack::object_handle(), msgpack::object(), kwargs{});
    out.invocation->name = "?";
    out.invocation->set_error(undecodable_request(e));
  }
  return out;
}

void append_reply_frame(std::string& out, std::uint32_t serial, const encoded_invocation& inv,
                        std::exception_ptr error) {
  if (!error) {
    try {
      const auto handle = protocol_unpack(inv.result().data(), inv.result().size(), "result");
      const auto result = pickle::from_msgpack(handle.get());
      frame::append(out, frame::type::response, serial, [&](std::string& o) { pickle::dump(o, result); });
      return;
    } catch (...) {
      error = std::current_exception();  // a result Python cannot hold goes back as its error
    }
  }
  const auto e = pickle::to_exception(record_of(error));
  frame::append(out, frame::type::error, serial, [&](std::string& o) { pickle::dump(o, e); });
}

messages::reply decode_reply(frame::type kind, std::string_view payload) {
  messages::reply out;
  if (kind == frame::type::response) {
    auto zone = std::make_unique<msgpack::zone>(zone_chunk_size);
    out.result = pickle::to_msgpack(pickle::loads_object(payload), *zone);
    out.handle = msgpack::object_handle(out.result, std::move(zone));
    out.ok = true;
    return out;
  }
  if (kind != frame::type::error) throw protocol_error("not a RESPONSE or an ERROR");
  out.error = pickle::to_error_record(pickle::loads_exception(payload));
  return out;
}

std::string discover_request_frame() { return frame_of(frame::type::discover_request, 0, pickled_none()); }

std::string discover_response_frame(const std::vector<std::string>& names) {
  pickle::object::items_type items;
  items.reserve(names.size());
  for (const auto& n : names) items.push_back(pickle::object::str(n));
  return frame_of(frame::type::discover_response, 0, pickle::dumps(pickle::object::list(std::move(items))));
}

std::vector<std::string> decode_discover_response(std::string_view payload) {
  const auto o = pickle::loads_object(payload);
  if (!o.is(pickle::kind::list) && !o.is(pickle::kind::tuple))
    throw protocol_error("DISCOVER_RESPONSE: not a list of function names");
  std::vector<std::string> names;
  names.reserve(o.items().size());
  for (const auto& item : o.items()) {
    if (!item.is(pickle::kind::str)) throw protocol_error("DISCOVER_RESPONSE: a function name is not a str");
    names.push_back(item.as_str());
  }
  return names;
}

}  // namespace patio::detail::compat
