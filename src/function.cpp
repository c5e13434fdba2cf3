// SPDX-License-Identifier: MIT
#include <patio/function.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <typeinfo>

namespace patio::detail {

namespace {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  std::string name = status == 0 && out ? out.get() : mangled;
  // libstdc++'s inline namespace is noise to a reader of an error message.
  for (std::string_view noise : {"__cxx11::", "__1::"})
    for (auto at = name.find(noise); at != std::string::npos; at = name.find(noise)) name.erase(at, noise.size());
  return name;
}

}  // namespace

std::exception_ptr wrap_task_exception(std::exception_ptr e) noexcept {
  try {
    try {
      std::rethrow_exception(e);
    } catch (const remote_error&) {
      return e;
    } catch (const std::exception& ex) {
      return std::make_exception_ptr(remote_error(demangle(typeid(ex).name()), ex.what()));
    } catch (...) {
      const std::type_info* type = abi::__cxa_current_exception_type();
      return std::make_exception_ptr(remote_error(type ? demangle(type->name()) : "unknown", ""));
    }
  } catch (...) {
    return std::current_exception();  // out of memory while wrapping
  }
}

void throw_argument_count(const std::string& function, std::size_t required, std::size_t max, std::size_t given) {
  std::string expected;
  if (max == std::size_t(-1))
    expected = "at least " + std::to_string(required);
  else if (required == max)
    expected = std::to_string(required);
  else
    expected = std::to_string(required) + " to " + std::to_string(max);
  const bool one = required == 1 && (max == 1 || max == std::size_t(-1));
  throw bad_arguments_error(function + ": expected " + expected + " argument" + (one ? "" : "s") + ", got " +
                            std::to_string(given));
}

void throw_argument_type(const std::string& function, std::size_t position, const std::string& expected,
                         const msgpack::object& given) {
  throw bad_arguments_error(function + ": argument " + std::to_string(position + 1) + ": expected " + expected +
                            ", got " + std::string(kind_name(given)));
}

void throw_unexpected_keyword(const std::string& function, const kwargs& given) {
  std::string names;
  for (const auto& item : given) names += (names.empty() ? "'" : ", '") + item.name + "'";
  throw bad_arguments_error(function + ": unexpected keyword argument" + (given.size() == 1 ? " " : "s ") + names +
                            " (the function takes no patio::kwargs)");
}

}  // namespace patio::detail
