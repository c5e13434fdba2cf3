// SPDX-License-Identifier: MIT
#pragma once

#include <patio/executor.hpp>

namespace patio {

/// Runs nothing: a call of a registered function fails with
/// patio::executor_refused_error (an unknown name fails as with any executor). For processes that only call others: a
/// TCP broker with a null executor offers no functions. Its registry, which
/// may be empty, still lets calls name functions by the function itself.
class null_executor final : public executor {
 public:
  /// @param r the registry calls resolve names and functions in; may be
  ///          empty; must outlive the executor.
  explicit null_executor(patio::registry& r) : executor(r, executor_options{.max_workers = 0}) {}

  /// Does nothing: there is nothing to stop.
  void shutdown() override {}

  /// @returns false: network brokers offer none of the registry's functions.
  [[nodiscard]] bool runs_tasks() const noexcept override { return false; }

 private:
  void start(std::shared_ptr<detail::invocation> inv) override;
};

}  // namespace patio
