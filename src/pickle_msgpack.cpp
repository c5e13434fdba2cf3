// SPDX-License-Identifier: MIT
#include <patio/detail/pickle_msgpack.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

namespace patio::detail::pickle {

namespace {

template <class T>
T* allocate(msgpack::zone& zone, std::size_t n) {
  return n == 0 ? nullptr : static_cast<T*>(zone.allocate_align(sizeof(T) * n, MSGPACK_ZONE_ALIGNOF(T)));
}

const char* copy(msgpack::zone& zone, const std::string& s) {
  // Never null: msgpack-cxx passes the pointer to memcpy even for size 0.
  if (s.empty()) return "";
  auto* p = static_cast<char*>(zone.allocate_no_align(s.size()));
  std::copy_n(s.data(), s.size(), p);
  return p;
}

std::uint32_t size32(std::size_t n) {
  if (n > std::numeric_limits<std::uint32_t>::max()) throw type_mismatch_error("pickle: too large for MessagePack");
  return static_cast<std::uint32_t>(n);
}

object key_from_msgpack(const msgpack::object& o) {
  if (o.type == msgpack::type::MAP) throw type_mismatch_error("pickle: a map as a dict key cannot be hashed in Python");
  if (o.type != msgpack::type::ARRAY) return from_msgpack(o);
  std::vector<object> items;
  items.reserve(o.via.array.size);
  for (std::uint32_t i = 0; i < o.via.array.size; ++i) items.push_back(key_from_msgpack(o.via.array.ptr[i]));
  return object::tuple(std::move(items));
}

}  // namespace

msgpack::object to_msgpack(const object& o, msgpack::zone& zone) {
  msgpack::object out;
  switch (o.type()) {
    case kind::none: out.type = msgpack::type::NIL; break;
    case kind::boolean: out = msgpack::object(o.as_bool()); break;
    case kind::integer: out = msgpack::object(o.as_int()); break;
    case kind::floating: out = msgpack::object(o.as_float()); break;
    case kind::str:
      out.type = msgpack::type::STR;
      out.via.str.size = size32(o.as_str().size());
      out.via.str.ptr = copy(zone, o.as_str());
      break;
    case kind::bytes:
      out.type = msgpack::type::BIN;
      out.via.bin.size = size32(o.as_bytes().size());
      out.via.bin.ptr = copy(zone, o.as_bytes());
      break;
    case kind::tuple:
    case kind::list: {
      const auto& items = o.items();
      out.type = msgpack::type::ARRAY;
      out.via.array.size = size32(items.size());
      out.via.array.ptr = allocate<msgpack::object>(zone, items.size());
      for (std::size_t i = 0; i < items.size(); ++i) out.via.array.ptr[i] = to_msgpack(items[i], zone);
      break;
    }
    case kind::dict: {
      const auto& entries = o.entries();
      out.type = msgpack::type::MAP;
      out.via.map.size = size32(entries.size());
      out.via.map.ptr = allocate<msgpack::object_kv>(zone, entries.size());
      for (std::size_t i = 0; i < entries.size(); ++i) {
        out.via.map.ptr[i].key = to_msgpack(entries[i].first, zone);
        out.via.map.ptr[i].val = to_msgpack(entries[i].second, zone);
      }
      break;
    }
  }
  return out;
}

object from_msgpack(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return object::none();
    case msgpack::type::BOOLEAN: return object::boolean(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw type_mismatch_error("pickle: int out of int64 range");
      return object::integer(static_cast<std::int64_t>(o.via.u64));
    case msgpack::type::NEGATIVE_INTEGER: return object::integer(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return object::floating(o.via.f64);
    case msgpack::type::STR: return object::str(std::string(o.via.str.ptr, o.via.str.size));
    case msgpack::type::BIN: return object::bytes(std::string(o.via.bin.ptr, o.via.bin.size));
    case msgpack::type::ARRAY: {
      std::vector<object> items;
      items.reserve(o.via.array.size);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) items.push_back(from_msgpack(o.via.array.ptr[i]));
      return object::list(std::move(items));
    }
    case msgpack::type::MAP: {
      object::entries_type entries;
      entries.reserve(o.via.map.size);
      for (std::uint32_t i = 0; i < o.via.map.size; ++i)
        entries.emplace_back(key_from_msgpack(o.via.map.ptr[i].key), from_msgpack(o.via.map.ptr[i].val));
      return object::dict(std::move(entries));
    }
    case msgpack::type::EXT: break;
  }
  throw type_mismatch_error("pickle: a MessagePack " + std::string(detail::kind_name(o)) + " has no Python equivalent");
}

std::shared_ptr<encoded_invocation> to_invocation(const call_request& r) {
  auto zone = std::make_unique<msgpack::zone>(zone_chunk_size);
  const msgpack::object args = to_msgpack(object::tuple(r.args), *zone);
  kwargs keywords;
  for (const auto& [name, v] : r.kwargs) {
    msgpack::zone kz(zone_chunk_size);
    keywords.set(name, value(to_msgpack(v, kz)));
  }
  auto inv =
      std::make_shared<encoded_invocation>(msgpack::object_handle(args, std::move(zone)), args, std::move(keywords));
  inv->name = r.func;
  return inv;
}

exception to_exception(const error_record& e) {
  std::string type = "RuntimeError";
  switch (e.code) {
    case errc::bad_arguments:
    case errc::type_mismatch: type = "TypeError"; break;
    case errc::timeout: type = "TimeoutError"; break;
    case errc::remote_error:
      if (is_builtin_exception(e.type_name)) type = e.type_name;
      break;
    default: break;
  }
  // A C++ message need not be UTF-8; Python's str must be.
  std::string message = e.message;
  if (!is_utf8(message))
    for (auto& c : message)
      if (static_cast<unsigned char>(c) >= 0x80) c = '?';
  return {std::move(type), {object::str(std::move(message))}};
}

error_record to_error_record(const exception& e) { return {errc::remote_error, e.type_name, e.message()}; }

}  // namespace patio::detail::pickle
