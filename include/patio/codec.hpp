// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/describe.hpp>
#include <patio/detail/msgpack.hpp>
#include <patio/error.hpp>

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// Opts a struct into the codec: its listed members travel as a MessagePack
/// map keyed by member name, so the other side may add or reorder fields.
/// @code
/// struct point { double x, y; PATIO_FIELDS(x, y); };
/// @endcode
#define PATIO_FIELDS(...)         \
  MSGPACK_DEFINE_MAP(__VA_ARGS__) \
  static_assert(true, "PATIO_FIELDS is used as a declaration, with a semicolon")

namespace patio {

class value;

namespace detail {
/// What value's encoding constructor takes: anything but a value or an object.
template <class T>
concept encodable =
    !std::is_same_v<std::remove_cvref_t<T>, value> && !std::is_same_v<std::remove_cvref_t<T>, msgpack::object>;

/// First chunk of the zones that hold one call's arguments or result:
/// msgpack-cxx's default (8 KiB) would cost a large allocation per call; a
/// zone grows by itself when a payload needs more.
inline constexpr std::size_t zone_chunk_size = 256;
}  // namespace detail

/// Raw bytes; travel as MessagePack bin.
using bytes = std::vector<std::byte>;

/// As the last parameter of a registered function, collects every remaining
/// positional argument, like Python's `*args`:
/// @code
/// std::int64_t mul(patio::varargs<std::int64_t> args);   // call("mul", 1, 2, 3)
/// @endcode
template <class T>
class varargs : public std::vector<T> {
 public:
  using std::vector<T>::vector;
  varargs() = default;
  explicit varargs(std::vector<T> values) : std::vector<T>(std::move(values)) {}
};

/// A dynamically typed MessagePack value: what an untyped call returns, and
/// a parameter type that accepts anything. Copies are cheap (they share the
/// immutable storage).
class value {
 public:
  enum class kind { nil, boolean, integer, floating, string, binary, array, map, extension };

  /// nil
  value() noexcept = default;

  /// A deep copy of `object`.
  explicit value(const msgpack::object& object);

  /// Encodes `v` through the codec.
  template <detail::encodable T>
  explicit value(const T& v) {
    auto zone = std::make_shared<msgpack::zone>(detail::zone_chunk_size);
    object_ = msgpack::object(v, *zone);
    zone_ = std::move(zone);
  }

  [[nodiscard]] kind type() const noexcept;
  [[nodiscard]] bool is_nil() const noexcept { return type() == kind::nil; }
  [[nodiscard]] bool is_bool() const noexcept { return type() == kind::boolean; }
  [[nodiscard]] bool is_int() const noexcept { return type() == kind::integer; }
  [[nodiscard]] bool is_float() const noexcept { return type() == kind::floating; }
  [[nodiscard]] bool is_string() const noexcept { return type() == kind::string; }
  [[nodiscard]] bool is_bytes() const noexcept { return type() == kind::binary; }
  [[nodiscard]] bool is_array() const noexcept { return type() == kind::array; }
  [[nodiscard]] bool is_map() const noexcept { return type() == kind::map; }

  /// Converts to T.
  /// @throws patio::type_mismatch_error if the value does not fit T.
  template <class T>
  [[nodiscard]] T as() const;

  /// Elements of an array or map, bytes of a string or bin, else 0.
  [[nodiscard]] std::size_t size() const noexcept;

  /// Element `i` of an array.
  /// @throws patio::type_mismatch_error if not an array; std::out_of_range.
  [[nodiscard]] value operator[](std::size_t i) const;

  /// The value under string key `key` of a map.
  /// @throws patio::type_mismatch_error if not a map; std::out_of_range.
  [[nodiscard]] value operator[](std::string_view key) const;

  /// The value under `key`, or nothing when absent or not a map.
  [[nodiscard]] std::optional<value> find(std::string_view key) const;

  /// JSON-like text: null, true, 6, 2.5, "text", b"\x01", [1, 2], {"k": 1}.
  [[nodiscard]] std::string to_string() const;

  /// The underlying MessagePack object; valid while this value lives.
  [[nodiscard]] const msgpack::object& object() const noexcept { return object_; }

  friend bool operator==(const value& a, const value& b) noexcept { return a.object_ == b.object_; }

 private:
  value(std::shared_ptr<const msgpack::zone> zone, const msgpack::object& object) noexcept
      : zone_(std::move(zone)), object_(object) {}

  std::shared_ptr<const msgpack::zone> zone_;
  msgpack::object object_;
};

/// Keyword arguments, Python's `**kwargs`. As the last argument of a call
/// it travels as the request's keyword map; as the last parameter of a
/// registered function it receives that map. A function without one refuses
/// keyword arguments.
/// @code
/// co_await broker.call("greet", "Ann", patio::kwargs{{"greeting", "hi"}, {"times", 2}});
/// std::string greet(std::string name, patio::kwargs kw);   // kw.get<int>("times", 1)
/// @endcode
class kwargs {
 public:
  /// One `name = value` pair; converts from any encodable value.
  struct item {
    template <class T>
    item(std::string key, const T& v) : name(std::move(key)), value(make(v)) {}

    std::string name;
    patio::value value;

   private:
    template <class T>
    static patio::value make(const T& v) {
      if constexpr (std::is_same_v<T, patio::value>)
        return v;
      else
        return patio::value(v);
    }
  };

  kwargs() = default;
  kwargs(std::initializer_list<item> items) : items_(items) {}

  /// Sets `name` (replacing an earlier value).
  void set(std::string name, patio::value v) {
    for (auto& i : items_)
      if (i.name == name) {
        i.value = std::move(v);
        return;
      }
    items_.push_back({std::move(name), std::move(v)});
  }

  [[nodiscard]] std::optional<patio::value> find(std::string_view name) const {
    for (const auto& i : items_)
      if (i.name == name) return i.value;
    return std::nullopt;
  }
  [[nodiscard]] bool contains(std::string_view name) const { return find(name).has_value(); }

  /// The value of `name` converted to T.
  /// @throws patio::bad_arguments_error when absent; patio::type_mismatch_error.
  template <class T = patio::value>
  [[nodiscard]] T get(std::string_view name) const {
    if (auto v = find(name)) return v->template as<T>();
    throw bad_arguments_error("missing keyword argument '" + std::string(name) + "'");
  }

  /// The value of `name` converted to T, or `fallback` when absent.
  template <class T>
  [[nodiscard]] T get(std::string_view name, T fallback) const {
    if (auto v = find(name)) return v->template as<T>();
    return fallback;
  }

  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
  [[nodiscard]] auto begin() const noexcept { return items_.begin(); }
  [[nodiscard]] auto end() const noexcept { return items_.end(); }

  friend bool operator==(const kwargs& a, const kwargs& b) noexcept {
    if (a.size() != b.size()) return false;
    for (const auto& i : a.items_) {
      auto v = b.find(i.name);
      if (!v || !(*v == i.value)) return false;
    }
    return true;
  }

 private:
  std::vector<item> items_;
};

namespace detail {

template <class T>
inline constexpr bool is_varargs = false;
template <class T>
inline constexpr bool is_varargs<varargs<T>> = true;

template <class T>
inline constexpr bool is_kwargs = std::is_same_v<T, kwargs>;

/// `kw` as a MessagePack map in `zone`.
msgpack::object kwargs_object(const kwargs& kw, msgpack::zone& zone);

/// A MessagePack map with string keys as kwargs.
/// @throws patio::bad_arguments_error for another kind of object or key.
kwargs kwargs_from_object(const msgpack::object& o, const std::string& function);

/// The codec's name of what `o` holds ("int", "str", "array", ...).
std::string_view kind_name(const msgpack::object& o) noexcept;

/// Converts `o` to T; on failure throws patio::type_mismatch_error with
/// `context` first, e.g. "mul: result: expected int64, got str".
template <class T>
void convert_to(const msgpack::object& o, T& out, std::string_view context) {
  try {
    o.convert(out);
  } catch (const std::exception&) {
    throw type_mismatch_error(std::string(context) + "expected " + describe<T>() + ", got " +
                              std::string(kind_name(o)));
  }
}

}  // namespace detail

template <class T>
T value::as() const {
  if constexpr (std::is_same_v<T, value>) {
    return *this;
  } else {
    T out{};
    detail::convert_to(object_, out, "");
    return out;
  }
}

}  // namespace patio

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <>
  struct convert<patio::value> {
    const msgpack::object& operator()(const msgpack::object& o, patio::value& v) const {
      v = patio::value(o);
      return o;
    }
  };

  template <>
  struct pack<patio::value> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& p, const patio::value& v) const {
      p.pack(v.object());
      return p;
    }
  };

  template <>
  struct object_with_zone<patio::value> {
    void operator()(msgpack::object::with_zone& o, const patio::value& v) const {
      static_cast<msgpack::object&>(o) = msgpack::object(v.object(), o.zone);
    }
  };

  }  // namespace adaptor
}
}  // namespace msgpack
