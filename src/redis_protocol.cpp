// SPDX-License-Identifier: MIT
#include <patio/detail/redis_protocol.hpp>
#include <patio/error.hpp>

#include <charconv>
#include <stdexcept>

namespace patio::detail::redis {

namespace {
constexpr std::string_view calls_part = "calls:";
constexpr std::string_view reply_part = "reply:";

std::optional<std::uint64_t> parse_u64(std::string_view text) noexcept {
  std::uint64_t n = 0;
  if (text.empty()) return std::nullopt;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return n;
}

std::optional<std::string_view> find(const field_list& fields, std::string_view name) noexcept {
  for (const auto& [k, v] : fields)
    if (k == name) return v;
  return std::nullopt;
}
}  // namespace

keys::keys(std::string_view project) {
  if (project.empty()) throw std::invalid_argument("redis: the project name is empty");
  if (project.find_first_of("{}") != std::string_view::npos)
    throw std::invalid_argument("redis: the project name must not contain braces (it is the hash tag)");
  prefix_.append("patio:{").append(project).append("}:");
}

std::string keys::calls(std::string_view function) const {
  return std::string(prefix_).append(calls_part).append(function);
}
std::string keys::route(std::string_view function) const {
  return std::string(prefix_).append("route:").append(function);
}
std::string keys::reply(std::string_view caller_id) const {
  return std::string(prefix_).append(reply_part).append(caller_id);
}
std::string keys::dead_letter() const { return prefix_ + "dead"; }

bool keys::is_reply(std::string_view key) const noexcept {
  return key.size() > prefix_.size() + reply_part.size() && key.starts_with(prefix_) &&
         key.substr(prefix_.size()).starts_with(reply_part);
}

std::optional<std::string_view> keys::function_of(std::string_view key) const noexcept {
  if (!key.starts_with(prefix_) || !key.substr(prefix_.size()).starts_with(calls_part)) return std::nullopt;
  return key.substr(prefix_.size() + calls_part.size());
}

void append_command(std::string& out, std::span<const std::string_view> args) {
  char number[24];
  out.push_back('*');
  out.append(decimal(args.size(), number));
  out.append("\r\n");
  for (const auto a : args) {
    out.push_back('$');
    out.append(decimal(a.size(), number));
    out.append("\r\n");
    out.append(a);
    out.append("\r\n");
  }
}

std::optional<entry_id> parse_entry_id(std::string_view text) noexcept {
  const auto dash = text.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto ms = parse_u64(text.substr(0, dash));
  const auto seq = parse_u64(text.substr(dash + 1));
  if (!ms || !seq) return std::nullopt;
  return entry_id{*ms, *seq};
}

request_fields parse_request_fields(const field_list& fields, const keys& k) {
  const auto payload = find(fields, field::call);
  const auto reply_to = find(fields, field::reply_to);
  const auto call_id = find(fields, field::call_id);
  if (!payload || !reply_to || !call_id) throw protocol_error("not a patio call entry (fields c, r, i)");
  if (!k.is_reply(*reply_to)) throw protocol_error("the reply stream is not one of this project's");
  const auto id = parse_u64(*call_id);
  if (!id) throw protocol_error("the call number is not a number");
  return {*payload, *reply_to, *id};
}

reply_fields parse_reply_fields(const field_list& fields) {
  const auto call_id = find(fields, field::call_id);
  const auto kind = find(fields, field::kind);
  const auto value = find(fields, field::value);
  if (!call_id || !kind || !value) throw protocol_error("not a patio reply entry (fields i, k, v)");
  const auto id = parse_u64(*call_id);
  if (!id) throw protocol_error("the call number is not a number");
  if (*kind != "ok" && *kind != "error") throw protocol_error("the reply kind is neither ok nor error");
  return {*id, *kind == "ok", *value};
}

std::string_view decimal(std::uint64_t n, char (&buffer)[24]) noexcept {
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, n);
  (void)ec;
  return {buffer, static_cast<std::size_t>(end - buffer)};
}

}  // namespace patio::detail::redis
