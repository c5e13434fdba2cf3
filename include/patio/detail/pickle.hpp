// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

/// A pickle codec for the subset Python patio 0.1.4 sends over TCP (see
/// docs/pickle.md): a writer that produces what CPython 3.11's
/// `pickle.dumps(obj, protocol=5)` produces, byte for byte, and a restricted
/// reader safe on hostile input. Pure: no I/O, no Asio, no MessagePack
/// (pickle_msgpack.hpp maps it onto the codec's values).
namespace patio::detail::pickle {

/// What a plain pickled value is; Python's type in the comment.
enum class kind : std::uint8_t {
  none,      ///< None
  boolean,   ///< bool
  integer,   ///< int, within int64
  floating,  ///< float
  str,       ///< str, held as UTF-8 (lone surrogates allowed, as Python's "surrogatepass")
  bytes,     ///< bytes
  tuple,     ///< tuple
  list,      ///< list
  dict,      ///< dict, in insertion order
};

/// Python's name of `k` ("NoneType", "bool", "int", ...).
std::string_view kind_name(kind k) noexcept;

/// A plain Python value: a tree, copied by value. CallRequest and exception
/// objects are not values but whole payloads (see `payload`).
class object {
 public:
  using items_type = std::vector<object>;
  using entries_type = std::vector<std::pair<object, object>>;

  /// None.
  object() noexcept = default;

  static object none() { return {}; }
  static object boolean(bool b) { return object(kind::boolean, b); }
  static object integer(std::int64_t i) { return object(kind::integer, i); }
  static object floating(double d) { return object(kind::floating, d); }
  /// `utf8` is checked when written, not here.
  static object str(std::string utf8) { return object(kind::str, std::move(utf8)); }
  static object bytes(std::string data) { return object(kind::bytes, std::move(data)); }
  static object tuple(items_type items) { return object(kind::tuple, std::move(items)); }
  static object list(items_type items) { return object(kind::list, std::move(items)); }
  static object dict(entries_type entries) { return object(kind::dict, std::move(entries)); }

  [[nodiscard]] kind type() const noexcept { return kind_; }
  [[nodiscard]] bool is(kind k) const noexcept { return kind_ == k; }

  /// The value, when of that kind. @throws patio::type_mismatch_error otherwise.
  [[nodiscard]] bool as_bool() const;
  [[nodiscard]] std::int64_t as_int() const;
  [[nodiscard]] double as_float() const;
  /// The UTF-8 text of a str.
  [[nodiscard]] const std::string& as_str() const;
  /// The bytes of a bytes.
  [[nodiscard]] const std::string& as_bytes() const;
  /// The elements of a tuple or a list.
  [[nodiscard]] const items_type& items() const;
  /// The entries of a dict.
  [[nodiscard]] const entries_type& entries() const;

  /// Python's repr(): None, True, 6, 2.5, 'text', b'\x01', (1,), [1, 2], {'k': 1}.
  [[nodiscard]] std::string repr() const;

  /// Structural equality; kinds must match (1 != 1.0 != True here).
  // NOLINTNEXTLINE(bugprone-exception-escape): compares strings and vectors, which never throw.
  friend bool operator==(const object& a, const object& b) noexcept;

 private:
  template <class T>
  object(kind k, T&& v) : kind_(k), data_(std::forward<T>(v)) {}

  kind kind_ = kind::none;
  std::variant<std::monostate, bool, std::int64_t, double, std::string, items_type, entries_type> data_;
};

/// Python patio's `patio.broker.tcp.broker.CallRequest`: a REQUEST's payload.
struct call_request {
  std::string func;
  std::vector<object> args;
  /// In the caller's order; keys are unique.
  std::vector<std::pair<std::string, object>> kwargs;
  /// Seconds (an int arrives as its double), or none. Not range-checked here.
  std::optional<double> timeout;

  friend bool operator==(const call_request&, const call_request&) = default;
};

/// A builtin Python exception instance, e.g. ZeroDivisionError('division by
/// zero'): an ERROR's payload.
struct exception {
  /// A name of `builtin_exception_names()`, e.g. "ZeroDivisionError".
  std::string type_name;
  std::vector<object> args;

  /// Python's str() of it: '' without args, the only argument's str(), else
  /// the args tuple's repr (KeyError shows its only argument's repr).
  [[nodiscard]] std::string message() const;

  friend bool operator==(const exception&, const exception&) = default;
};

/// What one pickle holds.
using payload = std::variant<object, call_request, exception>;

/// The module and name CallRequest is pickled under.
inline constexpr std::string_view call_request_module = "patio.broker.tcp.broker";
inline constexpr std::string_view call_request_class = "CallRequest";

/// The exception classes of CPython 3.11's `builtins` (69 names, aliases
/// such as IOError included), sorted.
const std::vector<std::string_view>& builtin_exception_names() noexcept;
[[nodiscard]] bool is_builtin_exception(std::string_view name) noexcept;

/// Whether `s` is UTF-8 as Python's "surrogatepass" reads it (lone
/// surrogates allowed), the only text a pickled str may hold.
[[nodiscard]] bool is_utf8(std::string_view s) noexcept;

// ---- writer ---------------------------------------------------------------

/// Appends the protocol 5 pickle of `value` to `out`, as CPython 3.11's
/// `pickle.dumps(value, protocol=5)` writes it (PROTO, FRAMEs, MEMOIZE).
/// Objects are never shared except the ones CPython always shares: "",
/// one-character strs below U+0100, b"" and one-byte bytes, which repeat as
/// BINGET. Leaves `out` as it was if it throws.
/// @throws patio::type_mismatch_error for a str that is not UTF-8, a dict
///   key that Python cannot hash (list, dict), an unknown exception name.
void dump(std::string& out, const object& value);
void dump(std::string& out, const call_request& request);
void dump(std::string& out, const exception& error);
void dump(std::string& out, const payload& p);

template <class T>
[[nodiscard]] std::string dumps(const T& v) {
  std::string out;
  dump(out, v);
  return out;
}

// ---- restricted reader ------------------------------------------------------

/// Bounds on what a pickle may make the reader do. The input's size bounds
/// everything else: no allocation is sized by a length field before the
/// bytes it counts are known to be there.
struct read_limits {
  /// How deeply containers may nest (and how many MARKs may be open).
  std::size_t max_depth = 256;
  /// How many objects the memo may hold.
  std::size_t max_memo = std::size_t{1} << 20;
  /// How many objects memo references (BINGET) may add to the decoded value
  /// beyond the input's size: a shared object is copied where it repeats.
  std::size_t max_shared_objects = std::size_t{1} << 20;
  /// How many bytes of str and bytes they may add beyond the input's size.
  std::size_t max_shared_bytes = std::size_t{64} << 20;
};

/// Decodes one pickle (protocol 4 or 5, the opcodes of docs/pickle.md),
/// which must be the whole of `data`.
/// @throws patio::protocol_error naming what is wrong: an opcode or a global
///   that is refused, an int beyond int64, a limit, truncated or malformed
///   data. Nothing else, whatever the input.
[[nodiscard]] payload loads(std::string_view data, const read_limits& limits = {});

/// As loads(), for a payload that must be a plain value, a CallRequest or an
/// exception. @throws patio::protocol_error for any other.
[[nodiscard]] object loads_object(std::string_view data, const read_limits& limits = {});
[[nodiscard]] call_request loads_call_request(std::string_view data, const read_limits& limits = {});
[[nodiscard]] exception loads_exception(std::string_view data, const read_limits& limits = {});

}  // namespace patio::detail::pickle
