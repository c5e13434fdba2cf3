// SPDX-License-Identifier: MIT
// A MessagePack decoder for received payloads: the objects msgpack-cxx's
// unpack() makes, in two passes over the bytes. The first checks the value
// and counts what it needs (objects, bytes of strings); the second builds it
// in one zone of exactly that size. msgpack-cxx's parser grows two stacks
// and a zone of guessed size per payload (four allocations for a call's
// arguments, about 1,600 instructions); this makes two, or none for a
// scalar or an empty container.
#include <patio/detail/msgpack.hpp>

#include <cstdint>
#include <cstring>
#include <memory>

namespace patio::detail {

namespace {

/// The `n`-byte big-endian unsigned integer at `p`.
std::uint64_t big_endian(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

/// The head of a value: a scalar's value, or a container's count of
/// elements, or the size of a string's, binary's or extension's body (an
/// extension's counts its type byte, as msgpack-cxx's does).
struct head {
  msgpack::type::object_type type = msgpack::type::NIL;
  std::uint64_t length = 0;  // ARRAY, MAP, STR, BIN, EXT
  msgpack::object scalar;    // the others
};

bool is_container(msgpack::type::object_type t) noexcept {
  return t == msgpack::type::ARRAY || t == msgpack::type::MAP;
}
bool has_body(msgpack::type::object_type t) noexcept {
  return t == msgpack::type::STR || t == msgpack::type::BIN || t == msgpack::type::EXT;
}

class cursor {
 public:
  cursor(const char* data, std::size_t size) noexcept
      : p_(reinterpret_cast<const unsigned char*>(data)), end_(p_ + size) {}

  [[nodiscard]] std::size_t left() const noexcept { return static_cast<std::size_t>(end_ - p_); }

  /// The next `n` bytes. @throws msgpack::insufficient_bytes
  const unsigned char* take(std::size_t n) {
    if (left() < n) throw msgpack::insufficient_bytes("insufficient bytes");
    const auto* at = p_;
    p_ += n;
    return at;
  }
  std::uint64_t number(std::size_t n) { return big_endian(take(n), n); }

  /// Reads the head of the next value. @throws msgpack::insufficient_bytes
  /// when it is cut short, msgpack::parse_error for 0xc1 (never used).
  head next() {
    head h;
    const unsigned char lead = *take(1);
    const auto set = [&](msgpack::type::object_type t, std::uint64_t length) {
      h.type = t;
      h.length = length;
    };
    const auto set_signed = [&](std::int64_t v) {
      // msgpack-cxx makes a signed encoding of a value >= 0 a positive integer.
      if (v >= 0) {
        h.scalar.type = msgpack::type::POSITIVE_INTEGER;
        h.scalar.via.u64 = static_cast<std::uint64_t>(v);
      } else {
        h.scalar.type = msgpack::type::NEGATIVE_INTEGER;
        h.scalar.via.i64 = v;
      }
    };
    if (lead <= 0x7f) {
      h.scalar.type = msgpack::type::POSITIVE_INTEGER;
      h.scalar.via.u64 = lead;
    } else if (lead <= 0x8f) {
      set(msgpack::type::MAP, lead & 0x0fU);
    } else if (lead <= 0x9f) {
      set(msgpack::type::ARRAY, lead & 0x0fU);
    } else if (lead <= 0xbf) {
      set(msgpack::type::STR, lead & 0x1fU);
    } else if (lead >= 0xe0) {
      h.scalar.type = msgpack::type::NEGATIVE_INTEGER;
      h.scalar.via.i64 = static_cast<std::int64_t>(lead) - 256;  // negative fixint: 111xxxxx
    } else {
      switch (lead) {
        case 0xc0: h.scalar.type = msgpack::type::NIL; break;
        case 0xc2:
        case 0xc3:
          h.scalar.type = msgpack::type::BOOLEAN;
          h.scalar.via.boolean = lead == 0xc3;
          break;
        case 0xc4: set(msgpack::type::BIN, number(1)); break;
        case 0xc5: set(msgpack::type::BIN, number(2)); break;
        case 0xc6: set(msgpack::type::BIN, number(4)); break;
        case 0xc7: set(msgpack::type::EXT, number(1) + 1); break;
        case 0xc8: set(msgpack::type::EXT, number(2) + 1); break;
        case 0xc9: set(msgpack::type::EXT, number(4) + 1); break;
        case 0xca: {
          const auto bits = static_cast<std::uint32_t>(number(4));
          float f = 0;
          std::memcpy(&f, &bits, sizeof f);
          h.scalar.type = msgpack::type::FLOAT32;
          h.scalar.via.f64 = f;
          break;
        }
        case 0xcb: {
          const auto bits = number(8);
          double d = 0;
          std::memcpy(&d, &bits, sizeof d);
          h.scalar.type = msgpack::type::FLOAT64;
          h.scalar.via.f64 = d;
          break;
        }
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
          h.scalar.type = msgpack::type::POSITIVE_INTEGER;
          h.scalar.via.u64 = number(std::size_t{1} << (lead - 0xcc));
          break;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3: {
          const std::size_t n = std::size_t{1} << (lead - 0xd0);
          const unsigned shift = 64 - static_cast<unsigned>(8 * n);  // sign-extend from n bytes
          set_signed(static_cast<std::int64_t>(number(n) << shift) >> shift);
          break;
        }
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8: set(msgpack::type::EXT, (std::uint64_t{1} << (lead - 0xd4)) + 1); break;
        case 0xd9: set(msgpack::type::STR, number(1)); break;
        case 0xda: set(msgpack::type::STR, number(2)); break;
        case 0xdb: set(msgpack::type::STR, number(4)); break;
        case 0xdc: set(msgpack::type::ARRAY, number(2)); break;
        case 0xdd: set(msgpack::type::ARRAY, number(4)); break;
        case 0xde: set(msgpack::type::MAP, number(2)); break;
        case 0xdf: set(msgpack::type::MAP, number(4)); break;
        default: throw msgpack::parse_error("parse error");  // 0xc1
      }
    }
    if (!is_container(h.type) && !has_body(h.type)) h.type = h.scalar.type;  // set() was not called
    return h;
  }

 private:
  const unsigned char* p_;
  const unsigned char* end_;
};

/// What a value needs: objects for its containers' elements, bytes for its
/// bodies.
struct needs {
  std::size_t objects = 0;
  std::size_t bytes = 0;
};

/// First pass: checks the value at `in` (`level` 1 for the outermost) and
/// adds what it needs to `out`. Limits as unpack_limits() sets them: a
/// container nests at most max_unpack_depth deep, and claims no more
/// elements than the bytes left could hold (so a cut or lying header never
/// makes the second pass allocate).
void measure(cursor& in, std::size_t level, needs& out) {
  const head h = in.next();
  if (has_body(h.type)) {
    in.take(h.length);
    out.bytes += h.length;
    return;
  }
  if (!is_container(h.type)) return;
  if (level > max_unpack_depth) throw msgpack::depth_size_overflow("depth size overflow");
  const std::uint64_t elements = h.type == msgpack::type::MAP ? 2 * h.length : h.length;
  if (elements > in.left()) throw msgpack::insufficient_bytes("insufficient bytes");
  out.objects += elements;
  for (std::uint64_t i = 0; i < elements; ++i) measure(in, level + 1, out);
}

/// Second pass: builds the value measure() checked, in `zone`.
void build(cursor& in, msgpack::object& out, msgpack::zone* zone) {
  static const char empty[1] = {};
  const head h = in.next();
  out.type = h.type;
  switch (h.type) {
    case msgpack::type::STR:
    case msgpack::type::BIN:
    case msgpack::type::EXT: {
      const auto size = static_cast<std::uint32_t>(h.length);
      const char* body = empty;  // never null: msgpack-cxx passes it to memcpy when it copies
      if (size) {
        char* copy = static_cast<char*>(zone->allocate_no_align(size));
        std::memcpy(copy, in.take(size), size);
        body = copy;
      }
      if (h.type == msgpack::type::STR) {
        out.via.str = {size, body};
      } else if (h.type == msgpack::type::BIN) {
        out.via.bin = {size, body};
      } else {
        out.via.ext = {size - 1, body};  // the type byte, then the data
      }
      break;
    }
    case msgpack::type::ARRAY: {
      const auto size = static_cast<std::uint32_t>(h.length);
      msgpack::object* items = nullptr;  // as msgpack-cxx leaves an empty one
      if (size) {
        items = static_cast<msgpack::object*>(
            zone->allocate_align(sizeof(msgpack::object) * size, MSGPACK_ZONE_ALIGNOF(msgpack::object)));
        for (std::uint32_t i = 0; i < size; ++i) build(in, *new (items + i) msgpack::object(), zone);
      }
      out.via.array = {size, items};
      break;
    }
    case msgpack::type::MAP: {
      const auto size = static_cast<std::uint32_t>(h.length);
      msgpack::object_kv* entries = nullptr;
      if (size) {
        entries = static_cast<msgpack::object_kv*>(
            zone->allocate_align(sizeof(msgpack::object_kv) * size, MSGPACK_ZONE_ALIGNOF(msgpack::object_kv)));
        for (std::uint32_t i = 0; i < size; ++i) {
          auto* kv = new (entries + i) msgpack::object_kv();
          build(in, kv->key, zone);
          build(in, kv->val, zone);
        }
      }
      out.via.map = {size, entries};
      break;
    }
    default: out = h.scalar; break;
  }
}

}  // namespace

msgpack::object_handle decode_msgpack(const char* data, std::size_t size) {
  needs n;
  {
    cursor in(data, size);
    measure(in, 1, n);
  }
  std::unique_ptr<msgpack::zone> zone;
  if (n.objects || n.bytes) {
    // One chunk holds it all: the objects, the bodies, and the padding to
    // align each container's elements.
    zone = std::make_unique<msgpack::zone>(n.objects * sizeof(msgpack::object) + n.bytes +
                                           (n.objects + 1) * alignof(msgpack::object));
  }
  cursor in(data, size);
  msgpack::object o;
  build(in, o, zone.get());
  return {o, std::move(zone)};
}

}  // namespace patio::detail
