// SPDX-License-Identifier: MIT
#include <patio/detail/msgpack.hpp>
#include <patio/detail/worker_protocol.hpp>
#include <patio/function.hpp>

#include <cstdint>
#include <cstring>
#include <memory>

namespace patio::detail {

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
    return decode_msgpack(data, size);
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
