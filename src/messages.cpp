// SPDX-License-Identifier: MIT
#include <patio/detail/messages.hpp>

namespace patio::detail::messages {

namespace {

msgpack::object_handle unpack(std::string_view payload, const char* what) {
  return protocol_unpack(payload.data(), payload.size(), what);
}

template <class T>
T field(const msgpack::object& o, const char* what) {
  return protocol_field<T>(o, what);
}

std::string frame_of(frame::type kind, std::uint32_t serial, const msgpack::sbuffer& payload) {
  return frame::make(kind, serial, payload.data(), payload.size());
}

/// Appends a frame whose payload `pack` writes through a msgpack packer.
template <class Pack>
void append_frame(std::string& out, frame::type kind, std::uint32_t serial, Pack&& pack) {
  frame::append(out, kind, serial, [&](std::string& o) {
    string_stream stream{o};
    msgpack::packer<string_stream> p(stream);
    pack(p);
  });
}

void append_raw_frame(std::string& out, frame::type kind, std::uint32_t serial, const char* payload, std::size_t size) {
  const auto h = frame::encode({kind, static_cast<std::uint32_t>(size), serial});
  out.append(reinterpret_cast<const char*>(h.data()), frame::header_size);
  out.append(payload, size);
}

template <class Packer>
void pack_request(Packer& p, invocation& inv, std::optional<double> timeout_seconds) {
  p.pack_array(4);
  pack_call(p, inv);
  if (timeout_seconds)
    p.pack(*timeout_seconds);
  else
    p.pack_nil();
}

template <class Packer>
void pack_error(Packer& p, const error_record& error) {
  p.pack_array(3);
  p.pack(static_cast<int>(error.code));
  p.pack(error.type_name);
  p.pack(error.message);
}

/// Appends what `pack` writes to `out`; leaves `out` as it was if it throws.
template <class Pack>
void append_payload(std::string& out, Pack&& pack) {
  const auto start = out.size();
  try {
    string_stream stream{out};
    msgpack::packer<string_stream> p(stream);
    pack(p);
  } catch (...) {
    out.resize(start);
    throw;
  }
}

}  // namespace

void append_request_frame(std::string& out, std::uint32_t serial, invocation& inv,
                          std::optional<double> timeout_seconds) {
  append_frame(out, frame::type::request, serial, [&](auto& p) { pack_request(p, inv, timeout_seconds); });
}

void append_request_payload(std::string& out, invocation& inv, std::optional<double> timeout_seconds) {
  append_payload(out, [&](auto& p) { pack_request(p, inv, timeout_seconds); });
}

void append_error_payload(std::string& out, const error_record& error) {
  append_payload(out, [&](auto& p) { pack_error(p, error); });
}

std::string request_frame(std::uint32_t serial, invocation& inv, std::optional<double> timeout_seconds) {
  std::string out;
  append_request_frame(out, serial, inv, timeout_seconds);
  return out;
}

request decode_request(std::string_view payload) {
  auto handle = unpack(payload, "REQUEST");
  const auto& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 4)
    throw protocol_error("REQUEST: not [name, args, kwargs, timeout]");
  const auto* f = o.via.array.ptr;
  auto name = field<std::string>(f[0], "REQUEST name");
  if (f[1].type != msgpack::type::ARRAY) throw protocol_error("REQUEST: arguments are not an array");
  request out;
  if (f[3].type != msgpack::type::NIL) {
    const auto t = field<double>(f[3], "REQUEST timeout");
    if (!(t >= 0) || t > 1e9) throw protocol_error("REQUEST: timeout out of range");
    out.timeout_seconds = t;
  }
  // Keywords that do not decode are the caller's error, answered as such.
  kwargs keywords;
  std::exception_ptr bad_keywords;
  try {
    keywords = kwargs_from_object(f[2], name);
  } catch (...) {
    bad_keywords = std::current_exception();
  }
  const msgpack::object args = f[1];
  out.invocation = std::make_shared<encoded_invocation>(std::move(handle), args, std::move(keywords));
  out.invocation->name = std::move(name);
  if (bad_keywords) out.invocation->set_error(bad_keywords);
  return out;
}

std::string response_frame(std::uint32_t serial, std::string_view packed_result) {
  return frame::make(frame::type::response, serial, packed_result.data(), packed_result.size());
}

void append_response_frame(std::string& out, std::uint32_t serial, std::string_view packed_result) {
  append_raw_frame(out, frame::type::response, serial, packed_result.data(), packed_result.size());
}

void append_error_frame(std::string& out, std::uint32_t serial, const error_record& error) {
  append_frame(out, frame::type::error, serial, [&](auto& p) { pack_error(p, error); });
}

std::string error_frame(std::uint32_t serial, const error_record& error) {
  std::string out;
  append_error_frame(out, serial, error);
  return out;
}

reply decode_reply(frame::type kind, std::string_view payload) {
  reply out;
  if (kind == frame::type::response) {
    out.handle = unpack(payload, "RESPONSE");
    out.result = out.handle.get();
    out.ok = true;
    return out;
  }
  if (kind != frame::type::error) throw protocol_error("not a RESPONSE or an ERROR");
  auto handle = unpack(payload, "ERROR");
  const auto& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 3) throw protocol_error("ERROR: not [errc, type, message]");
  const int code = field<int>(o.via.array.ptr[0], "ERROR errc");
  if (code < static_cast<int>(errc::timeout) || code > static_cast<int>(errc::worker_crashed))
    throw protocol_error("ERROR: unknown error code");
  out.error = {static_cast<errc>(code), field<std::string>(o.via.array.ptr[1], "ERROR type name"),
               field<std::string>(o.via.array.ptr[2], "ERROR message")};
  out.handle = std::move(handle);
  return out;
}

std::string cancel_frame(std::uint32_t serial) {
  msgpack::sbuffer out;
  msgpack::pack(out, msgpack::type::nil_t{});
  return frame_of(frame::type::cancel, serial, out);
}

std::string discover_request_frame() {
  msgpack::sbuffer out;
  msgpack::pack(out, msgpack::type::nil_t{});
  return frame_of(frame::type::discover_request, 0, out);
}

std::string discover_response_frame(const std::vector<std::string>& names) {
  msgpack::sbuffer out;
  msgpack::pack(out, names);
  return frame_of(frame::type::discover_response, 0, out);
}

std::vector<std::string> decode_discover_response(std::string_view payload) {
  auto handle = unpack(payload, "DISCOVER_RESPONSE");
  return field<std::vector<std::string>>(handle.get(), "DISCOVER_RESPONSE names");
}

}  // namespace patio::detail::messages
