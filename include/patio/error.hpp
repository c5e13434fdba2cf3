// SPDX-License-Identifier: MIT
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace patio {

/// Error codes of every failure patio reports. Each has its own exception type
/// (see below), so callers can catch by type or compare `code()`.
enum class errc {
  timeout = 1,       ///< the call's deadline passed before a result arrived
  no_route,          ///< no executor reachable through this broker offers the function
  remote_error,      ///< the task threw: carries the remote type name and message
  bad_arguments,     ///< the arguments do not fit the function's parameters
  type_mismatch,     ///< a result or value cannot convert to the requested type
  unknown_function,  ///< the registry has no function by that name
  duplicate_name,    ///< a function by that name is already registered
  registry_locked,   ///< the registry was locked by a broker: no more changes
  name_required,     ///< auto naming is off, or the callable has no stable name
  executor_refused,  ///< the executor runs nothing (null executor)
  queue_full,        ///< the executor's bounded queue is full
  shut_down,         ///< the executor was shut down
  closed,            ///< the broker was closed
  protocol_error,    ///< a peer sent something that breaks the wire protocol
  auth_failed,       ///< the peer failed authentication
  connection_lost,   ///< the connection carrying the call went away
  worker_crashed,    ///< the worker process running the task died (signal or exit)
  would_deadlock,    ///< a blocking call was made from a thread it would have to wait for
};

/// The category of `patio::errc`; its name is "patio".
const std::error_category& error_category() noexcept;

/// Makes `errc` usable as a std::error_code (found by argument-dependent
/// lookup; std::is_error_code_enum<patio::errc> is true).
/// @param e the code.
/// @returns `e` in patio's error_category().
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// Base of every exception patio throws. `what()` is the plain message;
/// `code()` says which `patio::errc` it is.
///
/// Each subclass below but remote_error has one constructor,
/// `explicit X(const std::string& message, errc code = <its errc>)`; the
/// code can be given where one type covers several (registry_error:
/// duplicate_name, registry_locked, name_required; executor_refused_error:
/// executor_refused, queue_full, shut_down).
class error : public std::runtime_error {
 public:
  /// @param code    which failure.
  /// @param message what() returns.
  error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}

  /// @returns value() as a std::error_code of error_category().
  [[nodiscard]] std::error_code code() const noexcept { return make_error_code(code_); }
  /// @returns which patio::errc this is.
  [[nodiscard]] errc value() const noexcept { return code_; }

 private:
  errc code_;
};

/// @cond internals
#define PATIO_DETAIL_DEFINE_ERROR(name, ...)                                                           \
  class name : public error {                                                                          \
   public:                                                                                             \
    explicit name(const std::string& message, errc code = errc::__VA_ARGS__) : error(code, message) {} \
  }
/// @endcond

/// The call's deadline passed (the task, where it can be, was cancelled).
PATIO_DETAIL_DEFINE_ERROR(timeout_error, timeout);
/// No executor reachable through the broker offers the function.
PATIO_DETAIL_DEFINE_ERROR(no_route_error, no_route);
/// Arguments do not fit the function: count, type or keyword.
PATIO_DETAIL_DEFINE_ERROR(bad_arguments_error, bad_arguments);
/// A result or `patio::value` does not convert to the requested type.
PATIO_DETAIL_DEFINE_ERROR(type_mismatch_error, type_mismatch);
/// The registry has no function by that name.
PATIO_DETAIL_DEFINE_ERROR(unknown_function_error, unknown_function);
/// Registration refused: duplicate name, locked registry or missing name.
PATIO_DETAIL_DEFINE_ERROR(registry_error, duplicate_name);
/// The executor did not take the call: null executor, full queue, shut down.
PATIO_DETAIL_DEFINE_ERROR(executor_refused_error, executor_refused);
/// The broker is closed.
PATIO_DETAIL_DEFINE_ERROR(closed_error, closed);
/// A peer broke the wire protocol.
PATIO_DETAIL_DEFINE_ERROR(protocol_error, protocol_error);
/// Authentication with a peer failed.
PATIO_DETAIL_DEFINE_ERROR(auth_error, auth_failed);
/// The connection carrying the call went away.
PATIO_DETAIL_DEFINE_ERROR(connection_error, connection_lost);
/// The process running the task died: killed by a signal, or exited. The
/// message names which, e.g. "killed by signal 11 (Segmentation fault)".
PATIO_DETAIL_DEFINE_ERROR(worker_crashed_error, worker_crashed);
/// A blocking call (patio::io_thread) was made from one of the threads that
/// must run it: it would wait for itself forever, so it fails at once.
PATIO_DETAIL_DEFINE_ERROR(deadlock_error, would_deadlock);

#undef PATIO_DETAIL_DEFINE_ERROR

/// A task threw. `type_name()` is the exception's type as the executing side
/// saw it (e.g. "std::runtime_error"); `what()` is the task's `what()`.
class remote_error : public error {
 public:
  /// @param type_name the task exception's type, as the executing side saw it.
  /// @param message   the task exception's `what()`.
  remote_error(std::string type_name, const std::string& message)
      : error(errc::remote_error, message), type_name_(std::move(type_name)) {}

  /// @returns the task exception's type name, e.g. "std::runtime_error".
  [[nodiscard]] const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

/// Throws the exception type that belongs to `code`. Brokers use it to turn an
/// error that crossed a boundary back into the type the caller can catch.
/// @param code      which exception: its type and code().
/// @param message   its what().
/// @param type_name for errc::remote_error, the remote exception's type name.
/// @throws patio::error the subclass that belongs to `code`, always.
[[noreturn]] void throw_error(errc code, const std::string& message, std::string type_name = {});

}  // namespace patio

template <>
struct std::is_error_code_enum<patio::errc> : std::true_type {};
