// SPDX-License-Identifier: MIT
// The test binary is also the process pool's worker program: started as a
// worker, it serves the test tasks and leaves. Other environment variables
// make it the child process some tests need (see support.hpp).
#define CATCH_CONFIG_RUNNER
#include "support.hpp"

#include <patio/process_pool_executor.hpp>
#include <patio/registry.hpp>

#include <catch2/catch.hpp>

#ifdef PATIO_TEST_REDIS
#include "redis_fixtures.hpp"
#endif

int main(int argc, char** argv) {
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  if (patio::serve_as_worker(rpc)) return 0;
  if (const int status = patio::test::orphan_parent_mode(rpc); status >= 0) return status;
  if (const int status = patio::test::tcp_serve_mode(); status >= 0) return status;
#ifdef PATIO_TEST_REDIS
  if (const int status = patio::test::redis::work_mode(); status >= 0) return status;
#endif
  return Catch::Session().run(argc, argv);
}
