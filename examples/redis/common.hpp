// SPDX-License-Identifier: MIT
// What the two Redis examples share, so that each shows only its patio
// calls: the command line (where Redis is, the credentials, the project),
// and printing.
#pragma once

#include <patio/error.hpp>
#include <patio/redis_broker.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace example {

/// The environment variable a password may come from instead of --password:
/// a command line is visible to every user of the machine (`ps`).
inline constexpr const char* password_variable = "PATIO_REDIS_PASSWORD";

/// argv[0] without its directory.
inline std::string_view base_name(std::string_view path) { return path.substr(path.rfind('/') + 1); }

/// Prints "program: message" on stderr. @returns 1, the exit status of a failure.
inline int fail(std::string_view name, std::string_view message) {
  fmt::print(stderr, "{}: {}\n", base_name(name), message);
  return 1;
}

/// Prints one line on stdout and flushes it: scripts wait for these lines.
template <class... Args>
void print_line(fmt::format_string<Args...> format, Args&&... args) {
  fmt::print("{}\n", fmt::format(format, std::forward<Args>(args)...));
  std::fflush(stdout);
}

/// One flag of a program beyond the shared ones: --workers, --calls, --timeout.
struct number_flag {
  std::string_view name;
  std::string_view metavar;  ///< what the value is, for the usage: N, SECONDS
  std::string_view help;
  long minimum;
  long maximum;
  long value;  ///< the default, then what the command line says
};

/// What a program's command line offers.
struct program {
  std::string_view summary;        ///< one line for --help
  std::vector<number_flag> extra;  ///< its own flags
};

/// The parsed shared flags.
struct arguments {
  std::string name;              ///< argv[0], for messages
  patio::redis_options redis{};  ///< host, port, db, username, password, project
};

inline std::string usage(std::string_view name, const program& p) {
  std::string extra;
  for (const auto& f : p.extra) extra += fmt::format(" [{} {}]", f.name, f.metavar);
  return fmt::format(
      "usage: {} [--host HOST] [--port PORT] [--db N] [--user USER] [--password PASSWORD] "
      "[--project NAME]{}",
      name, extra);
}

inline void print_help(std::string_view name, const program& p) {
  const patio::redis_options defaults;
  fmt::print("{}\n{}\n\n", usage(name, p), p.summary);
  fmt::print(
      "  --host HOST          Redis's host name or address (default {})\n"
      "  --port PORT          Redis's port (default {})\n"
      "  --db N               the database to use (default {})\n"
      "  --user USER          an ACL user (default: none, i.e. \"default\")\n"
      "  --password PASSWORD  AUTH with this password (default: ${}, else none);\n"
      "                       prefer the variable: a command line is visible in ps\n"
      "  --project NAME       the namespace of every key; workers and callers must agree\n"
      "                       (default patio-example)\n",
      defaults.host, defaults.port, defaults.db, password_variable);
  for (const auto& f : p.extra)
    fmt::print("  {:<20} {} (default {})\n", fmt::format("{} {}", f.name, f.metavar), f.help, f.value);
}

/// Parses a whole number in [minimum, maximum]. @returns false if it is not one.
inline bool parse_number(std::string_view text, long minimum, long maximum, long& out) {
  long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < minimum || value > maximum)
    return false;
  out = value;
  return true;
}

/// Parses the command line as `p` says; the values of its extra flags go
/// back into `p`. --help prints every flag and exits 0; a bad flag prints
/// what is wrong and the usage on stderr, and exits 2.
inline arguments parse_command_line(int argc, char** argv, program& p) {
  arguments args{.name = std::string(base_name(argv[0]))};
  args.redis.project = "patio-example";
  if (const char* password = std::getenv(password_variable)) args.redis.password = password;
  const auto usage_error = [&](std::string_view message) {
    fail(args.name, message);
    fmt::print(stderr, "{}\n(--help for more)\n", usage(args.name, p));
    std::exit(2);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      print_help(args.name, p);
      std::exit(0);
    }
    number_flag* extra = nullptr;
    for (auto& f : p.extra)
      if (flag == f.name) extra = &f;
    const bool known = extra || flag == "--host" || flag == "--port" || flag == "--db" || flag == "--user" ||
                       flag == "--password" || flag == "--project";
    if (!known) usage_error(fmt::format("unknown flag {}", flag));
    if (i + 1 == argc) usage_error(fmt::format("{} needs a value", flag));
    const std::string_view value = argv[++i];
    long number = 0;
    if (extra) {
      if (!parse_number(value, extra->minimum, extra->maximum, extra->value))
        usage_error(fmt::format("bad {} {}: a whole number in [{}, {}]", flag, value, extra->minimum, extra->maximum));
    } else if (flag == "--host") {
      if (value.empty()) usage_error("--host needs a host name or address");
      args.redis.host = value;
    } else if (flag == "--port") {
      if (!parse_number(value, 1, 65'535, number)) usage_error(fmt::format("bad --port {}", value));
      args.redis.port = static_cast<std::uint16_t>(number);
    } else if (flag == "--db") {
      if (!parse_number(value, 0, std::numeric_limits<int>::max(), number))
        usage_error(fmt::format("bad --db {}: a database number, 0 or more", value));
      args.redis.db = static_cast<int>(number);
    } else if (flag == "--user") {
      args.redis.username = value;
    } else if (flag == "--password") {
      args.redis.password = value;
    } else {
      if (value.empty()) usage_error("--project needs a name");
      args.redis.project = value;
    }
  }
  if (!args.redis.username.empty() && args.redis.password.empty())
    usage_error(fmt::format("--user needs a password (--password or ${})", password_variable));
  return args;
}

/// "127.0.0.1:6379 db 0, project patio-example": where a program works.
inline std::string where(const patio::redis_options& o) {
  return fmt::format("redis {}:{} db {}, project {}", o.host, o.port, o.db, o.project);
}

/// The one line a program prints when setup() fails, with a hint at the flag
/// that is likely wrong.
inline std::string setup_failure(const patio::redis_options& o, const patio::error& e) {
  if (e.value() == patio::errc::auth_failed)
    return fmt::format("auth_error: {} (check --user, and --password or ${})", e.what(), password_variable);
  return fmt::format("cannot reach {}:{}: {} (is redis-server running there?)", o.host, o.port, e.what());
}

}  // namespace example
