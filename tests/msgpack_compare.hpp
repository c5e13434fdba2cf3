// SPDX-License-Identifier: MIT
// Deep comparison of two msgpack objects, for checking patio's decoder
// against msgpack-cxx's (tests and fuzz_messages).
#pragma once

#include <patio/detail/msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

namespace patio_test {

/// Whether `a` and `b` are the same value of the same type. Floats compare
/// by their bits (a NaN equals itself); an empty body may be null in either.
inline bool same_object(const msgpack::object& a, const msgpack::object& b) {
  if (a.type != b.type) return false;
  const auto same_body = [](const char* x, std::uint32_t xn, const char* y, std::uint32_t yn) {
    return xn == yn && (xn == 0 || std::memcmp(x, y, xn) == 0);
  };
  switch (a.type) {
    case msgpack::type::NIL: return true;
    case msgpack::type::BOOLEAN: return a.via.boolean == b.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return a.via.u64 == b.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return a.via.i64 == b.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return std::memcmp(&a.via.f64, &b.via.f64, sizeof a.via.f64) == 0;
    case msgpack::type::STR: return same_body(a.via.str.ptr, a.via.str.size, b.via.str.ptr, b.via.str.size);
    case msgpack::type::BIN: return same_body(a.via.bin.ptr, a.via.bin.size, b.via.bin.ptr, b.via.bin.size);
    case msgpack::type::EXT:
      // ptr holds the type byte, then size bytes of data.
      return same_body(a.via.ext.ptr, a.via.ext.size + 1, b.via.ext.ptr, b.via.ext.size + 1);
    case msgpack::type::ARRAY:
      if (a.via.array.size != b.via.array.size) return false;
      for (std::uint32_t i = 0; i < a.via.array.size; ++i)
        if (!same_object(a.via.array.ptr[i], b.via.array.ptr[i])) return false;
      return true;
    case msgpack::type::MAP:
      if (a.via.map.size != b.via.map.size) return false;
      for (std::uint32_t i = 0; i < a.via.map.size; ++i)
        if (!same_object(a.via.map.ptr[i].key, b.via.map.ptr[i].key) ||
            !same_object(a.via.map.ptr[i].val, b.via.map.ptr[i].val))
          return false;
      return true;
  }
  return false;
}

/// Whether patio's decoder and msgpack-cxx's unpack() (with patio's limits)
/// agree on `data`: both refuse it, or both read the same value.
inline bool decoders_agree(const char* data, std::size_t size) {
  std::optional<msgpack::object_handle> mine;
  std::optional<msgpack::object_handle> theirs;
  try {
    mine = patio::detail::decode_msgpack(data, size);
  } catch (const msgpack::unpack_error&) {
  }
  try {
    theirs = msgpack::unpack(data, size, nullptr, nullptr, patio::detail::unpack_limits(size));
  } catch (const msgpack::unpack_error&) {
  }
  if (!mine || !theirs) return !mine && !theirs;
  return same_object(mine->get(), theirs->get());
}

}  // namespace patio_test
