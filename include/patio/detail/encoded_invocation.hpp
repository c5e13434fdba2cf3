// SPDX-License-Identifier: MIT
#pragma once

#include <patio/codec.hpp>
#include <patio/detail/invocation.hpp>
#include <patio/error.hpp>

#include <cstdint>
#include <exception>
#include <string>
#include <string_view>

namespace patio::detail {

/// An error as it crosses a boundary (a process, a socket): its code, the
/// remote exception's type name (for remote_error) and message.
struct error_record {
  errc code = errc::remote_error;
  std::string type_name;
  std::string message;
};

/// What an executing side sends back for `error`.
error_record record_of(std::exception_ptr error);

/// The exception the calling side raises for `record`.
std::exception_ptr exception_of(const error_record& record);

/// Puts a reply into `inv`: the result converted to what the caller wants
/// (a failed conversion becomes the error), or the error of `record`.
void set_reply(invocation& inv, bool ok, const msgpack::object& result, const error_record& record) noexcept;

/// Packs what a call carries: its name, its positional arguments (an
/// array) and its keyword arguments (a map, empty when none).
template <class Stream>
void pack_call(msgpack::packer<Stream>& p, invocation& inv) {
  lazy_zone zone;
  p.pack(inv.name);
  p.pack(inv.args_object(zone));
  if (const kwargs* kw = inv.keywords())
    p.pack(kwargs_object(*kw, zone.get()));
  else
    p.pack_map(0);
}

/// Unpacks a received payload. @throws patio::protocol_error naming `what`.
msgpack::object_handle protocol_unpack(const char* data, std::size_t size, std::string_view what);

/// A received field as T. @throws patio::protocol_error naming `what`.
template <class T>
T protocol_field(const msgpack::object& o, std::string_view what) {
  try {
    return o.as<T>();
  } catch (const std::exception&) {
    throw protocol_error("bad field: " + std::string(what));
  }
}

/// A msgpack stream that appends to a std::string.
struct string_stream {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};

/// An invocation that arrived encoded (from another process or machine):
/// arguments are a MessagePack array in its own zone, the result is packed
/// into `result` for the way back.
class encoded_invocation final : public invocation {
 public:
  encoded_invocation(msgpack::object_handle request, const msgpack::object& args, kwargs keywords)
      : request_(std::move(request)), args_(args), keywords_(std::move(keywords)) {}

  [[nodiscard]] type_id args_type() const noexcept override { return nullptr; }
  void* typed_args() noexcept override { return nullptr; }
  msgpack::object args_object(lazy_zone&) const override { return args_; }
  [[nodiscard]] const kwargs* keywords() const noexcept override { return keywords_.empty() ? nullptr : &keywords_; }

  [[nodiscard]] type_id result_type() const noexcept override { return nullptr; }
  void set_typed_result(void*) override {}
  void set_object_result(const msgpack::object& result) override {
    result_.clear();
    string_stream stream{result_};
    msgpack::pack(stream, result);
  }

  /// The packed result, valid when error() is null.
  [[nodiscard]] std::string_view result() const noexcept { return result_; }
  [[nodiscard]] std::exception_ptr error() const noexcept { return error_; }

  /// For the broker that received it: the peer gave up (a CANCEL, or the
  /// connection's end), nobody wants the reply.
  bool peer_cancelled = false;

 private:
  msgpack::object_handle request_;
  msgpack::object args_;
  kwargs keywords_;
  std::string result_;  // a small result (a number) needs no allocation
};

}  // namespace patio::detail
