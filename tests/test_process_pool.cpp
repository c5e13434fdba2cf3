// SPDX-License-Identifier: MIT
#include "support.hpp"

#include <patio/detail/worker_protocol.hpp>

#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern "C" char** environ;

namespace {

using namespace std::chrono_literals;

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

std::int64_t pid_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ::getpid();
}

/// Writes this worker's pid to `path`, then sleeps: lets a test act on the
/// worker while it is known to be running the task.
std::int64_t announce_and_sleep(std::string path, int ms) {
  {
    std::ofstream out(path + ".tmp");
    out << ::getpid();
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ::getpid();
}

std::string boom(std::string what) { throw std::runtime_error(what); }

int segfault() {
  std::raise(SIGSEGV);
  return 0;
}

int abort_task() { std::abort(); }

int exit_task(int code) { std::exit(code); }

patio::bytes echo(patio::bytes b) { return b; }

std::string greet(std::string name, patio::kwargs kw) { return kw.get<std::string>("greeting", "Hello") + " " + name; }

asio::awaitable<std::int64_t> co_twice(std::int64_t x) {
  asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
  co_await t.async_wait(asio::use_awaitable);
  co_return 2 * x;
}

/// Whether process `pid` is gone: no such process, or a zombie nobody has
/// reaped yet (in a container without an init that reaps).
bool gone(int pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

/// Waits (bounded) until every pid is gone.
bool all_gone(const std::vector<int>& pids, std::chrono::seconds limit = 5s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    bool all = true;
    for (int pid : pids) all = all && gone(pid);
    if (all) return true;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);  // another process's exit cannot be awaited here
  }
}

template <class E, class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

/// Calls pid_after on every worker at once and returns the pids that
/// answered: all of them are alive and serving.
std::set<std::int64_t> serving_pids(patio::process_pool_executor& pool, std::size_t n, int ms = 100) {
  std::vector<asio::awaitable<std::int64_t>> calls;
  for (std::size_t i = 0; i < n; ++i) calls.push_back(pool.submit<std::int64_t>("pid_after", ms));
  auto pids = patio::test::run(patio::gather(std::move(calls)));
  return {pids.begin(), pids.end()};
}

/// Distinct workers answering at once, asked until all `n` answer: a worker
/// still starting (slow under a sanitizer) leaves its call to another.
/// Bounded: returns what it saw last.
std::set<std::int64_t> full_pool(patio::process_pool_executor& pool, std::size_t n) {
  std::set<std::int64_t> pids;
  for (int attempt = 0; attempt < 50 && pids.size() < n; ++attempt) pids = serving_pids(pool, n, 200);
  return pids;
}

/// 1 when a segfaulting task fails with worker_crashed_error.
asio::awaitable<std::int64_t> crash_caught(patio::process_pool_executor* pool) {
  try {
    co_await pool->submit("segfault");
  } catch (const patio::worker_crashed_error&) {
    co_return 1;
  }
  co_return 0;
}

}  // namespace

namespace patio::test {

void register_process_tasks(patio::registry& rpc) {
  rpc.add("mul", mul);
  rpc.add("pid_after", pid_after);
  rpc.add("announce_and_sleep", announce_and_sleep);
  rpc.add("boom", boom);
  rpc.add("segfault", segfault);
  rpc.add("abort", abort_task);
  rpc.add("exit", exit_task);
  rpc.add("echo", echo);
  rpc.add("greet", greet);
  rpc.add("co_twice", co_twice);
}

int orphan_parent_mode(patio::registry& rpc) {
  if (!std::getenv("PATIO_TEST_ORPHAN_PARENT")) return -1;
  patio::process_pool_executor pool{rpc, 2};
  auto pids = full_pool(pool, 2);
  for (auto pid : pids) std::printf("%lld\n", static_cast<long long>(pid));
  std::fflush(stdout);
  for (;;) ::pause();  // until the test kills this process
}

}  // namespace patio::test

TEST_CASE("process pool: results and errors round-trip through the codec", "[process_pool]") {
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  patio::process_pool_executor pool{rpc, 2};

  CHECK(patio::test::run(pool.submit<std::int64_t>("mul", 1, 2, 3)) == 6);
  CHECK(patio::test::run(pool.submit("mul", 2, 5)) == patio::value(10));
  CHECK(patio::test::run(pool.submit(mul, 4, 5)) == 20);
  CHECK(patio::test::run(pool.submit<std::string>("greet", "Ann", patio::kwargs{{"greeting", "Hi"}})) == "Hi Ann");
  CHECK(patio::test::run(pool.submit<std::int64_t>("co_twice", 21)) == 42);

  patio::bytes big(1 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7);
  CHECK(patio::test::run(pool.submit<patio::bytes>("echo", big)) == big);

  SECTION("a task's exception is a remote_error with its type and message") {
    try {
      patio::test::run(pool.submit("boom", "kaput"));
      FAIL("no exception");
    } catch (const patio::remote_error& e) {
      CHECK(e.type_name() == "std::runtime_error");
      CHECK(std::string(e.what()) == "kaput");
    }
  }
  SECTION("bad arguments are found in the worker, with the usual message") {
    CHECK_THROWS_AS(patio::test::run(pool.submit("mul", "x")), patio::bad_arguments_error);
    CHECK_THROWS_WITH(patio::test::run(pool.submit("mul", 1, "x")),
                      Catch::Contains("argument 2: expected int64, got str"));
    CHECK_THROWS_AS(patio::test::run(pool.submit("greet", "Ann", patio::kwargs{{"greeting", 1}})), patio::remote_error);
  }
  SECTION("a result of the wrong type is a type_mismatch_error in the caller") {
    CHECK_THROWS_AS(patio::test::run(pool.submit<std::string>("mul", 1, 2)), patio::type_mismatch_error);
  }
  SECTION("an unknown name is refused before it reaches a worker") {
    CHECK_THROWS_AS(patio::test::run(pool.submit("nope")), patio::unknown_function_error);
  }
}

TEST_CASE("process pool: a crashing task fails its call, and the pool recovers to full size", "[process_pool]") {
  // Under a sanitizer the workers' runtime would catch SIGSEGV and abort and
  // exit instead: let them die by the signal, as a plain build does.
  const std::string options = "handle_segv=0:handle_abort=0:handle_sigbus=0:detect_leaks=0";
  ::setenv("ASAN_OPTIONS", options.c_str(), 1);
  ::setenv("TSAN_OPTIONS", options.c_str(), 1);
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  patio::process_pool_executor pool{rpc, 2};
  const auto before = full_pool(pool, 2);
  REQUIRE(before.size() == 2);

  SECTION("segfault") {
    CHECK_THROWS_WITH(patio::test::run(pool.submit("segfault")),
                      Catch::Contains("killed by signal 11") && Catch::Contains("segfault"));
  }
  SECTION("abort") {
    CHECK_THROWS_AS(patio::test::run(pool.submit("abort")), patio::worker_crashed_error);
    CHECK_THROWS_WITH(patio::test::run(pool.submit("abort")), Catch::Contains("killed by signal 6"));
  }
  SECTION("exit") {
    CHECK_THROWS_AS(patio::test::run(pool.submit("exit", 3)), patio::worker_crashed_error);
    CHECK_THROWS_WITH(patio::test::run(pool.submit("exit", 0)), Catch::Contains("exited with status 0"));
  }
  SECTION("killed from outside") {
    const std::string path = "/tmp/patio-test-" + std::to_string(::getpid()) + ".pid";
    std::remove(path.c_str());
    std::thread killer([&] {
      // Kill the worker once it runs the task: it names itself in `path`.
      for (int i = 0; i < 1000; ++i) {
        std::ifstream in(path);
        int pid = 0;
        if (in >> pid) {
          ::kill(pid, SIGKILL);
          return;
        }
        std::this_thread::sleep_for(10ms);  // another process's progress cannot be awaited here
      }
    });
    CHECK_THROWS_WITH(patio::test::run(pool.submit("announce_and_sleep", path, 10'000)),
                      Catch::Contains("killed by signal 9"));
    killer.join();
    std::remove(path.c_str());
  }
  // Full size again: as many distinct workers answer as the pool has.
  const auto after = full_pool(pool, 2);
  CHECK(after.size() == 2);
  CHECK(pool.worker_pids().size() == 2);
}

TEST_CASE("process pool: a crash leaves calls running on other workers alone", "[process_pool]") {
  const std::string options = "handle_segv=0:handle_abort=0:handle_sigbus=0:detect_leaks=0";
  ::setenv("ASAN_OPTIONS", options.c_str(), 1);
  ::setenv("TSAN_OPTIONS", options.c_str(), 1);
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  patio::process_pool_executor pool{rpc, 2};
  REQUIRE(full_pool(pool, 2).size() == 2);

  std::vector<asio::awaitable<std::int64_t>> calls;
  calls.push_back(pool.submit<std::int64_t>("pid_after", 300));
  calls.push_back(crash_caught(&pool));
  const auto results = patio::test::run(patio::gather(std::move(calls)));
  CHECK(results[0] > 0);   // the slow call, on the other worker, answered
  CHECK(results[1] == 1);  // the crash failed its own call
}

TEST_CASE("process pool: a call that outlives its timeout kills its worker", "[process_pool]") {
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  patio::process_pool_executor pool{rpc, 1};
  const auto worker = *serving_pids(pool, 1).begin();

  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(patio::test::run(pool.submit<std::int64_t>({.timeout = 100ms}, "pid_after", 10'000)),
                  patio::timeout_error);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(all_gone({static_cast<int>(worker)}));

  const auto replacement = serving_pids(pool, 1);
  REQUIRE(replacement.size() == 1);
  CHECK(*replacement.begin() != worker);
}

TEST_CASE("process pool: calls beyond max_workers queue, and a full queue refuses", "[process_pool]") {
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);

  SECTION("ten calls on two workers") {
    patio::process_pool_executor pool{rpc, 2};
    const auto pids = serving_pids(pool, 10, 20);
    CHECK(pids.size() <= 2);
    CHECK_FALSE(pids.empty());
  }
  SECTION("bounded") {
    patio::process_pool_executor pool{rpc, {.max_workers = 1, .max_queue = 1}};
    std::vector<asio::awaitable<std::int64_t>> calls;
    for (int i = 0; i < 3; ++i) calls.push_back(pool.submit<std::int64_t>("pid_after", 200));
    try {
      patio::test::run(patio::gather(std::move(calls)));
      FAIL("no call was refused");
    } catch (const patio::executor_refused_error& e) {
      CHECK(e.value() == patio::errc::queue_full);
    }
  }
}

TEST_CASE("process pool: shutdown fails calls in flight and leaves no child behind", "[process_pool]") {
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  auto pool = std::make_unique<patio::process_pool_executor>(rpc, 2);
  auto pids = full_pool(*pool, 2);
  REQUIRE(pids.size() == 2);
  const auto workers = pool->worker_pids();

  int refused = 0;
  patio::test::run([&]() -> asio::awaitable<void> {
    std::vector<asio::awaitable<std::int64_t>> calls;
    for (int i = 0; i < 4; ++i) calls.push_back(pool->submit<std::int64_t>("pid_after", 5000));
    auto ex = co_await asio::this_coro::executor;
    for (auto& c : calls)
      asio::co_spawn(ex, std::move(c), [&](std::exception_ptr e, std::int64_t) {
        try {
          if (e) std::rethrow_exception(e);
        } catch (const patio::executor_refused_error& r) {
          if (r.value() == patio::errc::shut_down) ++refused;
        }
      });
    asio::steady_timer t(ex, 200ms);  // the two running calls have started
    co_await t.async_wait(asio::use_awaitable);
    const auto start = std::chrono::steady_clock::now();
    pool->shutdown();
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    pool->shutdown();  // idempotent
    t.expires_after(50ms);
    co_await t.async_wait(asio::use_awaitable);
  }());
  CHECK(refused == 4);
  CHECK(pool->worker_pids().empty());
  for (int pid : workers) {
    CHECK(gone(pid));
    int status = 0;
    CHECK(::waitpid(pid, &status, WNOHANG) == -1);  // already reaped: not our child any more
  }
  CHECK_THROWS_AS(patio::test::run(pool->submit("mul", 1)), patio::executor_refused_error);
  pool.reset();
}

TEST_CASE("process pool: works beside a thread pool executor in the same process", "[process_pool]") {
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  patio::thread_pool_executor threads{rpc, 4};
  patio::process_pool_executor processes{rpc, 2};
  for (int round = 0; round < 3; ++round) {
    std::vector<asio::awaitable<std::int64_t>> calls;
    for (int i = 0; i < 8; ++i) {
      calls.push_back(threads.submit<std::int64_t>("mul", i, 2));
      calls.push_back(processes.submit<std::int64_t>("mul", i, 3));
    }
    const auto results = patio::test::run(patio::gather(std::move(calls)));
    for (int i = 0; i < 8; ++i) {
      CHECK(results[2 * i] == i * 2);
      CHECK(results[2 * i + 1] == i * 3);
    }
  }
  // A crash in a worker leaves the thread pool, and this process, alone.
  CHECK_THROWS_AS(patio::test::run(processes.submit("segfault")), patio::worker_crashed_error);
  CHECK(patio::test::run(threads.submit<std::int64_t>("mul", 6, 7)) == 42);
}

TEST_CASE("process pool: workers exit by themselves when the parent is killed", "[process_pool]") {
  int out[2];
  REQUIRE(::pipe(out) == 0);
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  ::posix_spawn_file_actions_addclose(&actions, out[0]);
  std::vector<std::string> env_text{"PATIO_TEST_ORPHAN_PARENT=1"};
  for (char** e = environ; e && *e; ++e) env_text.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), nullptr};
  pid_t parent = -1;
  REQUIRE(::posix_spawn(&parent, self.c_str(), &actions, nullptr, argv, envp.data()) == 0);
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);

  std::vector<int> workers;
  {
    FILE* in = ::fdopen(out[0], "r");
    long long pid = 0;
    while (workers.size() < 2 && std::fscanf(in, "%lld", &pid) == 1) workers.push_back(static_cast<int>(pid));
    std::fclose(in);
  }
  REQUIRE(workers.size() == 2);
  for (int pid : workers) CHECK_FALSE(gone(pid));

  ::kill(parent, SIGKILL);
  int status = 0;
  ::waitpid(parent, &status, 0);
  CHECK(all_gone(workers));
}

TEST_CASE("worker protocol: frames and messages decode as encoded and bad input is a protocol_error",
          "[process_pool][protocol]") {
  namespace wp = patio::detail::worker_protocol;

  const auto hello = wp::frame(wp::encode_hello(1234));
  REQUIRE(hello.size() > wp::header_size);
  CHECK(wp::payload_size(reinterpret_cast<const unsigned char*>(hello.data())) == hello.size() - wp::header_size);
  const auto h = wp::decode_hello(hello.data() + wp::header_size, hello.size() - wp::header_size);
  CHECK(h.version == wp::version);
  CHECK(h.pid == 1234);

  auto inv = patio::detail::make_invocation<std::int64_t>(1, 2, patio::kwargs{{"k", "v"}});
  inv->name = "mul";
  const auto request = wp::encode_request(7, *inv);
  const auto decoded = wp::decode_request(request.data(), request.size());
  CHECK(decoded.id == 7);
  CHECK(decoded.invocation->name == "mul");
  patio::detail::lazy_zone zone;
  CHECK(patio::value(decoded.invocation->args_object(zone)).to_string() == "[1, 2]");
  REQUIRE(decoded.invocation->keywords());
  CHECK(decoded.invocation->keywords()->get<std::string>("k") == "v");

  msgpack::sbuffer six;
  msgpack::pack(six, 6);
  const auto result = wp::encode_result(7, std::string_view(six.data(), six.size()));
  const auto r = wp::decode_reply(result.data(), result.size());
  CHECK(r.ok);
  CHECK(r.id == 7);
  CHECK(r.result.as<int>() == 6);

  const auto error = wp::encode_error(8, {patio::errc::remote_error, "std::runtime_error", "boom"});
  const auto e = wp::decode_reply(error.data(), error.size());
  CHECK_FALSE(e.ok);
  CHECK(e.id == 8);
  CHECK(e.error.type_name == "std::runtime_error");
  CHECK(e.error.message == "boom");
  CHECK_THROWS_AS(std::rethrow_exception(patio::detail::exception_of(e.error)), patio::remote_error);

  SECTION("malformed") {
    const std::string garbage = "\xc1\xc1\xc1";
    CHECK_THROWS_AS(wp::decode_request(garbage.data(), garbage.size()), patio::protocol_error);
    CHECK_THROWS_AS(wp::decode_reply(garbage.data(), garbage.size()), patio::protocol_error);
    CHECK_THROWS_AS(wp::decode_hello(garbage.data(), garbage.size()), patio::protocol_error);
    // A well-formed message of the wrong kind, or with missing fields.
    CHECK_THROWS_AS(wp::decode_reply(request.data(), request.size()), patio::protocol_error);
    CHECK_THROWS_AS(wp::decode_request(result.data(), result.size()), patio::protocol_error);
    msgpack::sbuffer bad_code;
    msgpack::packer<msgpack::sbuffer> p(bad_code);
    p.pack_array(5);
    p.pack(3);
    p.pack(1);
    p.pack(999);
    p.pack("t");
    p.pack("m");
    CHECK_THROWS_AS(wp::decode_reply(bad_code.data(), bad_code.size()), patio::protocol_error);
    // Keywords that are not a map are the caller's error, answered as such.
    msgpack::sbuffer bad_kw;
    msgpack::packer<msgpack::sbuffer> q(bad_kw);
    q.pack_array(5);
    q.pack(1);
    q.pack(1);
    q.pack("f");
    q.pack_array(0);
    q.pack(5);
    const auto refused = wp::decode_request(bad_kw.data(), bad_kw.size());
    CHECK(refused.invocation->has_error());
  }
}

TEST_CASE("process pool: a worker program that never serves fails calls by timeout, and shutdown still returns",
          "[process_pool]") {
  patio::registry rpc;
  patio::test::register_process_tasks(rpc);
  SECTION("a program that exits at once") {
    patio::process_pool_executor pool{rpc, {.max_workers = 1, .program = "/bin/true"}};
    CHECK_THROWS_AS(patio::test::run(pool.submit({.timeout = 300ms}, "mul", 1, 2)), patio::timeout_error);
    const auto start = std::chrono::steady_clock::now();
    pool.shutdown();
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(pool.worker_pids().empty());
  }
  SECTION("a program that does not exist") {
    patio::process_pool_executor pool{rpc, {.max_workers = 1, .program = "/nonexistent/patio-worker"}};
    CHECK_THROWS_AS(patio::test::run(pool.submit({.timeout = 300ms}, "mul", 1, 2)), patio::timeout_error);
  }
}
