// SPDX-License-Identifier: MIT
#pragma once

/// @file The one place the library's log lines go.

#include <fmt/format.h>

#include <functional>
#include <string_view>

namespace patio {

/// How much a log line matters. The default threshold is info.
enum class log_level { debug, info, warning, error, off };

/// The name of `level` ("debug", "info", "warning", "error", "off").
std::string_view to_string(log_level level) noexcept;

/// One log line: who wrote it (e.g. "tcp", "redis", "process_pool") and what.
struct log_record {
  log_level level;
  std::string_view component;
  std::string_view message;
};

/// Receives every log line at or above the threshold, from any thread (the
/// library serialises calls to it). It must not throw and must not call back
/// into patio's logging.
using log_sink = std::function<void(const log_record&)>;

/// Replaces the process-wide sink; an empty sink restores the default, which
/// writes "patio <component> <level>: <message>" to stderr.
/// Thread-safe; lines already being written finish on the old sink.
void set_log_sink(log_sink sink);

/// Lines below `level` are dropped before they are formatted.
void set_log_level(log_level level) noexcept;
[[nodiscard]] log_level get_log_level() noexcept;

namespace detail {
bool log_enabled(log_level level) noexcept;
void log_write(log_level level, std::string_view component, std::string_view message) noexcept;

/// The library's way to log: formats only if the line will be written.
template <class... Args>
void log(log_level level, std::string_view component, fmt::format_string<Args...> format, Args&&... args) noexcept {
  if (!log_enabled(level)) return;
  try {
    log_write(level, component, fmt::format(format, std::forward<Args>(args)...));
  } catch (...) {
    // a line that cannot be formatted (out of memory) is dropped, never thrown into I/O code
  }
}
}  // namespace detail

}  // namespace patio
