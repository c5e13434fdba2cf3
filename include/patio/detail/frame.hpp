// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

/// The TCP broker's framing (patio's): a 9-byte header in network byte order,
/// `int8 type, uint32 payload_size, uint32 serial`, then the payload. Pure:
/// no I/O. See docs/protocol.md.
namespace patio::detail::frame {

inline constexpr std::size_t header_size = 9;

/// Packet types, with patio's numbers.
enum class type : std::uint8_t {
  auth_digest = 0,
  auth_request = 1,
  auth_response = 2,
  auth_ok = 3,
  discover_request = 5,
  discover_response = 6,
  request = 10,
  response = 20,
  error = 30,
  cancel = 40,  // patio-cpp's: the caller gave up on the REQUEST with this serial
};

/// Whether `t` is a packet type this version knows.
constexpr bool known(std::uint8_t t) noexcept {
  switch (t) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 5:
    case 6:
    case 10:
    case 20:
    case 30:
    case 40: return true;
    default: return false;
  }
}

/// Whether `t` may be sent before authentication has succeeded.
constexpr bool handshake(type t) noexcept { return static_cast<std::uint8_t>(t) <= 3; }

struct header {
  type kind = type::request;
  std::uint32_t payload_size = 0;
  std::uint32_t serial = 0;
};

/// Serials run 1..4294967294 and wrap to 1; 0 is unused.
constexpr std::uint32_t next_serial(std::uint32_t serial) noexcept { return serial >= 4294967294u ? 1u : serial + 1u; }

std::array<unsigned char, header_size> encode(const header& h) noexcept;

/// Why a header was refused.
enum class header_error { none, unknown_type, too_large, not_allowed };

/// Decodes a header. Refuses an unknown type, a payload larger than
/// `max_payload`, and before authentication anything but a handshake packet.
header_error decode(const unsigned char* data, std::size_t max_payload, bool authenticated, header& out) noexcept;

/// A whole frame: header and payload.
std::string make(type kind, std::uint32_t serial, const void* payload, std::size_t size);

/// Appends a frame to `out` whose payload `write(out)` appends in place: the
/// header first, its size filled in after. Leaves `out` as it was if `write`
/// throws.
template <class Write>
void append(std::string& out, type kind, std::uint32_t serial, Write&& write) {
  const auto start = out.size();
  out.append(header_size, '\0');
  try {
    write(out);
  } catch (...) {
    out.resize(start);
    throw;
  }
  const auto h = encode({kind, static_cast<std::uint32_t>(out.size() - start - header_size), serial});
  out.replace(start, header_size, reinterpret_cast<const char*>(h.data()), header_size);
}

}  // namespace patio::detail::frame
