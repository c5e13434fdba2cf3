// SPDX-License-Identifier: MIT
#pragma once

#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/msgpack.hpp>
#include <patio/detail/pickle.hpp>

#include <memory>

/// The pickle model (pickle.hpp) mapped onto the codec's MessagePack values,
/// so a pickled call reaches a registered function's typed parameters through
/// the same conversions as a native one (docs/pickle.md has the table).
namespace patio::detail::pickle {

/// `o` as a MessagePack object allocated in `zone`: None → nil, bool, int,
/// float → float64, str, bytes → bin, tuple and list → array, dict → map.
msgpack::object to_msgpack(const object& o, msgpack::zone& zone);

/// The reverse, for results and arguments going to Python: array → list,
/// map → dict (an array key → tuple), float32 → float.
/// @throws patio::type_mismatch_error for an ext, an unsigned int beyond
///   int64, a map as a map key (dump() refuses a str that is not UTF-8).
object from_msgpack(const msgpack::object& o);

/// A received CallRequest as an invocation of `r.func`: its arguments convert
/// into the function's parameter types as a native REQUEST's do. Keyword
/// arguments the function cannot take are the invocation's error, as in
/// messages::decode_request().
std::shared_ptr<encoded_invocation> to_invocation(const call_request& r);

/// The Python exception that carries `e` back to a Python caller:
/// bad_arguments and type_mismatch → TypeError, timeout → TimeoutError, a
/// remote error whose type is already a builtin Python exception keeps it,
/// anything else → RuntimeError; the message is kept.
exception to_exception(const error_record& e);

/// A Python exception as the record a C++ caller raises from: a
/// patio::remote_error with the Python type name and str() of it.
error_record to_error_record(const exception& e);

}  // namespace patio::detail::pickle
