// SPDX-License-Identifier: MIT
// patio-bench: throughput of patio calls beside the raw work they wrap.
// Prints one JSON object per case and line. Uses the public API only.
//
//   patio-bench [--calls N] [--inflight N] [--case NAME]...
//
// Cases: memory_async, memory_thread_pool, process_pool.
//
// The binary is also its own process pool worker (patio::serve_as_worker),
// and, for the process pool's raw baseline, a bare echo child.
#include <patio/patio.hpp>

#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/thread_pool.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

asio::awaitable<std::int64_t> mul_async(patio::varargs<std::int64_t> args) { co_return mul(std::move(args)); }

struct options {
  std::size_t calls = 1'000'000;
  std::size_t inflight = 256;
  std::vector<std::string> cases;
};

template <class Call>
asio::awaitable<void> worker(std::size_t* remaining, Call call) {
  while (*remaining > 0) {
    --*remaining;
    co_await call();
  }
}

// Makes `o.calls` calls from `o.inflight` coroutines, each calling back to
// back; returns wall seconds.
template <class Call>
double drive(const options& o, Call call) {
  asio::io_context io;
  std::size_t remaining = o.calls;
  auto start = clock_type::now();
  for (std::size_t i = 0; i < o.inflight; ++i) asio::co_spawn(io, worker(&remaining, call), patio::rethrow);
  io.run();
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

void check(std::int64_t r) {
  if (r != 6) {
    fmt::print(stderr, "wrong result {}\n", r);
    std::abort();
  }
}

asio::awaitable<void> broker_mul(patio::memory_broker* broker) {
  check(co_await broker->call<std::int64_t>("mul", 1, 2, 3));
}

asio::awaitable<void> direct_mul() {
  // Built outside the co_await: g++ 12 rejects an initializer list inside one.
  patio::varargs<std::int64_t> args{1, 2, 3};
  check(co_await mul_async(std::move(args)));
}

asio::awaitable<void> pool_mul(asio::thread_pool* pool) {
  auto caller = co_await asio::this_coro::executor;
  co_await asio::post(*pool, asio::use_awaitable);
  patio::varargs<std::int64_t> args{1, 2, 3};
  const auto r = mul(std::move(args));
  co_await asio::post(caller, asio::use_awaitable);
  check(r);
}

void report(std::string_view name, const options& o, double seconds, double raw_seconds) {
  const double rate = static_cast<double>(o.calls) / seconds;
  const double raw_rate = static_cast<double>(o.calls) / raw_seconds;
  fmt::print(R"({{"case":"{}","calls":{},"inflight":{},"calls_per_s":{:.0f},"raw_calls_per_s":{:.0f},"ratio":{:.3f}}})"
             "\n",
             name, o.calls, o.inflight, rate, raw_rate, rate / raw_rate);
  std::fflush(stdout);
}

void memory_async(const options& o) {
  patio::registry rpc;
  rpc.add("mul", mul_async);
  patio::async_executor executor{rpc, {.max_workers = o.inflight, .max_queue = o.inflight}};
  patio::memory_broker broker{executor};
  const double patio_s = drive(o, [&] { return broker_mul(&broker); });
  // The limit: the same coroutine called directly on the same kind of io_context.
  const double raw_s = drive(o, [] { return direct_mul(); });
  report("memory_async", o, patio_s, raw_s);
}

// The process pool's limit: the same request and reply over a socketpair
// with a child that decodes, multiplies and encodes, one worker per slot,
// without patio.
constexpr const char* raw_child_env = "PATIO_BENCH_RAW_CHILD_FD";

bool read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const auto r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

int raw_child(int fd) {
  std::vector<char> buf;
  for (;;) {
    std::uint32_t size = 0;
    if (!read_all(fd, reinterpret_cast<char*>(&size), sizeof size)) return 0;
    buf.resize(size);
    if (!read_all(fd, buf.data(), size)) return 0;
    auto args = msgpack::unpack(buf.data(), buf.size());
    std::int64_t product = 1;
    for (const auto& a : args.get().via.array) product *= a.as<std::int64_t>();
    msgpack::sbuffer out;
    msgpack::pack(out, product);
    const auto n = static_cast<std::uint32_t>(out.size());
    if (::write(fd, &n, sizeof n) != sizeof n || ::write(fd, out.data(), out.size()) != static_cast<ssize_t>(n))
      return 0;
  }
}

struct raw_worker {
  int fd = -1;
  pid_t pid = -1;
};

raw_worker start_raw_child() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_adddup2(&actions, fds[1], 3);
  std::string env = std::string(raw_child_env) + "=3";
  char* envp[] = {env.data(), nullptr};
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), nullptr};
  pid_t pid = -1;
  if (::posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, envp) != 0) std::abort();
  ::posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  return {fds[0], pid};
}

asio::awaitable<void> raw_process_mul(asio::local::stream_protocol::socket* socket) {
  msgpack::sbuffer request;
  msgpack::packer<msgpack::sbuffer> p(request);
  p.pack_array(3);
  p.pack(1);
  p.pack(2);
  p.pack(3);
  const auto n = static_cast<std::uint32_t>(request.size());
  std::array<asio::const_buffer, 2> out{asio::buffer(&n, sizeof n), asio::buffer(request.data(), request.size())};
  co_await asio::async_write(*socket, out, asio::use_awaitable);
  std::uint32_t size = 0;
  co_await asio::async_read(*socket, asio::buffer(&size, sizeof size), asio::use_awaitable);
  std::vector<char> reply(size);
  co_await asio::async_read(*socket, asio::buffer(reply), asio::use_awaitable);
  check(msgpack::unpack(reply.data(), reply.size()).get().as<std::int64_t>());
}

void process_pool(const options& o) {
  constexpr std::size_t workers = 4;
  options po = o;
  po.calls = std::min<std::size_t>(o.calls, 200'000);  // ~10 µs a call: keep the default run short
  patio::registry rpc;
  rpc.add("mul", mul);
  double patio_s = 0;
  {
    patio::process_pool_executor executor{rpc, {.max_workers = workers, .max_queue = po.inflight}};
    patio::memory_broker broker{executor};
    patio_s = drive(po, [&] { return broker_mul(&broker); });
  }
  // Raw: one child per worker, each driven by inflight / workers callers in
  // turn (one request at a time per child, as a pool worker runs).
  asio::io_context io;
  std::vector<raw_worker> children;
  std::vector<std::unique_ptr<asio::local::stream_protocol::socket>> sockets;
  for (std::size_t i = 0; i < workers; ++i) {
    children.push_back(start_raw_child());
    sockets.push_back(
        std::make_unique<asio::local::stream_protocol::socket>(io, asio::local::stream_protocol(), children.back().fd));
  }
  std::size_t remaining = po.calls;
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < workers; ++i)
    asio::co_spawn(io, worker(&remaining, [s = sockets[i].get()] { return raw_process_mul(s); }), patio::rethrow);
  io.run();
  const double raw_s = std::chrono::duration<double>(clock_type::now() - start).count();
  sockets.clear();
  for (auto& c : children) ::waitpid(c.pid, nullptr, 0);
  report("process_pool", po, patio_s, raw_s);
}

void memory_thread_pool(const options& o) {
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::thread_pool_executor executor{rpc, {.max_workers = 4, .max_queue = o.inflight}};
  patio::memory_broker broker{executor};
  const double patio_s = drive(o, [&] { return broker_mul(&broker); });
  // The limit: a bare post to an asio::thread_pool of as many threads, and
  // back to the caller's executor.
  asio::thread_pool pool{4};
  const double raw_s = drive(o, [&] { return pool_mul(&pool); });
  pool.join();
  report("memory_thread_pool", o, patio_s, raw_s);
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* fd = std::getenv(raw_child_env)) return raw_child(std::atoi(fd));
  patio::registry rpc;
  rpc.add("mul", mul);
  if (patio::serve_as_worker(rpc)) return 0;

  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto next = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", arg);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--calls")
      o.calls = std::stoull(std::string(next()));
    else if (arg == "--inflight")
      o.inflight = std::max<std::size_t>(1, std::stoull(std::string(next())));
    else if (arg == "--case")
      o.cases.emplace_back(next());
    else {
      fmt::print(stderr,
                 "usage: patio-bench [--calls N] [--inflight N] [--case "
                 "memory_async|memory_thread_pool|process_pool]...\n");
      return 2;
    }
  }
  auto wanted = [&](std::string_view name) {
    return o.cases.empty() || std::find(o.cases.begin(), o.cases.end(), name) != o.cases.end();
  };
  if (wanted("memory_async")) memory_async(o);
  if (wanted("memory_thread_pool")) memory_thread_pool(o);
  if (wanted("process_pool")) process_pool(o);
}
