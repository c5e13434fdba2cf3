// SPDX-License-Identifier: MIT
#include <patio/detail/call_metrics.hpp>
#include <patio/metrics.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <mutex>
#include <stdexcept>

namespace patio {

// ---- function_metrics, metrics_snapshot ---------------------------------------

function_metrics& function_metrics::operator+=(const function_metrics& other) noexcept {
  calls += other.calls;
  succeeded += other.succeeded;
  errors += other.errors;
  timeouts += other.timeouts;
  in_flight += other.in_flight;
  latency_sum += other.latency_sum;
  for (std::size_t i = 0; i < latency_buckets; ++i) latency_counts[i] += other.latency_counts[i];
  return *this;
}

const function_metrics* metrics_snapshot::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(functions.begin(), functions.end(), name,
                             [](const function_metrics& f, std::string_view n) { return f.name < n; });
  return it != functions.end() && it->name == name ? &*it : nullptr;
}

function_metrics metrics_snapshot::total() const noexcept {
  function_metrics sum;
  for (const auto& f : functions) sum += f;
  return sum;
}

namespace {

// ---- text -----------------------------------------------------------------------

/// Three significant digits and a unit: "850ns", "12.3us", "2.5ms", "1.2s".
std::string format_duration(std::chrono::nanoseconds d) {
  const auto ns = static_cast<double>(d.count());
  if (ns < 1e3) return fmt::format("{:.3g}ns", ns);
  if (ns < 1e6) return fmt::format("{:.3g}us", ns / 1e3);
  if (ns < 1e9) return fmt::format("{:.3g}ms", ns / 1e6);
  return fmt::format("{:.3g}s", ns / 1e9);
}

/// The bound of the bucket that holds quantile `q` of the ended calls:
/// "<=2.5ms", ">10s", or "-" when none ended.
std::string quantile_bound(const function_metrics& f, double q) {
  const std::uint64_t ended = f.ended();
  if (ended == 0) return "-";
  // The rank of the quantile, 1-based: the smallest bucket whose cumulative
  // count reaches it holds it.
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(q * static_cast<double>(ended) + 0.999999));
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < latency_bucket_bounds.size(); ++i) {
    cumulative += f.latency_counts[i];
    if (cumulative >= rank) return "<=" + format_duration(latency_bucket_bounds[i]);
  }
  return ">" + format_duration(latency_bucket_bounds.back());
}

void text_line(std::string& out, std::size_t width, std::string_view name, const function_metrics& f) {
  const std::uint64_t ended = f.ended();
  const std::string mean = ended ? format_duration(f.latency_sum / ended) : "-";
  fmt::format_to(std::back_inserter(out), "{:<{}} {:>10} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}\n", name, width,
                 f.calls, f.succeeded, f.errors, f.timeouts, f.in_flight, mean, quantile_bound(f, 0.5),
                 quantile_bound(f, 0.99));
}

// ---- Prometheus -------------------------------------------------------------------

bool valid_name(std::string_view s, bool colon_allowed) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_allowed && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

using label_list = std::vector<std::pair<std::string, std::string>>;

void check_labels(const label_list& labels) {
  for (const auto& [name, value] : labels) {
    if (!valid_name(name, false) || name.starts_with("__"))
      throw std::invalid_argument(fmt::format("patio metrics: \"{}\" is not a valid Prometheus label name", name));
    if (name == "function" || name == "le")
      throw std::invalid_argument(fmt::format("patio metrics: the label name \"{}\" is patio's own", name));
  }
}

/// `{a="x",function="f"` without the closing brace, so `le` can follow.
std::string open_labels(const label_list& labels, std::string_view function) {
  std::string out = "{";
  for (const auto& [name, value] : labels) out += fmt::format("{}=\"{}\",", name, escape_label_value(value));
  out += fmt::format("function=\"{}\"", escape_label_value(function));
  return out;
}

std::string seconds(std::chrono::nanoseconds d) { return fmt::format("{}", static_cast<double>(d.count()) / 1e9); }

}  // namespace

std::string to_text(const metrics_snapshot& snapshot) {
  std::size_t width = std::string_view("function").size();
  for (const auto& f : snapshot.functions) width = std::max(width, f.name.size());
  std::string out = fmt::format("{:<{}} {:>10} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}\n", "function", width,
                                "calls", "succeeded", "errors", "timeouts", "in_flight", "mean", "p50", "p99");
  for (const auto& f : snapshot.functions) text_line(out, width, f.name, f);
  text_line(out, width, "(total)", snapshot.total());
  return out;
}

std::string to_prometheus(const metrics_snapshot& snapshot, std::string_view prefix, const label_list& labels) {
  return to_prometheus(std::vector<labelled_snapshot>{{labels, snapshot}}, prefix);
}

std::string to_prometheus(const std::vector<labelled_snapshot>& snapshots, std::string_view prefix) {
  if (!valid_name(prefix, true))
    throw std::invalid_argument(fmt::format("patio metrics: \"{}\" is not a valid Prometheus metric name", prefix));
  for (const auto& s : snapshots) check_labels(s.labels);

  std::string out;
  auto it = std::back_inserter(out);
  const auto family = [&](std::string_view name, std::string_view type, std::string_view help, auto value_of) {
    fmt::format_to(it, "# HELP {}_{} {}\n# TYPE {}_{} {}\n", prefix, name, help, prefix, name, type);
    for (const auto& s : snapshots)
      for (const auto& f : s.snapshot.functions)
        fmt::format_to(it, "{}_{}{}}} {}\n", prefix, name, open_labels(s.labels, f.name), value_of(f));
  };
  family("calls_total", "counter", "Calls started, per function.", [](const function_metrics& f) { return f.calls; });
  family("call_errors_total", "counter", "Calls that failed with an error other than a timeout.",
         [](const function_metrics& f) { return f.errors; });
  family("call_timeouts_total", "counter", "Calls that failed with patio::timeout_error.",
         [](const function_metrics& f) { return f.timeouts; });
  family("calls_in_flight", "gauge", "Calls started and not yet ended.",
         [](const function_metrics& f) { return f.in_flight; });

  fmt::format_to(it,
                 "# HELP {}_call_duration_seconds Call latency from start to end, whatever the outcome.\n"
                 "# TYPE {}_call_duration_seconds histogram\n",
                 prefix, prefix);
  for (const auto& s : snapshots) {
    for (const auto& f : s.snapshot.functions) {
      const std::string labels = open_labels(s.labels, f.name);
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < latency_bucket_bounds.size(); ++i) {
        cumulative += f.latency_counts[i];
        fmt::format_to(it, "{}_call_duration_seconds_bucket{},le=\"{}\"}} {}\n", prefix, labels,
                       seconds(latency_bucket_bounds[i]), cumulative);
      }
      cumulative += f.latency_counts.back();
      fmt::format_to(it, "{}_call_duration_seconds_bucket{},le=\"+Inf\"}} {}\n", prefix, labels, cumulative);
      fmt::format_to(it, "{}_call_duration_seconds_sum{}}} {}\n", prefix, labels, seconds(f.latency_sum));
      fmt::format_to(it, "{}_call_duration_seconds_count{}}} {}\n", prefix, labels, cumulative);
    }
  }
  return out;
}

// ---- detail -----------------------------------------------------------------------

namespace detail {

function_metrics function_counters::read(std::string name) const noexcept {
  function_metrics m;
  m.name = std::move(name);
  // Starts, then ends (acquire), then starts again, until no call started
  // in between (a few tries at most): every end read was started, so calls
  // >= ended, and in flight is what it was at some moment of the read, not
  // inflated by calls that started and ended while it ran.
  std::uint64_t before = calls.load(std::memory_order_acquire);
  for (int attempt = 0;; ++attempt) {
    m.succeeded = succeeded.load(std::memory_order_acquire);
    m.errors = errors.load(std::memory_order_acquire);
    m.timeouts = timeouts.load(std::memory_order_acquire);
    m.calls = calls.load(std::memory_order_acquire);
    if (m.calls == before || attempt == 16) break;
    before = m.calls;
  }
  m.in_flight = m.calls >= m.ended() ? m.calls - m.ended() : 0;
  m.latency_sum = std::chrono::nanoseconds(latency_ns.load(std::memory_order_relaxed));
  for (std::size_t i = 0; i < latency_buckets; ++i)
    m.latency_counts[i] = latency_counts[i].load(std::memory_order_relaxed);
  return m;
}

call_metrics::call_metrics() {
  tables_.push_back(std::make_unique<table>(16));
  table_.store(tables_.back().get(), std::memory_order_release);
}

std::shared_ptr<function_counters> call_metrics::add(std::string_view name, std::size_t hash) {
  std::lock_guard lock(mutex_);
  const table* current = tables_.back().get();
  if (const entry* e = find(*current, name, hash)) return e->counters;  // added meanwhile

  entries_.push_back(std::make_unique<entry>(entry{std::string(name), hash, std::make_shared<function_counters>()}));
  const entry* added = entries_.back().get();
  const auto put = [](const table& t, const entry* e) {
    std::size_t i = e->hash & t.mask;
    while (t.slots[i].load(std::memory_order_relaxed)) i = (i + 1) & t.mask;
    t.slots[i].store(e, std::memory_order_release);
  };
  // At most half full, so that a look-up soon meets an empty slot.
  if (entries_.size() * 2 > current->mask + 1) {
    auto bigger = std::make_unique<table>((current->mask + 1) * 2);
    for (const auto& e : entries_) put(*bigger, e.get());
    tables_.push_back(std::move(bigger));
    table_.store(tables_.back().get(), std::memory_order_release);
  } else {
    put(*current, added);
  }
  return added->counters;
}

metrics_snapshot call_metrics::snapshot() const {
  metrics_snapshot s;
  {
    std::lock_guard lock(mutex_);
    s.functions.reserve(entries_.size());
    for (const auto& e : entries_) s.functions.push_back(e->counters->read(e->name));
  }
  std::sort(s.functions.begin(), s.functions.end(),
            [](const function_metrics& a, const function_metrics& b) { return a.name < b.name; });
  return s;
}

}  // namespace detail
}  // namespace patio
