// SPDX-License-Identifier: MIT
#pragma once

// msgpack-cxx without Boost: the adaptors patio supports are all std types.
#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif

#include <msgpack.hpp>

#include <cstddef>

namespace patio::detail {

/// How deeply received MessagePack may nest; deeper is refused as malformed.
inline constexpr std::size_t max_unpack_depth = 256;

/// Limits for unpacking a payload of `size` bytes. msgpack-cxx allocates a
/// container's elements from its header, before reading them: without these
/// a 5-byte map32 header would ask for 128 GiB. An element takes a byte at
/// least, a map entry two.
inline msgpack::unpack_limit unpack_limits(std::size_t size) noexcept {
  return {size, size / 2, size, size, size, max_unpack_depth};
}

/// Decodes the MessagePack value at the start of `data` (bytes after it are
/// ignored) into the objects msgpack::unpack() makes with unpack_limits(size),
/// with one exception: an empty string or binary points at a static empty
/// string, not null (msgpack-cxx would pass null to memcpy when copying it).
/// Needs two allocations (a zone sized exactly), none for a value with no
/// container or body.
/// @throws msgpack::unpack_error (insufficient_bytes when cut short,
///   parse_error, depth_size_overflow beyond max_unpack_depth).
msgpack::object_handle decode_msgpack(const char* data, std::size_t size);

}  // namespace patio::detail
