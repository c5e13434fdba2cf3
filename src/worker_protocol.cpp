// SPDX-License-Identifier: MIT
#include <patio/detail/worker_protocol.hpp>
#include <patio/function.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

namespace patio::detail {

namespace {

/// msgpack-cxx unpacks an empty string or binary with a null pointer, then
/// passes it to memcpy when it copies or packs the object: undefined
/// behaviour. An empty one points at a static empty string instead.
void no_null_bytes(msgpack::object& o) noexcept {
  static const char empty[1] = {};
  switch (o.type) {
    case msgpack::type::STR:
      if (!o.via.str.ptr) o.via.str.ptr = empty;
      break;
    case msgpack::type::BIN:
      if (!o.via.bin.ptr) o.via.bin.ptr = empty;
      break;
    case msgpack::type::ARRAY:
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) no_null_bytes(o.via.array.ptr[i]);
      break;
    case msgpack::type::MAP:
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        no_null_bytes(o.via.map.ptr[i].key);
        no_null_bytes(o.via.map.ptr[i].val);
      }
      break;
    default: break;
  }
}

/// The `n`-byte big-endian unsigned integer at `p`.
std::uint64_t big_endian(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

/// Reads a payload that is one number, bool or nil into `out` as msgpack-cxx
/// would (a signed encoding of a value >= 0 is a POSITIVE_INTEGER, float32
/// widens to f64; bytes after the value are ignored, as unpack() does).
/// @returns false for any other value, which unpack() reads.
/// @throws msgpack::insufficient_bytes when the value is cut short.
bool read_scalar(const char* data, std::size_t size, msgpack::object& out) {
  if (size == 0) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  const unsigned char lead = p[0];
  const auto need = [&](std::size_t n) {
    if (size < 1 + n) throw msgpack::insufficient_bytes("insufficient bytes");
    return p + 1;
  };
  const auto set_signed = [&](std::int64_t v) {
    if (v >= 0) {
      out.type = msgpack::type::POSITIVE_INTEGER;
      out.via.u64 = static_cast<std::uint64_t>(v);
    } else {
      out.type = msgpack::type::NEGATIVE_INTEGER;
      out.via.i64 = v;
    }
  };
  if (lead <= 0x7f) {
    out.type = msgpack::type::POSITIVE_INTEGER;
    out.via.u64 = lead;
  } else if (lead >= 0xe0) {
    out.type = msgpack::type::NEGATIVE_INTEGER;
    out.via.i64 = static_cast<std::int64_t>(lead) - 256;  // negative fixint: 111xxxxx
  } else if (lead == 0xc0) {
    out.type = msgpack::type::NIL;
  } else if (lead == 0xc2 || lead == 0xc3) {
    out.type = msgpack::type::BOOLEAN;
    out.via.boolean = lead == 0xc3;
  } else if (lead == 0xca) {
    const auto bits = static_cast<std::uint32_t>(big_endian(need(4), 4));
    float f = 0;
    std::memcpy(&f, &bits, sizeof f);
    out.type = msgpack::type::FLOAT32;
    out.via.f64 = f;
  } else if (lead == 0xcb) {
    const auto bits = big_endian(need(8), 8);
    double d = 0;
    std::memcpy(&d, &bits, sizeof d);
    out.type = msgpack::type::FLOAT64;
    out.via.f64 = d;
  } else if (lead >= 0xcc && lead <= 0xcf) {  // uint 8, 16, 32, 64
    const std::size_t n = std::size_t{1} << (lead - 0xcc);
    out.type = msgpack::type::POSITIVE_INTEGER;
    out.via.u64 = big_endian(need(n), n);
  } else if (lead >= 0xd0 && lead <= 0xd3) {  // int 8, 16, 32, 64
    const std::size_t n = std::size_t{1} << (lead - 0xd0);
    const std::uint64_t raw = big_endian(need(n), n);
    const unsigned shift = 64 - static_cast<unsigned>(8 * n);  // sign-extend from n bytes
    set_signed(static_cast<std::int64_t>(raw << shift) >> shift);
  } else {
    return false;
  }
  return true;
}

}  // namespace

error_record record_of(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const remote_error& e) {
    return {errc::remote_error, e.type_name(), e.what()};
  } catch (const patio::error& e) {
    return {e.value(), {}, e.what()};
  } catch (...) {
    try {
      std::rethrow_exception(wrap_task_exception(std::current_exception()));
    } catch (const remote_error& e) {
      return {errc::remote_error, e.type_name(), e.what()};
    } catch (...) {
      return {errc::remote_error, "unknown", ""};
    }
  }
}

void set_reply(invocation& inv, bool ok, const msgpack::object& result, const error_record& record) noexcept {
  if (!ok) {
    inv.set_error(exception_of(record));
    return;
  }
  try {
    inv.set_object_result(result);
  } catch (...) {
    inv.set_error(std::current_exception());
  }
}

msgpack::object_handle protocol_unpack(const char* data, std::size_t size, std::string_view what) {
  try {
    // A lone number, bool or nil (most results) needs no memory: read
    // here, with no zone and no parser.
    if (msgpack::object o; read_scalar(data, size, o)) return msgpack::object_handle(o, nullptr);
    // A zone sized for the payload, not msgpack's default 8 KiB: most
    // payloads are small, and the zone grows when one is not.
    auto zone = std::make_unique<msgpack::zone>(std::clamp<std::size_t>(2 * size + 128, 256, 8192));
    msgpack::object o = msgpack::unpack(*zone, data, size, nullptr, nullptr, unpack_limits(size));
    no_null_bytes(o);
    return msgpack::object_handle(o, std::move(zone));
  } catch (const std::exception& e) {
    throw protocol_error(std::string(what) + ": undecodable payload: " + e.what());
  }
}

std::exception_ptr exception_of(const error_record& record) {
  try {
    throw_error(record.code, record.message, record.type_name);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace patio::detail

namespace patio::detail::worker_protocol {

namespace {

msgpack::object_handle unpack(const char* data, std::size_t size) {
  return protocol_unpack(data, size, "worker protocol");
}

const msgpack::object_array& message(const msgpack::object& o, kind expected, std::uint32_t fields) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != fields ||
      o.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER ||
      o.via.array.ptr[0].via.u64 != static_cast<std::uint64_t>(expected))
    throw protocol_error("worker protocol: unexpected message");
  return o.via.array;
}

template <class T>
T field(const msgpack::object& o, const char* what) {
  return protocol_field<T>(o, std::string("worker protocol: ") + what);
}

}  // namespace

std::uint32_t payload_size(const unsigned char* header) noexcept {
  return (std::uint32_t{header[0]} << 24) | (std::uint32_t{header[1]} << 16) | (std::uint32_t{header[2]} << 8) |
         std::uint32_t{header[3]};
}

std::string frame(const msgpack::sbuffer& payload) {
  const auto n = static_cast<std::uint32_t>(payload.size());
  std::string out;
  out.resize(header_size + payload.size());
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  if (payload.size() != 0) std::memcpy(out.data() + header_size, payload.data(), payload.size());
  return out;
}

msgpack::sbuffer encode_hello(std::int64_t pid) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(3);
  p.pack(static_cast<std::uint8_t>(kind::hello));
  p.pack(version);
  p.pack(pid);
  return out;
}

msgpack::sbuffer encode_request(std::uint64_t id, invocation& inv) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(5);
  p.pack(static_cast<std::uint8_t>(kind::request));
  p.pack(id);
  pack_call(p, inv);
  return out;
}

msgpack::sbuffer encode_result(std::uint64_t id, std::string_view packed_result) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(3);
  p.pack(static_cast<std::uint8_t>(kind::result));
  p.pack(id);
  out.write(packed_result.data(), packed_result.size());
  return out;
}

msgpack::sbuffer encode_error(std::uint64_t id, const error_record& error) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(5);
  p.pack(static_cast<std::uint8_t>(kind::error));
  p.pack(id);
  p.pack(static_cast<int>(error.code));
  p.pack(error.type_name);
  p.pack(error.message);
  return out;
}

hello decode_hello(const char* data, std::size_t size) {
  auto handle = unpack(data, size);
  const auto& a = message(handle.get(), kind::hello, 3);
  return {field<std::uint32_t>(a.ptr[1], "version"), field<std::int64_t>(a.ptr[2], "pid")};
}

reply decode_reply(const char* data, std::size_t size) {
  auto handle = unpack(data, size);
  const auto& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size < 1) throw protocol_error("worker protocol: not a message");
  reply out;
  const auto k = field<std::uint8_t>(o.via.array.ptr[0], "kind");
  if (k == static_cast<std::uint8_t>(kind::result)) {
    const auto& a = message(o, kind::result, 3);
    out.id = field<std::uint64_t>(a.ptr[1], "id");
    out.ok = true;
    out.result = a.ptr[2];
  } else if (k == static_cast<std::uint8_t>(kind::error)) {
    const auto& a = message(o, kind::error, 5);
    out.id = field<std::uint64_t>(a.ptr[1], "id");
    const int code = field<int>(a.ptr[2], "errc");
    if (code < static_cast<int>(errc::timeout) || code > static_cast<int>(errc::worker_crashed))
      throw protocol_error("worker protocol: unknown error code");
    out.error = {static_cast<errc>(code), field<std::string>(a.ptr[3], "type name"),
                 field<std::string>(a.ptr[4], "message")};
  } else {
    throw protocol_error("worker protocol: unexpected message");
  }
  out.handle = std::move(handle);
  return out;
}

request decode_request(const char* data, std::size_t size) {
  auto handle = unpack(data, size);
  const auto& a = message(handle.get(), kind::request, 5);
  request out;
  out.id = field<std::uint64_t>(a.ptr[1], "id");
  auto name = field<std::string>(a.ptr[2], "name");
  if (a.ptr[3].type != msgpack::type::ARRAY) throw protocol_error("worker protocol: arguments are not an array");
  // Keywords that do not decode are the caller's error, not the pipe's:
  // the request is answered with it.
  kwargs keywords;
  std::exception_ptr bad_keywords;
  try {
    keywords = kwargs_from_object(a.ptr[4], name);
  } catch (...) {
    bad_keywords = std::current_exception();
  }
  const msgpack::object args = a.ptr[3];
  out.invocation = std::make_shared<encoded_invocation>(std::move(handle), args, std::move(keywords));
  out.invocation->name = std::move(name);
  if (bad_keywords) out.invocation->set_error(bad_keywords);
  return out;
}

}  // namespace patio::detail::worker_protocol
