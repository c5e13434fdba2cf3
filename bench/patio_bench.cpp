// SPDX-License-Identifier: MIT
// patio-bench: throughput of patio calls beside the raw work they wrap.
// Prints one JSON object per line: one per case and mode. Uses the public
// API only.
//
//   patio-bench [--calls N] [--inflight N] [--repeat N] [--certs DIR]
//               [--pin split|same|none] [--mode sequential|pipelined|both]
//               [--no-raw] [--case NAME]...
//
// Cases (all of them by default, or those named by --case):
//   memory_async        mul(1, 2, 3) through a memory broker to an
//                       async_executor, beside the coroutine called directly
//   memory_thread_pool  the same to a thread_pool_executor (4 threads),
//                       beside a bare post to an asio::thread_pool and back
//   process_pool        the same to a process_pool_executor (4 workers),
//                       beside 4 bare children answering over socketpairs
//   tcp                 mul(1, 2, 3) over loopback TCP, one connection:
//                       mode "sequential" (one call at a time) and mode
//                       "pipelined" with 64 and with 1024 calls in flight
//   tcp_tls             as tcp inside TLS: sequential, and pipelined with 64
//   tcp_conns           pipelined over 8 connections (8 client brokers to one
//                       server), 64 calls in flight on each
//   tcp_bytes           echo(patio::bytes) of 64 KiB: sequential, and
//                       pipelined with 64 in flight
//   redis               a burst of 2,000 mul(1, 2, 3) calls at once through a
//                       redis_broker to 4 workers, and to 1, beside a bare
//                       hiredis program doing the same XADDs and reads
//   redis_sequential    one call at a time to 1 worker, beside the bare loop
//
// The Redis cases start a redis-server of their own (PATIO_REDIS_SERVER, or
// found in /usr/bin and the like); without it, or with patio built with
// PATIO_WITH_REDIS=OFF, they are skipped with a line on stderr.
//
// Every line has "case", "calls_per_s", "raw_calls_per_s" and "ratio"
// (patio / raw). The TCP lines add "mode", "connections", "inflight" (per
// connection) and "payload_bytes"; sequential ones p50_us and p99_us (and
// raw_p50_us, raw_p99_us). The memory lines and the pipelined TCP lines add
// "allocs_per_call", "new_per_call" and "bytes_per_call": heap allocations
// per call (operator new and malloc, which msgpack's zones use; new_per_call
// is the operator new part) and the bytes they asked for, counted over a
// separate, untimed round of the same pipelined calls (so that counting does
// not slow the timed ones). For TCP, both sides run in this process: the
// counts are client and server together ("counted":"client+server"). The
// Redis lines add "workers", "p50_us", "p99_us", "raw_p50_us", "raw_p99_us"
// and "latency_ratio" (p50 / raw p50); a burst's latencies run from the
// start of the burst to each answer.
//
// Each figure is the median of --repeat rounds (default 3) after a warm-up
// round of a tenth of the calls. Calls a round (or --calls for all): memory
// cases 500,000 (process_pool 100,000) with 256 in flight (--inflight);
// TCP 10,000 sequential and 50,000 pipelined (tcp_bytes 1,000 and 5,000),
// --inflight replacing the TCP cases' windows; Redis 2,000 (the burst, and
// sequential). tcp and tcp_tls use the test
// certificates of --certs (default tests/certs/ of the source tree).
// The TCP cases' server and client threads are pinned as --pin says: each to
// a CPU of its own (split, the default), both to one (same), or not (none).
// --mode keeps only the TCP cases' sequential or pipelined lines. --no-raw
// skips the raw baselines (their fields print 0): patio alone, for profiling
// it (strace -f -c, valgrind) without the baseline's work mixed in.
//
// The binary is also its own process pool worker (patio::serve_as_worker),
// and, for the process pool's raw baseline, a bare echo child.
#include <patio/patio.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#if PATIO_BENCH_REDIS
#include <patio/redis_broker.hpp>

#include <hiredis/hiredis.h>
#endif

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <future>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

// ---- Allocation counting ------------------------------------------------------
//
// The global operator new and delete are replaced, and so are malloc, calloc
// and realloc (msgpack allocates its zones and buffers with malloc, OpenSSL
// its records): each forwards to glibc's allocator and, while counting is on,
// counts. Counting is off except in the counted rounds, so the timed rounds
// pay one relaxed load per allocation.

// Sanitizers bring their own allocator: under them nothing is replaced and
// the counts print as 0.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PATIO_BENCH_COUNTS_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define PATIO_BENCH_COUNTS_ALLOCATIONS 0
#endif
#endif
#ifndef PATIO_BENCH_COUNTS_ALLOCATIONS
#define PATIO_BENCH_COUNTS_ALLOCATIONS 1
#endif

namespace {

std::atomic<bool> counting{false};
std::atomic<std::uint64_t> counted_news{0};
std::atomic<std::uint64_t> counted_mallocs{0};
std::atomic<std::uint64_t> counted_bytes{0};

#if PATIO_BENCH_COUNTS_ALLOCATIONS
void note_new(std::size_t n) noexcept {
  if (!counting.load(std::memory_order_relaxed)) return;
  counted_news.fetch_add(1, std::memory_order_relaxed);
  counted_bytes.fetch_add(n, std::memory_order_relaxed);
}

void note_malloc(std::size_t n) noexcept {
  if (!counting.load(std::memory_order_relaxed)) return;
  counted_mallocs.fetch_add(1, std::memory_order_relaxed);
  counted_bytes.fetch_add(n, std::memory_order_relaxed);
}
#endif

}  // namespace

#if PATIO_BENCH_COUNTS_ALLOCATIONS
extern "C" {
// glibc's allocator under its exported names.
void* __libc_malloc(std::size_t n) noexcept;
void* __libc_calloc(std::size_t count, std::size_t n) noexcept;
void* __libc_realloc(void* p, std::size_t n) noexcept;
void __libc_free(void* p) noexcept;

void* malloc(std::size_t n) noexcept {
  note_malloc(n);
  return __libc_malloc(n);
}

void* calloc(std::size_t count, std::size_t n) noexcept {
  note_malloc(count * n);
  return __libc_calloc(count, n);
}

void* realloc(void* p, std::size_t n) noexcept {
  note_malloc(n);
  return __libc_realloc(p, n);
}

void free(void* p) noexcept { __libc_free(p); }
}

void* operator new(std::size_t n) {
  note_new(n);
  if (void* p = __libc_malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

void* operator new[](std::size_t n) { return ::operator new(n); }

void* operator new(std::size_t n, std::align_val_t align) {
  note_new(n);
  const auto a = static_cast<std::size_t>(align);
  // aligned_alloc wants a multiple of the alignment; glibc's is not replaced
  // here, and its blocks are freed by free like any other.
  if (void* p = std::aligned_alloc(a, (n + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}

void* operator new[](std::size_t n, std::align_val_t align) { return ::operator new(n, align); }
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
#endif  // PATIO_BENCH_COUNTS_ALLOCATIONS

namespace {

/// Heap allocations per call, over one counted run.
struct alloc_counts {
  double allocs = 0, news = 0, bytes = 0;
};

/// Runs `f`, which makes `calls` calls, with counting on.
template <class F>
alloc_counts count_allocations(std::size_t calls, F f) {
  counted_news = 0;
  counted_mallocs = 0;
  counted_bytes = 0;
  counting = true;
  f();
  counting = false;
  const auto n = static_cast<double>(calls);
  return {static_cast<double>(counted_news + counted_mallocs) / n, static_cast<double>(counted_news.load()) / n,
          static_cast<double>(counted_bytes.load()) / n};
}

std::string alloc_fields(const alloc_counts& a) {
  return fmt::format(R"("allocs_per_call":{:.2f},"new_per_call":{:.2f},"bytes_per_call":{:.0f})", a.allocs, a.news,
                     a.bytes);
}

using clock_type = std::chrono::steady_clock;

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t product = 1;
  for (auto a : args) product *= a;
  return product;
}

asio::awaitable<std::int64_t> mul_async(patio::varargs<std::int64_t> args) { co_return mul(std::move(args)); }

asio::awaitable<patio::bytes> echo(patio::bytes b) { co_return b; }

struct options {
  std::size_t calls = 500'000;
  std::size_t inflight = 256;
  bool calls_given = false;     // the TCP cases have defaults of their own
  bool inflight_given = false;  // (the memory cases' would take minutes there)
  std::size_t repeat = 3;       // rounds, of which the median is reported
  std::string pin = "split";    // TCP cases: where the two sides' threads run
  std::string certs = PATIO_SOURCE_DIR "/tests/certs";
  std::string mode = "both";  // TCP cases: sequential, pipelined or both
  bool raw = true;            // false (--no-raw): patio alone, for profiling
  std::vector<std::string> cases;
};

template <class Call>
asio::awaitable<void> worker(std::size_t* remaining, Call call) {
  while (*remaining > 0) {
    --*remaining;
    co_await call();
  }
}

/// Every io_context of the bench, patio's and the raw baselines' alike, is
/// run by one thread, and says so: Asio then keeps what that thread posts to
/// itself in a queue of the thread's own, without the scheduler's lock or a
/// wake-up (posts from other threads still take the lock).
constexpr int single_threaded = 1;

// Makes `calls` calls from `inflight` coroutines, each calling back to
// back; returns wall seconds.
template <class Call>
double drive(std::size_t calls, std::size_t inflight, Call call) {
  asio::io_context io{single_threaded};
  std::size_t remaining = calls;
  auto start = clock_type::now();
  for (std::size_t i = 0; i < inflight; ++i) asio::co_spawn(io, worker(&remaining, call), patio::rethrow);
  io.run();
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;  // --no-raw
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const auto k = std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

/// patio / raw, or 0 without a raw figure (--no-raw).
double ratio(double rate, double raw_rate) { return raw_rate > 0 ? rate / raw_rate : 0; }

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

/// Times `run_patio` and `run_raw` (each: calls -> wall seconds) over a
/// warm-up round and --repeat rounds, alternating, then counts
/// run_patio's allocations over a tenth of the calls; prints the line.
template <class Patio, class Raw>
void memory_case(std::string_view name, const options& o, std::size_t calls, Patio run_patio, Raw run_raw,
                 bool count = true) {
  std::vector<double> rate, raw_rate;
  for (std::size_t round = 0; round <= o.repeat; ++round) {
    const auto n = round == 0 ? std::max<std::size_t>(1, calls / 10) : calls;
    const double patio_s = run_patio(n);
    const double raw_s = o.raw ? run_raw(n) : 0;
    if (round == 0) continue;
    rate.push_back(static_cast<double>(n) / patio_s);
    if (o.raw) raw_rate.push_back(static_cast<double>(n) / raw_s);
  }
  std::string allocs;
  if (count) {
    const auto n = std::max<std::size_t>(1, calls / 10);
    allocs = "," + alloc_fields(count_allocations(n, [&] { run_patio(n); }));
  }
  const double r = median(rate), raw = median(raw_rate);
  fmt::print(R"({{"case":"{}","calls":{},"inflight":{},"repeat":{},"calls_per_s":{:.0f},"raw_calls_per_s":{:.0f},)"
             R"("ratio":{:.3f}{}}})"
             "\n",
             name, calls, o.inflight, o.repeat, r, raw, ratio(r, raw), allocs);
  std::fflush(stdout);
}

void memory_async(const options& o) {
  patio::registry rpc;
  rpc.add("mul", mul_async);
  patio::async_executor executor{rpc, {.max_workers = o.inflight, .max_queue = o.inflight}};
  patio::memory_broker broker{executor};
  memory_case(
      "memory_async", o, o.calls,
      [&](std::size_t n) { return drive(n, o.inflight, [&] { return broker_mul(&broker); }); },
      // The limit: the same coroutine called directly on the same kind of io_context.
      [&](std::size_t n) { return drive(n, o.inflight, [] { return direct_mul(); }); });
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
  // ~10 µs a call: keep the default run short.
  const std::size_t calls = std::min<std::size_t>(o.calls, 100'000);
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::process_pool_executor executor{rpc, {.max_workers = workers, .max_queue = o.inflight}};
  patio::memory_broker broker{executor};
  // Raw: one child per worker, each driven by inflight / workers callers in
  // turn (one request at a time per child, as a pool worker runs).
  asio::io_context io{single_threaded};
  std::vector<raw_worker> children;
  std::vector<std::unique_ptr<asio::local::stream_protocol::socket>> sockets;
  for (std::size_t i = 0; i < workers; ++i) {
    children.push_back(start_raw_child());
    sockets.push_back(
        std::make_unique<asio::local::stream_protocol::socket>(io, asio::local::stream_protocol(), children.back().fd));
  }
  auto raw = [&](std::size_t n) {
    std::size_t remaining = n;
    io.restart();
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < workers; ++i)
      asio::co_spawn(io, worker(&remaining, [s = sockets[i].get()] { return raw_process_mul(s); }), patio::rethrow);
    io.run();
    return std::chrono::duration<double>(clock_type::now() - start).count();
  };
  // Allocations are not counted: most of the work is in the children.
  memory_case(
      "process_pool", o, calls,
      [&](std::size_t n) { return drive(n, o.inflight, [&] { return broker_mul(&broker); }); }, raw, false);
  sockets.clear();
  for (auto& c : children) ::waitpid(c.pid, nullptr, 0);
}

void memory_thread_pool(const options& o) {
  patio::registry rpc;
  rpc.add("mul", mul);
  patio::thread_pool_executor executor{rpc, {.max_workers = 4, .max_queue = o.inflight}};
  patio::memory_broker broker{executor};
  // The limit: a bare post to an asio::thread_pool of as many threads, and
  // back to the caller's executor.
  asio::thread_pool pool{4};
  memory_case(
      "memory_thread_pool", o, o.calls,
      [&](std::size_t n) { return drive(n, o.inflight, [&] { return broker_mul(&broker); }); },
      [&](std::size_t n) { return drive(n, o.inflight, [&] { return pool_mul(&pool); }); });
  pool.join();
}

// ---- TCP --------------------------------------------------------------------
//
// Where the two sides run: the real setup is two processes over loopback. In
// one process, the server side (patio's server broker, or the raw echo
// server) runs on its own io_context and thread, and the client side (the
// client brokers and the calling coroutines, or the raw clients) on another:
// two threads, as two single-threaded processes on this 2-vCPU machine would
// be, and the same for patio and for its raw limit, so the ratio is fair.
// The threads are pinned (--pin): left to the scheduler, they sometimes share
// a vCPU and sometimes not, and on a VM the two differ more than patio and
// raw do (a wake-up across vCPUs costs tens of µs), so a run would mix two
// machines. "split" (the default) gives each side its own CPU, as two busy
// processes have; "same" shares one, which shows CPU cost per call best.
// The server executes on an async_executor: the call runs on the I/O thread
// that delivered it, so the figures are the broker's (framing, codec,
// routing, the loopback round trip), not a thread pool's hops.
//
// The raw limit: the same frames (for mul(1, 2, 3) a 20-byte REQUEST [name,
// args, kwargs, nil] and a 10-byte RESPONSE; for echo, the bytes both ways)
// over the same kind of stream, with TCP_NODELAY as patio sets it, read in
// bulk and written in batches; the server decodes the arguments and
// multiplies (or packs the bytes back), the client checks the result.

using asio::ip::tcp;
using tls_stream = asio::ssl::stream<tcp::socket>;

template <class Stream>
constexpr bool is_tls = std::is_same_v<Stream, tls_stream>;

constexpr const char* tcp_key = "patio-bench";

/// What one TCP case measures.
struct tcp_shape {
  std::string_view name;
  std::size_t connections = 1;
  std::size_t payload = 0;  // bytes echoed by each call; 0: mul(1, 2, 3)
  bool sequential = true;
  std::vector<std::size_t> inflights{64};  // pipelined windows, per connection
  std::size_t sequential_calls = 10'000;
  std::size_t pipelined_calls = 50'000;
};

std::uint32_t get_be32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | static_cast<std::uint32_t>(p[3]);
}

void put_be32(char* p, std::uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

constexpr std::size_t raw_header_size = 9;
constexpr unsigned char raw_request_type = 10;
constexpr unsigned char raw_response_type = 20;

void append_frame(std::string& out, unsigned char type, std::uint32_t serial, const char* payload, std::size_t size) {
  const auto at = out.size();
  out.resize(at + raw_header_size);
  out[at] = static_cast<char>(type);
  put_be32(&out[at + 1], static_cast<std::uint32_t>(size));
  put_be32(&out[at + 5], serial);
  out.append(payload, size);
}

/// The REQUEST patio sends for call("mul", 1, 2, 3), or for
/// call("echo", bytes) of `payload` bytes; serial left to patch.
std::string raw_request_frame(std::size_t payload) {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(4);
  if (payload == 0) {
    p.pack(std::string_view("mul"));
    p.pack_array(3);
    p.pack(1);
    p.pack(2);
    p.pack(3);
  } else {
    const std::string data(payload, 'x');
    p.pack(std::string_view("echo"));
    p.pack_array(1);
    p.pack_bin(static_cast<std::uint32_t>(payload));
    p.pack_bin_body(data.data(), static_cast<std::uint32_t>(payload));
  }
  p.pack_map(0);
  p.pack_nil();
  std::string frame;
  append_frame(frame, raw_request_type, 0, out.data(), out.size());
  return frame;
}

/// Bytes read from a stream, from which whole frames are taken.
class frame_buffer {
 public:
  struct frame {
    unsigned char type;
    std::uint32_t serial;
    const char* payload;
    std::size_t size;
  };

  asio::mutable_buffer space() {
    if (begin_ > 0) {
      std::copy(data_.begin() + static_cast<std::ptrdiff_t>(begin_), data_.begin() + static_cast<std::ptrdiff_t>(end_),
                data_.begin());
      end_ -= begin_;
      begin_ = 0;
    }
    if (end_ == data_.size()) data_.resize(data_.size() * 2);
    return asio::buffer(data_.data() + end_, data_.size() - end_);
  }

  void filled(std::size_t n) { end_ += n; }

  /// Takes the next whole frame, if there is one.
  bool next(frame& f) {
    if (end_ - begin_ < raw_header_size) return false;
    const auto* h = reinterpret_cast<const unsigned char*>(data_.data() + begin_);
    const std::size_t size = get_be32(h + 1);
    if (end_ - begin_ < raw_header_size + size) return false;
    f = {h[0], get_be32(h + 5), data_.data() + begin_ + raw_header_size, size};
    begin_ += raw_header_size + size;
    return true;
  }

 private:
  std::vector<char> data_ = std::vector<char>(64 * 1024);
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

tcp::socket& lowest(tcp::socket& s) { return s; }
tcp::socket& lowest(tls_stream& s) { return s.next_layer(); }

template <class Stream>
std::unique_ptr<Stream> make_stream(tcp::socket socket, asio::ssl::context* ctx) {
  socket.set_option(tcp::no_delay(true));
  if constexpr (is_tls<Stream>)
    return std::make_unique<Stream>(std::move(socket), *ctx);
  else
    return std::make_unique<Stream>(std::move(socket));
}

/// The raw server: answers every REQUEST with the product of its arguments
/// (or, for one bin argument, the bin), one batched write per read, until
/// the client goes.
template <class Stream>
asio::awaitable<void> raw_serve(std::unique_ptr<Stream> s) {
  frame_buffer in;
  std::string out;
  msgpack::sbuffer result;
  for (;;) {
    std::error_code ec;
    const auto n = co_await s->async_read_some(in.space(), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    in.filled(n);
    out.clear();
    frame_buffer::frame f;
    while (in.next(f)) {
      auto request = msgpack::unpack(f.payload, f.size);
      const auto& args = request.get().via.array.ptr[1].via.array;
      result.clear();
      msgpack::packer<msgpack::sbuffer> p(result);
      if (args.size == 1 && args.ptr[0].type == msgpack::type::BIN) {
        p.pack_bin(args.ptr[0].via.bin.size);
        p.pack_bin_body(args.ptr[0].via.bin.ptr, args.ptr[0].via.bin.size);
      } else {
        std::int64_t product = 1;
        for (const auto& a : args) product *= a.as<std::int64_t>();
        p.pack(product);
      }
      append_frame(out, raw_response_type, f.serial, result.data(), result.size());
    }
    co_await asio::async_write(*s, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

/// Accepts `connections` raw clients, serving each.
template <class Stream>
asio::awaitable<void> raw_accept(tcp::acceptor* acceptor, asio::ssl::context* ctx, std::size_t connections) {
  for (std::size_t i = 0; i < connections; ++i) {
    auto s = make_stream<Stream>(co_await acceptor->async_accept(asio::use_awaitable), ctx);
    if constexpr (is_tls<Stream>) co_await s->async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
    asio::co_spawn(acceptor->get_executor(), raw_serve(std::move(s)), patio::rethrow);
  }
}

template <class Stream>
struct raw_client {
  explicit raw_client(std::size_t payload_size) : payload(payload_size), request(raw_request_frame(payload_size)) {}

  std::size_t payload;
  std::unique_ptr<Stream> stream;
  frame_buffer in;
  std::string request;
  std::string out;
  std::uint32_t serial = 0;
};

template <class Stream>
asio::awaitable<void> raw_connect(raw_client<Stream>* c, std::uint16_t port, asio::ssl::context* ctx) {
  tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect({asio::ip::address_v4::loopback(), port}, asio::use_awaitable);
  c->stream = make_stream<Stream>(std::move(socket), ctx);
  if constexpr (is_tls<Stream>) {
    // SNI, as patio's client sends it; SSL_set_tlsext_host_name without its C cast.
    static char name[] = "localhost";
    SSL_ctrl(c->stream->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, name);
    co_await c->stream->async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
  }
}

template <class Stream>
asio::awaitable<void> raw_close(raw_client<Stream>* c) {
  std::error_code ignored;
  lowest(*c->stream).shutdown(tcp::socket::shutdown_both, ignored);
  lowest(*c->stream).close(ignored);
  co_return;
}

void check_reply(const frame_buffer::frame& f, std::size_t payload) {
  if (f.type != raw_response_type) {
    fmt::print(stderr, "raw: unexpected frame type {}\n", f.type);
    std::abort();
  }
  const auto result = msgpack::unpack(f.payload, f.size);
  if (payload == 0)
    check(result.get().as<std::int64_t>());
  else if (result.get().type != msgpack::type::BIN || result.get().via.bin.size != payload)
    std::abort();
}

/// One raw call: a REQUEST, then its RESPONSE.
template <class Stream>
asio::awaitable<void> raw_call(raw_client<Stream>* c) {
  put_be32(&c->request[5], ++c->serial);
  co_await asio::async_write(*c->stream, asio::buffer(c->request), asio::use_awaitable);
  frame_buffer::frame f;
  while (!c->in.next(f)) c->in.filled(co_await c->stream->async_read_some(c->in.space(), asio::use_awaitable));
  if (f.serial != c->serial) std::abort();
  check_reply(f, c->payload);
}

/// `calls` raw calls with a window of `inflight`: every RESPONSE read lets
/// one more REQUEST go, in one write per read.
template <class Stream>
asio::awaitable<void> raw_pipelined(raw_client<Stream>* c, std::size_t calls, std::size_t inflight) {
  std::size_t sent = 0;
  std::size_t done = 0;
  auto send = [&](std::size_t n) {
    c->out.clear();
    for (; n > 0 && sent < calls; --n, ++sent) {
      put_be32(&c->request[5], ++c->serial);
      c->out += c->request;
    }
  };
  send(inflight);
  co_await asio::async_write(*c->stream, asio::buffer(c->out), asio::use_awaitable);
  while (done < calls) {
    c->in.filled(co_await c->stream->async_read_some(c->in.space(), asio::use_awaitable));
    std::size_t replies = 0;
    frame_buffer::frame f;
    while (c->in.next(f)) {
      check_reply(f, c->payload);
      ++replies;
    }
    done += replies;
    send(replies);
    if (!c->out.empty()) co_await asio::async_write(*c->stream, asio::buffer(c->out), asio::use_awaitable);
  }
}

/// One patio call over `client`: mul(1, 2, 3), or echo(*payload).
struct tcp_call {
  patio::tcp_client_broker* client;
  const patio::bytes* payload;

  asio::awaitable<void> operator()() const { return payload->empty() ? mul(client) : echo(client, payload); }

  static asio::awaitable<void> mul(patio::tcp_client_broker* client) {
    check(co_await client->call<std::int64_t>("mul", 1, 2, 3));
  }

  static asio::awaitable<void> echo(patio::tcp_client_broker* client, const patio::bytes* payload) {
    const auto r = co_await client->call<patio::bytes>("echo", *payload);
    if (r.size() != payload->size()) std::abort();
  }
};

/// The first call also waits for the connection (handshake, discovery).
asio::awaitable<void> tcp_first_call(patio::tcp_client_broker* client) {
  check(co_await client->call<std::int64_t>({.timeout = std::chrono::seconds(10)}, "mul", 1, 2, 3));
}

struct sample {
  double seconds = 0;
  std::vector<double> latencies_us;
};

/// `calls` calls one after the other, each timed.
template <class Call>
asio::awaitable<sample> sequential(std::size_t calls, Call call) {
  sample s;
  s.latencies_us.reserve(calls);
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < calls; ++i) {
    const auto t0 = clock_type::now();
    co_await call();
    s.latencies_us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  s.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  co_return s;
}

/// Runs `tasks` side by side until all are done. @returns wall seconds.
asio::awaitable<double> run_all(std::vector<asio::awaitable<void>> tasks) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
  std::size_t running = tasks.size();
  std::exception_ptr error;
  const auto start = clock_type::now();
  for (auto& t : tasks)
    asio::co_spawn(ex, std::move(t), [&](std::exception_ptr e) {
      if (e && !error) error = e;
      if (--running == 0) all_done.cancel();
    });
  std::error_code ignored;
  co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  if (error) std::rethrow_exception(error);
  co_return std::chrono::duration<double>(clock_type::now() - start).count();
}

/// `calls` calls in all from `inflight` coroutines per element of `calls_on`
/// (one per connection), each calling back to back. @returns wall seconds.
asio::awaitable<double> pipelined(std::size_t calls, std::size_t inflight, std::vector<tcp_call> calls_on) {
  std::size_t remaining = calls;
  std::vector<asio::awaitable<void>> tasks;
  for (const auto& call : calls_on)
    for (std::size_t i = 0; i < inflight; ++i) tasks.push_back(worker(&remaining, call));
  co_return co_await run_all(std::move(tasks));
}

/// `calls` raw calls in all, shared among `clients`, `inflight` on each.
template <class Stream>
asio::awaitable<double> raw_pipelined_all(std::vector<raw_client<Stream>*> clients, std::size_t calls,
                                          std::size_t inflight) {
  std::vector<asio::awaitable<void>> tasks;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    const auto share = calls / clients.size() + (i < calls % clients.size() ? 1 : 0);
    if (share > 0) tasks.push_back(raw_pipelined(clients[i], share, inflight));
  }
  co_return co_await run_all(std::move(tasks));
}

/// Per round: calls/s, and for sequential rounds p50 and p99 in µs.
struct rounds {
  std::vector<double> rate, p50, p99;

  void add(std::size_t calls, double seconds) { rate.push_back(static_cast<double>(calls) / seconds); }
  void add(const sample& s) {
    add(s.latencies_us.size(), s.seconds);
    p50.push_back(percentile(s.latencies_us, 0.50));
    p99.push_back(percentile(s.latencies_us, 0.99));
  }
};

patio::tls_options tcp_server_tls(const options& o) {
  return {.certificate_chain_file = o.certs + "/server.pem", .private_key_file = o.certs + "/server.key"};
}

patio::tls_options tcp_client_tls(const options& o) {
  return {.ca_file = o.certs + "/ca.pem", .server_name = "localhost"};
}

/// The raw contexts, configured as patio configures its own (TLS 1.2 or
/// later, the client verifying the chain and the name).
asio::ssl::context raw_tls_context(const options& o, bool server) {
  asio::ssl::context ctx(server ? asio::ssl::context::tls_server : asio::ssl::context::tls_client);
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (server) {
    ctx.use_certificate_chain_file(o.certs + "/server.pem");
    ctx.use_private_key_file(o.certs + "/server.key", asio::ssl::context::pem);
  } else {
    ctx.load_verify_file(o.certs + "/ca.pem");
    ctx.set_verify_mode(asio::ssl::verify_peer);
    ctx.set_verify_callback(asio::ssl::host_name_verification("localhost"));
  }
  return ctx;
}

/// The CPUs the TCP cases' server and client threads are pinned to
/// (--pin): "split" gives each its own CPU, "same" puts both on one, "none"
/// leaves them to the scheduler. -1 for no pinning.
std::array<int, 2> tcp_cpus(const std::string& pin) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<int> cpus;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
  if (pin == "none" || cpus.empty()) return {-1, -1};
  if (pin == "same") return {cpus[0], cpus[0]};
  return {cpus[0], cpus[1 % cpus.size()]};
}

/// An io_context run by a thread of its own from start() until destroyed:
/// one side of a TCP case. Destroyed by an exception, it stops at once.
class io_thread {
 public:
  io_thread() = default;
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;
  ~io_thread() {
    work_.reset();
    if (std::uncaught_exceptions() > 0) io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  asio::io_context& io() noexcept { return io_; }
  /// Starts the thread, pinned to `cpu` unless it is -1.
  void start(int cpu) {
    thread_ = std::thread([this, cpu] {
      if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);
      }
      io_.run();
    });
  }

 private:
  asio::io_context io_{single_threaded};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread thread_;
};

/// Runs `a` on `side`'s thread and waits for its result.
template <class T>
T run_on(io_thread& side, asio::awaitable<T> a) {
  return asio::co_spawn(side.io(), std::move(a), asio::use_future).get();
}

template <class Stream>
void tcp_case(const options& o, tcp_shape shape) {
  constexpr bool tls = is_tls<Stream>;
  if (o.calls_given) shape.sequential_calls = shape.pipelined_calls = o.calls;
  if (o.inflight_given) shape.inflights = {o.inflight};
  if (o.mode == "pipelined") shape.sequential = false;
  if (o.mode == "sequential") shape.inflights.clear();
  if (!shape.sequential && shape.inflights.empty()) return;
  const std::size_t connections = shape.connections;
  std::size_t most_inflight = 1;
  for (const auto k : shape.inflights) most_inflight = std::max(most_inflight, k);

  // Declared first, destroyed last: everything below lives on one of them.
  io_thread server_side;
  io_thread client_side;

  // patio: the server offers mul and echo on an async executor; the clients
  // only call. Both prove the shared key, as a real deployment does.
  patio::registry server_rpc;
  server_rpc.add("mul", mul_async);
  server_rpc.add("echo", echo);
  const auto server_slots = most_inflight * connections;
  patio::async_executor server_executor{server_rpc, {.max_workers = server_slots, .max_queue = server_slots}};
  patio::tcp_options server_options{.key = tcp_key};
  if (tls) server_options.tls = tcp_server_tls(o);
  patio::tcp_server_broker server{server_side.io().get_executor(), server_executor, server_options};
  const auto port = server.listen("127.0.0.1", 0);
  patio::registry client_rpc;
  patio::null_executor client_executor{client_rpc};
  patio::tcp_options client_options{.key = tcp_key};
  if (tls) client_options.tls = tcp_client_tls(o);
  std::vector<std::unique_ptr<patio::tcp_client_broker>> clients;
  const patio::bytes payload(shape.payload, std::byte{'x'});
  std::vector<tcp_call> calls_on;
  for (std::size_t i = 0; i < connections; ++i) {
    clients.push_back(
        std::make_unique<patio::tcp_client_broker>(client_side.io().get_executor(), client_executor, client_options));
    clients.back()->connect("127.0.0.1", port);
    calls_on.push_back({clients.back().get(), &payload});
  }

  // The raw limit, on the same two threads.
  std::optional<asio::ssl::context> raw_server_ctx, raw_client_ctx;
  if (tls) {
    raw_server_ctx.emplace(raw_tls_context(o, true));
    raw_client_ctx.emplace(raw_tls_context(o, false));
  }
  tcp::acceptor raw_acceptor(server_side.io(), {asio::ip::address_v4::loopback(), 0});
  asio::co_spawn(server_side.io(),
                 raw_accept<Stream>(&raw_acceptor, raw_server_ctx ? &*raw_server_ctx : nullptr, connections),
                 patio::rethrow);
  std::vector<std::unique_ptr<raw_client<Stream>>> raws;
  std::vector<raw_client<Stream>*> raw_ptrs;
  for (std::size_t i = 0; i < connections; ++i) {
    raws.push_back(std::make_unique<raw_client<Stream>>(shape.payload));
    raw_ptrs.push_back(raws.back().get());
  }

  const auto cpus = tcp_cpus(o.pin);
  server_side.start(cpus[0]);
  client_side.start(cpus[1]);
  for (auto* r : raw_ptrs)
    run_on(client_side,
           raw_connect(r, raw_acceptor.local_endpoint().port(), raw_client_ctx ? &*raw_client_ctx : nullptr));
  for (auto& c : clients) run_on(client_side, tcp_first_call(c.get()));

  const auto patio_call = calls_on[0];
  auto raw_once = [r = raw_ptrs[0]] { return raw_call(r); };
  rounds patio_seq, raw_seq;
  std::vector<rounds> patio_pipe(shape.inflights.size()), raw_pipe(shape.inflights.size());
  // Round 0 warms up (connections, allocators, caches) with a tenth of the
  // calls and is not counted. patio and raw alternate within each round, so
  // that drift on a noisy machine hits both alike.
  for (std::size_t round = 0; round <= o.repeat; ++round) {
    const bool warm_up = round == 0;
    const auto seq_n = warm_up ? std::max<std::size_t>(1, shape.sequential_calls / 10) : shape.sequential_calls;
    const auto pipe_n = warm_up ? std::max<std::size_t>(1, shape.pipelined_calls / 10) : shape.pipelined_calls;
    if (shape.sequential) {
      const auto ps = run_on(client_side, sequential(seq_n, patio_call));
      const auto rs = o.raw ? run_on(client_side, sequential(seq_n, raw_once)) : sample{};
      if (!warm_up) {
        patio_seq.add(ps);
        if (o.raw) raw_seq.add(rs);
      }
    }
    for (std::size_t k = 0; k < shape.inflights.size(); ++k) {
      const auto pp = run_on(client_side, pipelined(pipe_n, shape.inflights[k], calls_on));
      const auto rp = o.raw ? run_on(client_side, raw_pipelined_all(raw_ptrs, pipe_n, shape.inflights[k])) : 0;
      if (!warm_up) {
        patio_pipe[k].add(pipe_n, pp);
        if (o.raw) raw_pipe[k].add(pipe_n, rp);
      }
    }
  }
  // Allocations: a separate round of each pipelined run, a fifth of the calls.
  std::vector<alloc_counts> allocs;
  for (const auto inflight : shape.inflights) {
    const auto n = std::max<std::size_t>(1, shape.pipelined_calls / 5);
    allocs.push_back(count_allocations(n, [&] { run_on(client_side, pipelined(n, inflight, calls_on)); }));
  }

  for (auto* r : raw_ptrs) run_on(client_side, raw_close(r));
  for (auto& c : clients) run_on(client_side, c->close());
  run_on(server_side, server.close());

  const auto common = fmt::format(R"("case":"{}","server_executor":"async","pin":"{}","connections":{},)"
                                  R"("payload_bytes":{},"repeat":{})",
                                  shape.name, o.pin, connections, shape.payload, o.repeat);
  if (shape.sequential) {
    const double rate = median(patio_seq.rate), raw_rate = median(raw_seq.rate);
    fmt::print(R"({{{},"mode":"sequential","calls":{},"inflight":1,"calls_per_s":{:.0f},"p50_us":{:.1f},)"
               R"("p99_us":{:.1f},"raw_calls_per_s":{:.0f},"raw_p50_us":{:.1f},"raw_p99_us":{:.1f},"ratio":{:.3f}}})"
               "\n",
               common, shape.sequential_calls, rate, median(patio_seq.p50), median(patio_seq.p99), raw_rate,
               median(raw_seq.p50), median(raw_seq.p99), ratio(rate, raw_rate));
  }
  for (std::size_t k = 0; k < shape.inflights.size(); ++k) {
    const double rate = median(patio_pipe[k].rate), raw_rate = median(raw_pipe[k].rate);
    fmt::print(R"({{{},"mode":"pipelined","calls":{},"inflight":{},"calls_per_s":{:.0f},"raw_calls_per_s":{:.0f},)"
               R"("ratio":{:.3f},{},"counted":"client+server"}})"
               "\n",
               common, shape.pipelined_calls, shape.inflights[k], rate, raw_rate, ratio(rate, raw_rate),
               alloc_fields(allocs[k]));
  }
  std::fflush(stdout);
}

// ---- Redis ------------------------------------------------------------------
//
// patio::redis_broker against a redis-server this process starts (a free
// loopback port, a temporary directory, no persistence; killed at the end,
// and with the bench if it dies). Every worker is a thread of its own with
// its own io_context (patio) or its own blocking hiredis connection (raw), and
// the caller another, so every figure counts real sockets and Redis's own
// work: on this 2-core machine the callers, the workers and redis-server
// share the two CPUs (nothing is pinned).
//
// The raw limit: the same flow with synchronous hiredis and nothing else. The
// caller XADDs the calls (the same fields and REQUEST payload as patio's:
// c, r, i) and reads the replies with XREAD and a large COUNT; each worker
// reads with XREADGROUP COUNT 128, multiplies, and writes each reply XADD and
// its XACK in one pipelined write per batch. It keeps no claim, no deadline,
// no expiry, no housekeeping: what a call must cost at least.

#if PATIO_BENCH_REDIS

struct redis_context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct redis_reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using redis_context = std::unique_ptr<redisContext, redis_context_deleter>;
using redis_reply = std::unique_ptr<redisReply, redis_reply_deleter>;

redis_context redis_connect(std::uint16_t port) {
  const timeval limit{2, 0};
  redis_context c(redisConnectWithTimeout("127.0.0.1", port, limit));
  if (!c || c->err) throw std::runtime_error(fmt::format("cannot connect to redis-server on port {}", port));
  return c;
}

void append_redis(redisContext* c, std::initializer_list<std::string_view> args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK)
    throw std::runtime_error("hiredis: cannot queue a command");
}

redis_reply get_redis_reply(redisContext* c) {
  void* r = nullptr;
  if (redisGetReply(c, &r) != REDIS_OK || !r) throw std::runtime_error(fmt::format("hiredis: {}", c->errstr));
  redis_reply reply(static_cast<redisReply*>(r));
  if (reply->type == REDIS_REPLY_ERROR) throw std::runtime_error(fmt::format("redis: {}", reply->str));
  return reply;
}

redis_reply redis_command(redisContext* c, std::initializer_list<std::string_view> args) {
  append_redis(c, args);
  return get_redis_reply(c);
}

std::string_view redis_text(const redisReply* r) { return {r->str, r->len}; }

/// The redis-server binary: $PATIO_REDIS_SERVER, or the usual places.
std::optional<std::string> find_redis_server() {
  if (const char* given = std::getenv("PATIO_REDIS_SERVER")) {
    if (::access(given, X_OK) == 0) return std::string(given);
    return std::nullopt;
  }
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/usr/sbin"}) {
    const auto path = std::filesystem::path(dir) / "redis-server";
    if (::access(path.c_str(), X_OK) == 0) return path.string();
  }
  return std::nullopt;
}

/// A redis-server of the bench's own, from construction to destruction.
class redis_server {
 public:
  explicit redis_server(const std::string& binary) {
    char dir[] = "/tmp/patio-bench-redis-XXXXXX";
    if (!::mkdtemp(dir)) throw std::runtime_error("cannot make a temporary directory for redis-server");
    dir_ = dir;
    try {
      start(binary);
    } catch (...) {
      stop();
      throw;
    }
  }
  ~redis_server() { stop(); }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  void start(const std::string& binary) {
    {
      asio::io_context io;
      tcp::acceptor free(io, {asio::ip::address_v4::loopback(), 0});
      port_ = free.local_endpoint().port();
    }
    std::vector<std::string> args{binary,
                                  "--port",
                                  std::to_string(port_),
                                  "--bind",
                                  "127.0.0.1",
                                  "--dir",
                                  dir_,
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--logfile",
                                  dir_ + "/redis.log",
                                  "--protected-mode",
                                  "no"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("cannot fork redis-server");
    if (pid_ == 0) {
      // Dies with the bench, however the bench ends (the main thread forks).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0) ::dup2(null, STDOUT_FILENO);  // stdout is the bench's JSON
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    // Up when it answers PING (bounded).
    const auto until = clock_type::now() + std::chrono::seconds(10);
    while (clock_type::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error(fmt::format("redis-server exited at start (status {}): {}", status, log_tail()));
      }
      redis_context c(redisConnect("127.0.0.1", port_));
      if (c && !c->err) {
        auto* r = static_cast<redisReply*>(redisCommand(c.get(), "PING"));
        const bool up = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        if (up) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("redis-server did not come up in 10 s");
  }

  /// The end of redis-server's log (the directory goes with the server).
  [[nodiscard]] std::string log_tail() const {
    std::string text;
    if (FILE* f = std::fopen((dir_ + "/redis.log").c_str(), "r")) {
      char chunk[512];
      while (const auto n = std::fread(chunk, 1, sizeof chunk, f)) text.append(chunk, n);
      std::fclose(f);
    }
    if (text.size() > 1000) text.erase(0, text.size() - 1000);
    return text.empty() ? "no log" : text;
  }

  void stop() noexcept {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  std::string dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

constexpr std::string_view raw_redis_group = "workers";

/// The REQUEST payload patio puts in an entry's "c" for mul(1, 2, 3) with a
/// timeout (docs/protocol.md): [name, args, kwargs, timeout].
std::string raw_redis_payload() {
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> p(out);
  p.pack_array(4);
  p.pack(std::string_view("mul"));
  p.pack_array(3);
  p.pack(1);
  p.pack(2);
  p.pack(3);
  p.pack_map(0);
  p.pack(60.0);
  return {out.data(), out.size()};
}

/// A raw worker: reads `calls` through the group until `stop`, answers each
/// entry into the reply stream it names, XADD and XACK pipelined per batch.
void raw_redis_worker(std::uint16_t port, std::string calls, std::string consumer, const std::atomic<bool>* stop) {
  auto c = redis_connect(port);
  msgpack::sbuffer result;
  while (!stop->load()) {
    const auto r = redis_command(c.get(), {"XREADGROUP", "GROUP", raw_redis_group, consumer, "COUNT", "128", "BLOCK",
                                           "100", "STREAMS", calls, ">"});
    if (r->type != REDIS_REPLY_ARRAY) continue;  // nil: nothing within 100 ms
    const auto* entries = r->element[0]->element[1];
    for (std::size_t i = 0; i < entries->elements; ++i) {
      const auto* e = entries->element[i];
      const auto* fields = e->element[1];
      std::string_view payload, reply_to, call_id;
      for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
        const auto name = redis_text(fields->element[f]);
        const auto value = redis_text(fields->element[f + 1]);
        if (name == "c") payload = value;
        if (name == "r") reply_to = value;
        if (name == "i") call_id = value;
      }
      const auto request = msgpack::unpack(payload.data(), payload.size());
      std::int64_t product = 1;
      for (const auto& a : request.get().via.array.ptr[1].via.array) product *= a.as<std::int64_t>();
      result.clear();
      msgpack::pack(result, product);
      append_redis(c.get(), {"XADD", reply_to, "*", "i", call_id, "k", "ok", "v",
                             std::string_view(result.data(), result.size())});
      append_redis(c.get(), {"XACK", calls, raw_redis_group, redis_text(e->element[0])});
    }
    for (std::size_t i = 0; i < 2 * entries->elements; ++i) get_redis_reply(c.get());
  }
}

/// The raw workers of one case, threads of their own from construction to
/// destruction.
class raw_redis_workers {
 public:
  raw_redis_workers(std::uint16_t port, const std::string& calls, std::size_t n) {
    auto c = redis_connect(port);
    redis_command(c.get(), {"XGROUP", "CREATE", calls, raw_redis_group, "$", "MKSTREAM"});
    for (std::size_t i = 0; i < n; ++i)
      threads_.emplace_back([this, port, calls, i] { run(port, calls, fmt::format("raw-{}", i)); });
  }
  ~raw_redis_workers() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }
  raw_redis_workers(const raw_redis_workers&) = delete;
  raw_redis_workers& operator=(const raw_redis_workers&) = delete;

 private:
  void run(std::uint16_t port, const std::string& calls, const std::string& consumer) noexcept {
    try {
      raw_redis_worker(port, calls, consumer, &stop_);
    } catch (const std::exception& e) {
      fmt::print(stderr, "raw redis worker: {}\n", e.what());
      std::abort();
    }
  }

  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

/// The raw caller: its own connection, and the reply stream it reads.
struct raw_redis_caller {
  raw_redis_caller(std::uint16_t port, std::string calls_key, std::string reply_key)
      : c(redis_connect(port)), calls(std::move(calls_key)), reply(std::move(reply_key)) {}

  /// Reads replies (blocking) until `n` more have come; records each one's
  /// time since `start` in `latencies_us` (if given).
  void read_replies(std::size_t n, clock_type::time_point start, std::vector<double>* latencies_us) {
    for (std::size_t got = 0; got < n;) {
      const auto r = redis_command(c.get(), {"XREAD", "COUNT", "100000", "BLOCK", "10000", "STREAMS", reply, last});
      got += take(r.get(), start, latencies_us);
    }
  }

  /// The replies in an XREAD reply: checks each. @returns how many.
  std::size_t take(const redisReply* r, clock_type::time_point start, std::vector<double>* latencies_us) {
    if (r->type != REDIS_REPLY_ARRAY) throw std::runtime_error("raw redis: no reply within 10 s");
    const auto* entries = r->element[0]->element[1];
    const auto now = clock_type::now();
    for (std::size_t i = 0; i < entries->elements; ++i) {
      const auto* e = entries->element[i];
      last = std::string(redis_text(e->element[0]));
      const auto* fields = e->element[1];
      const auto v = redis_text(fields->element[5]);
      check(msgpack::unpack(v.data(), v.size()).get().as<std::int64_t>());
      if (latencies_us) latencies_us->push_back(std::chrono::duration<double, std::micro>(now - start).count());
    }
    return entries->elements;
  }

  void add_call() {
    const fmt::format_int id(++serial);
    append_redis(c.get(), {"XADD", calls, "*", "c", payload, "r", reply, "i", std::string_view(id.data(), id.size())});
  }

  /// `n` calls at once: every XADD in one pipelined write, then the replies.
  sample burst(std::size_t n) {
    sample s;
    s.latencies_us.reserve(n);
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < n; ++i) add_call();
    for (std::size_t i = 0; i < n; ++i) get_redis_reply(c.get());
    read_replies(n, start, &s.latencies_us);
    s.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    trim();
    return s;
  }

  /// `n` calls one at a time: XADD and the blocking XREAD in one write.
  sample sequential(std::size_t n) {
    sample s;
    s.latencies_us.reserve(n);
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < n; ++i) {
      const auto t0 = clock_type::now();
      add_call();
      append_redis(c.get(), {"XREAD", "COUNT", "100000", "BLOCK", "10000", "STREAMS", reply, last});
      get_redis_reply(c.get());
      const auto r = get_redis_reply(c.get());
      if (take(r.get(), t0, &s.latencies_us) != 1) throw std::runtime_error("raw redis: one reply expected");
    }
    s.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    trim();
    return s;
  }

  /// Between rounds, untimed: the replies read go.
  void trim() { redis_command(c.get(), {"XTRIM", reply, "MAXLEN", "0"}); }

  redis_context c;
  std::string calls, reply;
  std::string payload = raw_redis_payload();
  std::string last = "0-0";
  std::uint64_t serial = 0;
};

/// A patio worker: a broker serving mul on an async_executor, on a thread
/// and io_context of its own.
struct patio_redis_worker {
  explicit patio_redis_worker(const patio::redis_options& options)
      : broker(side.io().get_executor(), executor, options) {
    side.start(-1);
    run_on(side, broker.setup());
  }
  ~patio_redis_worker() {
    try {
      run_on(side, broker.close());
    } catch (const std::exception& e) {
      fmt::print(stderr, "patio-bench: closing a redis worker: {}\n", e.what());
    }
  }
  patio_redis_worker(const patio_redis_worker&) = delete;
  patio_redis_worker& operator=(const patio_redis_worker&) = delete;

  /// A registry that offers mul.
  struct mul_registry : patio::registry {
    mul_registry() { add("mul", mul_async); }
  };

  io_thread side;  // first: destroyed last
  mul_registry rpc;
  patio::async_executor executor{rpc, {.max_workers = 256, .max_queue = 256}};
  patio::redis_broker broker;
};

/// The calling side: a broker that only calls (null executor), on a thread
/// and io_context of its own.
struct patio_redis_caller {
  explicit patio_redis_caller(const patio::redis_options& options)
      : broker(side.io().get_executor(), executor, options) {
    side.start(-1);
    run_on(side, broker.setup());
  }
  ~patio_redis_caller() {
    try {
      run_on(side, broker.close());
    } catch (const std::exception& e) {
      fmt::print(stderr, "patio-bench: closing the redis caller: {}\n", e.what());
    }
  }
  patio_redis_caller(const patio_redis_caller&) = delete;
  patio_redis_caller& operator=(const patio_redis_caller&) = delete;

  io_thread side;
  patio::registry rpc;
  patio::null_executor executor{rpc};
  patio::redis_broker broker;
};

const patio::call_options redis_call_options{.timeout = std::chrono::seconds(60)};

asio::awaitable<void> redis_mul(patio::redis_broker* broker) {
  check(co_await broker->call<std::int64_t>(redis_call_options, "mul", 1, 2, 3));
}

asio::awaitable<void> redis_mul_timed(patio::redis_broker* broker, clock_type::time_point start,
                                      std::vector<double>* latencies_us) {
  check(co_await broker->call<std::int64_t>(redis_call_options, "mul", 1, 2, 3));
  latencies_us->push_back(std::chrono::duration<double, std::micro>(clock_type::now() - start).count());
}

/// `n` calls at once, each timed from the start of the burst.
asio::awaitable<sample> redis_burst(patio::redis_broker* broker, std::size_t n) {
  sample s;
  s.latencies_us.reserve(n);
  const auto start = clock_type::now();
  std::vector<asio::awaitable<void>> tasks;
  tasks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) tasks.push_back(redis_mul_timed(broker, start, &s.latencies_us));
  co_await run_all(std::move(tasks));
  s.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  co_return s;
}

patio::redis_options redis_bench_options(std::uint16_t port, std::string project) {
  patio::redis_options o;
  o.port = port;
  o.project = std::move(project);
  return o;
}

/// Prints one Redis line. The burst's latencies run from the start of the
/// burst to each call's answer.
void print_redis_line(std::string_view name, std::size_t workers, std::size_t calls, std::size_t inflight,
                      const options& o, const rounds& patio_rounds, const rounds& raw_rounds) {
  const double rate = median(patio_rounds.rate), raw_rate = median(raw_rounds.rate);
  const double p50 = median(patio_rounds.p50), raw_p50 = median(raw_rounds.p50);
  fmt::print(R"({{"case":"{}","workers":{},"calls":{},"inflight":{},"repeat":{},"calls_per_s":{:.0f},)"
             R"("p50_us":{:.1f},"p99_us":{:.1f},"raw_calls_per_s":{:.0f},"raw_p50_us":{:.1f},"raw_p99_us":{:.1f},)"
             R"("ratio":{:.3f},"latency_ratio":{:.3f}}})"
             "\n",
             name, workers, calls, inflight, o.repeat, rate, p50, median(patio_rounds.p99), raw_rate, raw_p50,
             median(raw_rounds.p99), ratio(rate, raw_rate), raw_p50 > 0 ? p50 / raw_p50 : 0.0);
  std::fflush(stdout);
}

/// Bursts of `calls` calls (all at once) to `workers` workers.
void redis_burst_case(const options& o, const redis_server& server, std::size_t workers) {
  const std::size_t calls = o.calls_given ? o.calls : 2'000;
  const auto project = fmt::format("bench-burst-{}", workers);
  std::vector<std::unique_ptr<patio_redis_worker>> nodes;
  for (std::size_t i = 0; i < workers; ++i)
    nodes.push_back(std::make_unique<patio_redis_worker>(redis_bench_options(server.port(), project)));
  patio_redis_caller caller(redis_bench_options(server.port(), project));
  const auto raw_calls = fmt::format("raw:{{{}}}:calls", project);
  std::optional<raw_redis_workers> raw_workers;
  std::optional<raw_redis_caller> raw_caller;
  if (o.raw) {
    raw_workers.emplace(server.port(), raw_calls, workers);
    raw_caller.emplace(server.port(), raw_calls, fmt::format("raw:{{{}}}:reply", project));
  }
  rounds patio_rounds, raw_rounds;
  for (std::size_t round = 0; round <= o.repeat; ++round) {
    const auto n = round == 0 ? std::max<std::size_t>(1, calls / 10) : calls;
    const auto ps = run_on(caller.side, redis_burst(&caller.broker, n));
    const auto rs = o.raw ? raw_caller->burst(n) : sample{};
    if (round == 0) continue;
    patio_rounds.add(ps);
    if (o.raw) raw_rounds.add(rs);
  }
  print_redis_line("redis", workers, calls, calls, o, patio_rounds, raw_rounds);
}

/// One call at a time to one worker.
void redis_sequential_case(const options& o, const redis_server& server) {
  const std::size_t calls = o.calls_given ? o.calls : 2'000;
  const std::string project = "bench-sequential";
  patio_redis_worker node(redis_bench_options(server.port(), project));
  patio_redis_caller caller(redis_bench_options(server.port(), project));
  const auto raw_calls = fmt::format("raw:{{{}}}:calls", project);
  std::optional<raw_redis_workers> raw_workers;
  std::optional<raw_redis_caller> raw_caller;
  if (o.raw) {
    raw_workers.emplace(server.port(), raw_calls, 1);
    raw_caller.emplace(server.port(), raw_calls, fmt::format("raw:{{{}}}:reply", project));
  }
  rounds patio_rounds, raw_rounds;
  for (std::size_t round = 0; round <= o.repeat; ++round) {
    const auto n = round == 0 ? std::max<std::size_t>(1, calls / 10) : calls;
    const auto ps = run_on(caller.side, sequential(n, [b = &caller.broker] { return redis_mul(b); }));
    const auto rs = o.raw ? raw_caller->sequential(n) : sample{};
    if (round == 0) continue;
    patio_rounds.add(ps);
    if (o.raw) raw_rounds.add(rs);
  }
  print_redis_line("redis_sequential", 1, calls, 1, o, patio_rounds, raw_rounds);
}

void redis_cases(const options& o, bool burst, bool one_at_a_time) {
  const auto binary = find_redis_server();
  if (!binary) {
    fmt::print(stderr,
               "patio-bench: skipping the Redis cases: redis-server not found (apt-get install redis-server, or "
               "set PATIO_REDIS_SERVER)\n");
    return;
  }
  redis_server server(*binary);
  if (burst) {
    redis_burst_case(o, server, 4);
    redis_burst_case(o, server, 1);
  }
  if (one_at_a_time) redis_sequential_case(o, server);
}

#else

void redis_cases(const options&, bool, bool) {
  fmt::print(stderr, "patio-bench: skipping the Redis cases: patio was built with PATIO_WITH_REDIS=OFF\n");
}

#endif  // PATIO_BENCH_REDIS

}  // namespace

int main(int argc, char** argv) {
  if (const char* fd = std::getenv(raw_child_env)) return raw_child(std::atoi(fd));
  patio::registry rpc;
  rpc.add("mul", mul);
  if (patio::serve_as_worker(rpc)) return 0;

  // A peer that goes away (a redis-server killed, a raw client closed) must
  // not kill the bench with SIGPIPE: writes fail with EPIPE instead.
  std::signal(SIGPIPE, SIG_IGN);

  const std::vector<std::string_view> all_cases{"memory_async",    "memory_thread_pool", "process_pool", "tcp",
                                                "tcp_tls",         "tcp_conns",          "tcp_bytes",    "redis",
                                                "redis_sequential"};
  options o;
  const auto usage = [] {
    fmt::print(stderr,
               "usage: patio-bench [--calls N] [--inflight N] [--repeat N] [--certs DIR] [--pin split|same|none]\n"
               "                   [--mode sequential|pipelined|both] [--no-raw] [--case NAME]...\n"
               "cases: memory_async memory_thread_pool process_pool tcp tcp_tls tcp_conns tcp_bytes redis\n"
               "       redis_sequential\n"
               "       (all by default; see the top of bench/patio_bench.cpp and docs/performance.md)\n");
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto next = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        fmt::print(stderr, "{} needs a value\n", arg);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--calls") {
      o.calls = std::max<std::size_t>(1, std::stoull(std::string(next())));
      o.calls_given = true;
    } else if (arg == "--inflight") {
      o.inflight = std::max<std::size_t>(1, std::stoull(std::string(next())));
      o.inflight_given = true;
    } else if (arg == "--repeat") {
      o.repeat = std::max<std::size_t>(1, std::stoull(std::string(next())));
    } else if (arg == "--certs") {
      o.certs = next();
    } else if (arg == "--pin") {
      o.pin = next();
      if (o.pin != "split" && o.pin != "same" && o.pin != "none") return usage();
    } else if (arg == "--mode") {
      o.mode = next();
      if (o.mode != "sequential" && o.mode != "pipelined" && o.mode != "both") return usage();
    } else if (arg == "--no-raw") {
      o.raw = false;
    } else if (arg == "--case") {
      o.cases.emplace_back(next());
      if (std::find(all_cases.begin(), all_cases.end(), o.cases.back()) == all_cases.end()) return usage();
    } else {
      return usage();
    }
  }
  auto wanted = [&](std::string_view name) {
    return o.cases.empty() || std::find(o.cases.begin(), o.cases.end(), name) != o.cases.end();
  };
  try {
    if (wanted("memory_async")) memory_async(o);
    if (wanted("memory_thread_pool")) memory_thread_pool(o);
    if (wanted("process_pool")) process_pool(o);
    if (wanted("tcp")) tcp_case<tcp::socket>(o, {.name = "tcp", .inflights = {64, 1024}});
    if (wanted("tcp_tls")) tcp_case<tls_stream>(o, {.name = "tcp_tls"});
    if (wanted("tcp_conns")) tcp_case<tcp::socket>(o, {.name = "tcp_conns", .connections = 8, .sequential = false});
    if (wanted("tcp_bytes"))
      tcp_case<tcp::socket>(
          o, {.name = "tcp_bytes", .payload = 64 * 1024, .sequential_calls = 1'000, .pipelined_calls = 5'000});
    if (wanted("redis") || wanted("redis_sequential")) redis_cases(o, wanted("redis"), wanted("redis_sequential"));
  } catch (const std::exception& e) {
    fmt::print(stderr, "patio-bench: {}\n", e.what());
    return 1;
  }
}
