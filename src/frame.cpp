// SPDX-License-Identifier: MIT
#include <patio/detail/frame.hpp>

#include <cstring>

namespace patio::detail::frame {

namespace {
void put32(unsigned char* p, std::uint32_t v) noexcept {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}
std::uint32_t get32(const unsigned char* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}
}  // namespace

std::array<unsigned char, header_size> encode(const header& h) noexcept {
  std::array<unsigned char, header_size> out{};
  out[0] = static_cast<unsigned char>(h.kind);
  put32(out.data() + 1, h.payload_size);
  put32(out.data() + 5, h.serial);
  return out;
}

header_error decode(const unsigned char* data, std::size_t max_payload, bool authenticated, header& out) noexcept {
  if (!known(data[0])) return header_error::unknown_type;
  out.kind = static_cast<type>(data[0]);
  out.payload_size = get32(data + 1);
  out.serial = get32(data + 5);
  if (!authenticated && !handshake(out.kind)) return header_error::not_allowed;
  if (out.payload_size > max_payload) return header_error::too_large;
  return header_error::none;
}

std::string make(type kind, std::uint32_t serial, const void* payload, std::size_t size) {
  std::string out(header_size + size, '\0');
  const auto h = encode({kind, static_cast<std::uint32_t>(size), serial});
  std::memcpy(out.data(), h.data(), header_size);
  if (size != 0) std::memcpy(out.data() + header_size, payload, size);
  return out;
}

}  // namespace patio::detail::frame
