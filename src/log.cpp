// SPDX-License-Identifier: MIT
#include <patio/log.hpp>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <utility>

namespace patio {

namespace {
std::atomic<log_level> threshold{log_level::info};

// Never destroyed: a thread the library left running (a detached pool
// thread) may still log while the process exits.
std::mutex& sink_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
log_sink& sink() {
  static auto* s = new log_sink;
  return *s;
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
  std::unique_lock lock(sink_mutex());
  std::swap(sink(), s);
  // The old sink is destroyed outside the lock: its destructor may log.
  lock.unlock();
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
