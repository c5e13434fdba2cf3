// SPDX-License-Identifier: MIT
#pragma once

/// @file
/// The one place the library's log lines go.
///
/// patio-cpp never writes to stderr or an iostream itself: every line goes
/// through one process-wide sink, which by default formats it with fmt to
/// stderr. Plug in your own (spdlog, syslog, a test's capture) with
/// set_log_sink(), and choose how much you see with set_log_level().
/// The Logging section of docs/guide.md lists what is logged at which level.

#include <fmt/format.h>

#include <cstddef>
#include <functional>
#include <string_view>
#include <utility>

namespace patio {

/// How much a log line matters. The default threshold is info.
///
/// - debug: routine events nobody acts on (a reply that came after its
///   caller gave up, a peer that left before authenticating).
/// - info: connection events: listening, connected, closed, reconnecting.
/// - warning: a peer or worker was dropped for what it did (failed
///   authentication, a protocol violation, a peer that stopped reading).
/// - error: this side cannot do its job (accept fails, a worker process
///   cannot be started).
/// - off: as a threshold, nothing is logged.
enum class log_level { debug, info, warning, error, off };

/// The name of a level.
/// @param level a level.
/// @returns "debug", "info", "warning", "error" or "off".
std::string_view to_string(log_level level) noexcept;

/// One log line: who wrote it (e.g. "tcp", "process_pool") and what.
///
/// The views are valid only during the sink's call: a sink that keeps a
/// line copies it.
struct log_record {
  log_level level;             ///< how much the line matters
  std::string_view component;  ///< the part of the library that wrote it
  std::string_view message;    ///< the text, without a trailing newline
};

/// Receives every log line at or above the threshold, from any thread (the
/// library serialises calls to it, so a sink needs no lock of its own). It
/// must not throw (what it throws is swallowed and the line lost) and must
/// not call back into patio's logging (that would deadlock).
using log_sink = std::function<void(const log_record&)>;

/// Replaces the process-wide sink; an empty sink restores the default, which
/// writes "patio <component> <level>: <message>" and a newline to stderr.
///
/// Thread-safe: a line being written meanwhile finishes on the old sink, and
/// once this returns, no call to the old sink is under way or will start.
/// @param sink the new sink, or an empty one for the default.
/// @throws nothing but what moving `sink` throws.
void set_log_sink(log_sink sink);

/// Sets the threshold: lines below `level` are dropped before they are
/// formatted, so a disabled line costs one atomic load. `off` drops all.
/// Thread-safe.
/// @param level the lowest level written.
void set_log_level(log_level level) noexcept;

/// The current threshold.
/// @returns info unless set_log_level() changed it.
[[nodiscard]] log_level get_log_level() noexcept;

/// @cond internals
namespace detail {

/// Whether a line at `level` would be written now.
bool log_enabled(log_level level) noexcept;

/// Hands a formatted line to the sink.
void log_write(log_level level, std::string_view component, std::string_view message) noexcept;

/// The library's way to log: formats only if the line will be written, and
/// never throws into the code that logs.
/// @param level     how much the line matters; `off` is never written.
/// @param component the part of the library that writes it ("tcp", ...).
template <class... Args>
void log(log_level level, std::string_view component, fmt::format_string<Args...> format, Args&&... args) noexcept {
  if (!log_enabled(level)) return;
  try {
    log_write(level, component, fmt::format(format, std::forward<Args>(args)...));
  } catch (...) {
    // a line that cannot be formatted (out of memory) is dropped, never thrown into I/O code
  }
}

/// Whether the `n`th failure in a row (counting from 1) of something that
/// is retried (a reconnect, a worker start, an accept) is worth a line: the
/// first, then every tenth. A lasting failure stays visible without
/// writing a line per retry.
constexpr bool worth_logging(std::size_t n) noexcept { return n == 1 || n % 10 == 0; }

}  // namespace detail
/// @endcond

}  // namespace patio
