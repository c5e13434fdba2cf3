// SPDX-License-Identifier: MIT
#include <patio/log.hpp>

#include <atomic>
#include <cstdio>
#include <mutex>

namespace patio {

namespace {
std::atomic<log_level> threshold{log_level::info};

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}
log_sink& sink() {
  static log_sink s;
  return s;
}

void write_default(const log_record& r) {
  fmt::print(stderr, "patio {} {}: {}\n", r.component, to_string(r.level), r.message);
  std::fflush(stderr);
}
}  // namespace

std::string_view to_string(log_level level) noexcept {
  switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
    case log_level::off: return "off";
  }
  return "unknown";
}

void set_log_sink(log_sink s) {
  std::lock_guard lock(sink_mutex());
  sink() = std::move(s);
}

void set_log_level(log_level level) noexcept { threshold.store(level, std::memory_order_relaxed); }
log_level get_log_level() noexcept { return threshold.load(std::memory_order_relaxed); }

namespace detail {
bool log_enabled(log_level level) noexcept {
  return level != log_level::off && level >= threshold.load(std::memory_order_relaxed);
}

void log_write(log_level level, std::string_view component, std::string_view message) noexcept {
  const log_record record{level, component, message};
  std::lock_guard lock(sink_mutex());
  try {
    if (sink())
      sink()(record);
    else
      write_default(record);
  } catch (...) {
    // a sink must not throw; if it does, the line is lost, not the caller
  }
}
}  // namespace detail

}  // namespace patio
