// SPDX-License-Identifier: MIT
#include <patio/registry.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace patio {

namespace detail {

std::string normalize_name(std::string_view qualified) {
  std::string out;
  out.reserve(qualified.size());
  for (std::size_t i = 0; i < qualified.size();) {
    if (qualified.substr(i, 2) == "::") {
      out += '.';
      i += 2;
    } else if (qualified.substr(i, 11) == "{anonymous}") {
      out += "(anonymous)";
      i += 11;
    } else if (qualified.substr(i, 21) == "(anonymous namespace)") {
      out += "(anonymous)";
      i += 21;
    } else {
      out += qualified[i++];
    }
  }
  return out;
}

std::string signature_hash(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return fmt::format("{:016x}", hash);
}

}  // namespace detail

std::string registry::make_auto_name(std::string_view qualified, const std::string& signature) const {
  if (!options_.auto_naming)
    throw registry_error("auto naming is disabled in this registry: register with an explicit name",
                         errc::name_required);
  std::string name;
  if (!options_.project.empty()) name = options_.project + ".";
  name += detail::normalize_name(qualified);
  if (options_.strict) name += "." + detail::signature_hash(signature);
  return name;
}

const std::string& registry::insert(std::string name, std::shared_ptr<const detail::function_base> fn,
                                    detail::identity identity) {
  if (locked()) throw registry_error("cannot register '" + name + "': the registry is locked", errc::registry_locked);
  if (name.empty()) throw registry_error("cannot register a function with an empty name", errc::name_required);
  auto [it, inserted] = map_.try_emplace(std::move(name), function(std::move(fn)));
  if (!inserted) throw registry_error("a function named '" + it->first + "' is already registered");
  if (identity) identities_.emplace_back(identity, it->first);
  return it->first;
}

const function* registry::find(std::string_view name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : &it->second;
}

const function& registry::at(std::string_view name) const {
  if (const auto* f = find(name)) return *f;
  throw unknown_function_error("no function named '" + std::string(name) + "' in the registry");
}

std::vector<std::string> registry::names() const {
  std::vector<std::string> out;
  out.reserve(map_.size());
  for (const auto& [name, fn] : map_) out.push_back(name);
  return out;
}

bool registry::erase(std::string_view name) {
  if (locked())
    throw registry_error("cannot erase '" + std::string(name) + "': the registry is locked", errc::registry_locked);
  auto it = map_.find(name);
  if (it == map_.end()) return false;
  std::erase_if(identities_, [&](const auto& entry) { return entry.second == it->first; });
  map_.erase(it);
  return true;
}

std::vector<std::string> registry::names_of_identity(detail::identity id) const {
  std::vector<std::string> out;
  for (const auto& [identity, name] : identities_)
    if (identity == id) out.push_back(name);
  return out;
}

const std::string& registry::name_of_identity(detail::identity id) const {
  for (const auto& [identity, name] : identities_)
    if (identity == id) return name;
  throw unknown_function_error("this function is not registered");
}

}  // namespace patio
