// SPDX-License-Identifier: MIT
#include <patio/error.hpp>

namespace patio {

namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "patio"; }

  std::string message(int code) const override {
    switch (static_cast<errc>(code)) {
      case errc::timeout: return "call timed out";
      case errc::no_route: return "no route to the function";
      case errc::remote_error: return "the task raised an error";
      case errc::bad_arguments: return "arguments do not fit the function";
      case errc::type_mismatch: return "value does not convert to the requested type";
      case errc::unknown_function: return "no function by that name";
      case errc::duplicate_name: return "a function by that name is already registered";
      case errc::registry_locked: return "the registry is locked";
      case errc::name_required: return "a name is required";
      case errc::executor_refused: return "the executor refused the call";
      case errc::queue_full: return "the executor's queue is full";
      case errc::shut_down: return "the executor is shut down";
      case errc::closed: return "the broker is closed";
      case errc::protocol_error: return "protocol error";
      case errc::auth_failed: return "authentication failed";
      case errc::connection_lost: return "connection lost";
      case errc::worker_crashed: return "the worker process died";
      case errc::would_deadlock: return "a blocking call from a thread it would wait for";
    }
    return "unknown patio error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

void throw_error(errc code, const std::string& message, std::string type_name) {
  switch (code) {
    case errc::timeout: throw timeout_error(message);
    case errc::no_route: throw no_route_error(message);
    case errc::remote_error: throw remote_error(std::move(type_name), message);
    case errc::bad_arguments: throw bad_arguments_error(message);
    case errc::type_mismatch: throw type_mismatch_error(message);
    case errc::unknown_function: throw unknown_function_error(message);
    case errc::duplicate_name:
    case errc::registry_locked:
    case errc::name_required: throw registry_error(message, code);
    case errc::executor_refused:
    case errc::queue_full:
    case errc::shut_down: throw executor_refused_error(message, code);
    case errc::closed: throw closed_error(message);
    case errc::protocol_error: throw protocol_error(message);
    case errc::auth_failed: throw auth_error(message);
    case errc::connection_lost: throw connection_error(message);
    case errc::worker_crashed: throw worker_crashed_error(message);
    case errc::would_deadlock: throw deadlock_error(message);
  }
  throw error(code, message);
}

}  // namespace patio
