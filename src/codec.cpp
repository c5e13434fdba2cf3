// SPDX-License-Identifier: MIT
#include <patio/codec.hpp>

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

namespace patio {

namespace {

void append_string(std::string& out, std::string_view text) {
  out += '"';
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20)
          out += fmt::format("\\u{:04x}", c);
        else
          out += static_cast<char>(c);
    }
  }
  out += '"';
}

void append(std::string& out, const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: out += "null"; break;
    case msgpack::type::BOOLEAN: out += o.via.boolean ? "true" : "false"; break;
    case msgpack::type::POSITIVE_INTEGER: out += fmt::format("{}", o.via.u64); break;
    case msgpack::type::NEGATIVE_INTEGER: out += fmt::format("{}", o.via.i64); break;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      if (std::isfinite(o.via.f64) && o.via.f64 == std::floor(o.via.f64) && std::fabs(o.via.f64) < 1e15)
        out += fmt::format("{:.1f}", o.via.f64);
      else
        out += fmt::format("{}", o.via.f64);
      break;
    case msgpack::type::STR: append_string(out, {o.via.str.ptr, o.via.str.size}); break;
    case msgpack::type::BIN:
      out += "b\"";
      for (std::uint32_t i = 0; i < o.via.bin.size; ++i)
        out += fmt::format("\\x{:02x}", static_cast<unsigned char>(o.via.bin.ptr[i]));
      out += '"';
      break;
    case msgpack::type::ARRAY:
      out += '[';
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        if (i) out += ", ";
        append(out, o.via.array.ptr[i]);
      }
      out += ']';
      break;
    case msgpack::type::MAP:
      out += '{';
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        if (i) out += ", ";
        append(out, o.via.map.ptr[i].key);
        out += ": ";
        append(out, o.via.map.ptr[i].val);
      }
      out += '}';
      break;
    case msgpack::type::EXT: out += fmt::format("ext({}, {} bytes)", o.via.ext.type(), o.via.ext.size); break;
  }
}

}  // namespace

value::value(const msgpack::object& object) {
  auto zone = std::make_shared<msgpack::zone>(detail::zone_chunk_size);
  object_ = msgpack::object(object, *zone);
  zone_ = std::move(zone);
}

value::kind value::type() const noexcept {
  switch (object_.type) {
    case msgpack::type::NIL: return kind::nil;
    case msgpack::type::BOOLEAN: return kind::boolean;
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return kind::integer;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return kind::floating;
    case msgpack::type::STR: return kind::string;
    case msgpack::type::BIN: return kind::binary;
    case msgpack::type::ARRAY: return kind::array;
    case msgpack::type::MAP: return kind::map;
    case msgpack::type::EXT: return kind::extension;
  }
  return kind::nil;
}

std::size_t value::size() const noexcept {
  switch (object_.type) {
    case msgpack::type::ARRAY: return object_.via.array.size;
    case msgpack::type::MAP: return object_.via.map.size;
    case msgpack::type::STR: return object_.via.str.size;
    case msgpack::type::BIN: return object_.via.bin.size;
    default: return 0;
  }
}

value value::operator[](std::size_t i) const {
  if (object_.type != msgpack::type::ARRAY)
    throw type_mismatch_error("value[" + std::to_string(i) + "]: expected array, got " +
                              std::string(detail::kind_name(object_)));
  if (i >= object_.via.array.size)
    throw std::out_of_range("value[" + std::to_string(i) + "]: array has " + std::to_string(object_.via.array.size) +
                            " elements");
  return {zone_, object_.via.array.ptr[i]};
}

std::optional<value> value::find(std::string_view key) const {
  if (object_.type != msgpack::type::MAP) return std::nullopt;
  for (std::uint32_t i = 0; i < object_.via.map.size; ++i) {
    const auto& k = object_.via.map.ptr[i].key;
    if (k.type == msgpack::type::STR && std::string_view(k.via.str.ptr, k.via.str.size) == key)
      return value(zone_, object_.via.map.ptr[i].val);
  }
  return std::nullopt;
}

value value::operator[](std::string_view key) const {
  if (object_.type != msgpack::type::MAP)
    throw type_mismatch_error("value[\"" + std::string(key) + "\"]: expected map, got " +
                              std::string(detail::kind_name(object_)));
  if (auto v = find(key)) return *v;
  throw std::out_of_range("value[\"" + std::string(key) + "\"]: no such key");
}

std::string value::to_string() const {
  std::string out;
  append(out, object_);
  return out;
}

namespace detail {

msgpack::object kwargs_object(const kwargs& kw, msgpack::zone& zone) {
  msgpack::object out;
  out.type = msgpack::type::MAP;
  out.via.map.size = static_cast<std::uint32_t>(kw.size());
  out.via.map.ptr = kw.empty() ? nullptr
                               : static_cast<msgpack::object_kv*>(zone.allocate_align(
                                     sizeof(msgpack::object_kv) * kw.size(), MSGPACK_ZONE_ALIGNOF(msgpack::object_kv)));
  std::size_t i = 0;
  for (const auto& item : kw) {
    out.via.map.ptr[i].key = msgpack::object(item.name, zone);
    out.via.map.ptr[i].val = msgpack::object(item.value.object(), zone);
    ++i;
  }
  return out;
}

kwargs kwargs_from_object(const msgpack::object& o, const std::string& function) {
  kwargs out;
  if (o.type == msgpack::type::NIL) return out;
  if (o.type != msgpack::type::MAP)
    throw bad_arguments_error(function + ": keyword arguments are not a map, got " + std::string(kind_name(o)));
  for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
    const auto& k = o.via.map.ptr[i].key;
    if (k.type != msgpack::type::STR)
      throw bad_arguments_error(function + ": a keyword argument's name is not a string, got " +
                                std::string(kind_name(k)));
    out.set(std::string(k.via.str.ptr, k.via.str.size), value(o.via.map.ptr[i].val));
  }
  return out;
}

std::string_view kind_name(const msgpack::object& o) noexcept {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "int";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bytes";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "unknown";
}

}  // namespace detail

}  // namespace patio
