// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/describe.hpp>
#include <patio/detail/msgpack.hpp>
#include <patio/error.hpp>

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
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

/// @cond internals
namespace detail {
/// What value's encoding constructor takes: anything but a value or an object.
template <class T>
concept encodable =
    !std::is_same_v<std::remove_cvref_t<T>, value> && !std::is_same_v<std::remove_cvref_t<T>, msgpack::object>;

/// First chunk of the zones that hold one call's arguments or result:
/// msgpack-cxx's default (8 KiB) would cost a large allocation per call; a
/// zone grows by itself when a payload needs more.
inline constexpr std::size_t zone_chunk_size = 256;

/// A zone made on first use: a call whose arguments or result already have
/// the right types, or arrive in a zone of their own, never needs one (and
/// a zone allocates its first chunk as it is made). The first array of
/// objects asked for (a call's few arguments) comes from a buffer inside it.
class lazy_zone {
 public:
  lazy_zone() = default;
  lazy_zone(const lazy_zone&) = delete;
  lazy_zone& operator=(const lazy_zone&) = delete;
  lazy_zone(lazy_zone&&) = delete;
  lazy_zone& operator=(lazy_zone&&) = delete;
  ~lazy_zone() = default;

  msgpack::zone& get() {
    if (!zone_) zone_.emplace(zone_chunk_size);
    return *zone_;
  }

  /// Room for `n` objects (nil), valid as long as this zone.
  msgpack::object* objects(std::size_t n) {
    msgpack::object* out = nullptr;
    if (n <= inline_objects && !buffer_used_) {
      buffer_used_ = true;
      out = reinterpret_cast<msgpack::object*>(buffer_);
    } else {
      out = static_cast<msgpack::object*>(
          get().allocate_align(sizeof(msgpack::object) * n, MSGPACK_ZONE_ALIGNOF(msgpack::object)));
    }
    for (std::size_t i = 0; i < n; ++i) new (out + i) msgpack::object();
    return out;
  }

  /// `v` as an object: numbers need no memory, anything else is copied
  /// into the zone.
  template <class T>
  msgpack::object object(const T& v) {
    if constexpr (std::is_arithmetic_v<T>)
      return msgpack::object(v);
    else
      return msgpack::object(v, get());
  }

 private:
  static constexpr std::size_t inline_objects = 8;
  bool buffer_used_ = false;
  alignas(msgpack::object) std::byte buffer_[inline_objects * sizeof(msgpack::object)]{};
  std::optional<msgpack::zone> zone_;
};
}  // namespace detail
/// @endcond

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
  /// No arguments.
  varargs() = default;
  /// The arguments `values`, in order.
  /// @param values the positional arguments the parameter collects.
  explicit varargs(std::vector<T> values) : std::vector<T>(std::move(values)) {}
};

/// A dynamically typed MessagePack value: what an untyped call returns, and
/// a parameter type that accepts anything. Copies are cheap (they share the
/// immutable storage).
///
/// With `<patio/format.hpp>`, fmt formats a value as its to_string():
/// `fmt::print("{}", v)`, in ranges too (`[6, 6, 6]`, unquoted).
class value {
 public:
  /// The MessagePack type of a value.
  enum class kind {
    nil,       ///< MessagePack nil (a default-constructed value)
    boolean,   ///< true or false
    integer,   ///< a signed or unsigned integer
    floating,  ///< float32 or float64
    string,    ///< UTF-8 text (MessagePack str)
    binary,    ///< raw bytes (MessagePack bin, patio::bytes)
    array,     ///< a sequence of values
    map,       ///< key-value pairs
    extension  ///< a MessagePack extension type
  };

  /// nil
  value() noexcept = default;

  /// A deep copy of `object`.
  /// @param object any MessagePack object; the value does not refer to it
  ///               afterwards.
  /// @throws std::bad_alloc.
  explicit value(const msgpack::object& object);

  /// Encodes `v` through the codec.
  /// @param v anything the codec encodes (see docs/codec.md).
  /// @throws std::bad_alloc; what msgpack-cxx throws for a type it cannot
  /// encode.
  template <detail::encodable T>
  explicit value(const T& v) {
    auto zone = std::make_shared<msgpack::zone>(detail::zone_chunk_size);
    object_ = msgpack::object(v, *zone);
    zone_ = std::move(zone);
  }

  /// @returns what the value holds.
  [[nodiscard]] kind type() const noexcept;
  /// @returns whether type() is kind::nil.
  [[nodiscard]] bool is_nil() const noexcept { return type() == kind::nil; }
  /// @returns whether type() is kind::boolean.
  [[nodiscard]] bool is_bool() const noexcept { return type() == kind::boolean; }
  /// @returns whether type() is kind::integer.
  [[nodiscard]] bool is_int() const noexcept { return type() == kind::integer; }
  /// @returns whether type() is kind::floating.
  [[nodiscard]] bool is_float() const noexcept { return type() == kind::floating; }
  /// @returns whether type() is kind::string.
  [[nodiscard]] bool is_string() const noexcept { return type() == kind::string; }
  /// @returns whether type() is kind::binary.
  [[nodiscard]] bool is_bytes() const noexcept { return type() == kind::binary; }
  /// @returns whether type() is kind::array.
  [[nodiscard]] bool is_array() const noexcept { return type() == kind::array; }
  /// @returns whether type() is kind::map.
  [[nodiscard]] bool is_map() const noexcept { return type() == kind::map; }

  /// Converts to T.
  /// @returns the value as T (a copy of *this for T = value).
  /// @throws patio::type_mismatch_error if the value does not fit T.
  template <class T>
  [[nodiscard]] T as() const;

  /// The size of what the value holds.
  /// @returns elements of an array or map, bytes of a string or bin, else 0.
  [[nodiscard]] std::size_t size() const noexcept;

  /// Element `i` of an array.
  /// @param i a zero-based index.
  /// @returns the element, sharing this value's storage.
  /// @throws patio::type_mismatch_error if not an array; std::out_of_range.
  [[nodiscard]] value operator[](std::size_t i) const;

  /// The value under string key `key` of a map.
  /// @param key a string key.
  /// @returns the value, sharing this value's storage.
  /// @throws patio::type_mismatch_error if not a map; std::out_of_range.
  [[nodiscard]] value operator[](std::string_view key) const;

  /// The non-throwing look-up.
  /// @param key a string key.
  /// @returns the value under `key`, or nothing when absent or not a map.
  [[nodiscard]] std::optional<value> find(std::string_view key) const;

  /// JSON-like text, for people: not an interchange format.
  /// @returns e.g. null, true, 6, 2.5, "text", b"\x01", [1, 2], {"k": 1}.
  [[nodiscard]] std::string to_string() const;

  /// The underlying MessagePack object.
  /// @returns a reference valid while this value (or a copy of it) lives.
  [[nodiscard]] const msgpack::object& object() const noexcept { return object_; }

  /// Deep equality of the MessagePack objects (an integer 1 and a float 1.0
  /// differ).
  // NOLINTNEXTLINE(bugprone-exception-escape): msgpack::object's == only compares memory; it is not marked noexcept.
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
    /// @param key the keyword.
    /// @param v   its value: a patio::value, or anything the codec encodes.
    template <class T>
    item(std::string key, const T& v) : name(std::move(key)), value(make(v)) {}

    std::string name;    ///< the keyword
    patio::value value;  ///< its value, encoded

   private:
    template <class T>
    static patio::value make(const T& v) {
      if constexpr (std::is_same_v<T, patio::value>)
        return v;
      else
        return patio::value(v);
    }
  };

  /// No keyword arguments.
  kwargs() = default;
  /// `{{"greeting", "hi"}, {"times", 2}}`.
  /// @param items the pairs; a later duplicate name is kept beside the first,
  ///              and find() returns the first.
  kwargs(std::initializer_list<item> items) : items_(items) {}

  /// Sets `name` (replacing an earlier value).
  /// @param name the keyword.
  /// @param v    its value.
  void set(std::string name, patio::value v) {
    for (auto& i : items_)
      if (i.name == name) {
        i.value = std::move(v);
        return;
      }
    // item's constructor copies what it encodes: move `v` in afterwards.
    items_.emplace_back(std::move(name), patio::value{});
    items_.back().value = std::move(v);
  }

  /// The non-throwing look-up.
  /// @param name the keyword.
  /// @returns its value, or nothing when absent.
  [[nodiscard]] std::optional<patio::value> find(std::string_view name) const {
    for (const auto& i : items_)
      if (i.name == name) return i.value;
    return std::nullopt;
  }
  /// Whether `name` is given.
  /// @param name the keyword.
  /// @returns true if find(name) finds it.
  [[nodiscard]] bool contains(std::string_view name) const { return find(name).has_value(); }

  /// The value of `name` converted to T.
  /// @param name the keyword.
  /// @returns its value as T.
  /// @throws patio::bad_arguments_error when absent; patio::type_mismatch_error.
  template <class T = patio::value>
  [[nodiscard]] T get(std::string_view name) const {
    if (auto v = find(name)) return v->template as<T>();
    throw bad_arguments_error("missing keyword argument '" + std::string(name) + "'");
  }

  /// The value of `name` converted to T, or `fallback` when absent.
  /// @param name     the keyword.
  /// @param fallback what an absent keyword gives.
  /// @returns its value as T, or `fallback`.
  /// @throws patio::type_mismatch_error when present but not a T.
  template <class T>
  [[nodiscard]] T get(std::string_view name, T fallback) const {
    if (auto v = find(name)) return v->template as<T>();
    return fallback;
  }

  /// @returns how many pairs.
  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }
  /// @returns whether there are none.
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }
  /// @returns the pairs (kwargs::item), in order of insertion.
  [[nodiscard]] auto begin() const noexcept { return items_.begin(); }
  /// @returns the end of the pairs.
  [[nodiscard]] auto end() const noexcept { return items_.end(); }

  /// Equal when both hold the same names with equal values, in any order.
  // NOLINTNEXTLINE(bugprone-exception-escape): find() only copies values, which never throws.
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

/// @cond internals
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
/// @endcond

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
