// SPDX-License-Identifier: MIT
#include "redis_fixtures.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <poll.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace patio::test::redis {

namespace {
using namespace std::chrono_literals;

std::string find_redis_server() {
  if (const char* given = std::getenv("PATIO_REDIS_SERVER")) return given;
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/usr/sbin"}) {
    const auto path = std::filesystem::path(dir) / "redis-server";
    if (std::filesystem::exists(path)) return path.string();
  }
  throw std::runtime_error(
      "redis-server not found: the Redis broker tests need a real one (apt-get install redis-server, or set "
      "PATIO_REDIS_SERVER)");
}

std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env_extra, int out_fd) {
  std::vector<std::string> text(args);
  std::vector<char*> argv;
  for (auto& a : text) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_text(env_extra);
  for (char** e = environ; e && *e; ++e) env_text.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  if (out_fd >= 0) ::posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}
}  // namespace

server::server(std::vector<std::string> extra) : extra_(std::move(extra)) {
  char dir[] = "/tmp/patio-redis-XXXXXX";
  if (!::mkdtemp(dir)) throw std::runtime_error("cannot make a temporary directory for redis-server");
  dir_ = dir;
  port_ = free_port();
  start();
}

server::~server() {
  kill();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void server::start() {
  std::vector<std::string> args{find_redis_server(),
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
  args.insert(args.end(), extra_.begin(), extra_.end());
  pid_ = spawn(args, {}, -1);
  // Up when it accepts a connection (bounded).
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("redis-server exited at start; see " + dir_ + "/redis.log");
    }
    redisContext* c = redisConnect("127.0.0.1", port_);
    const bool up = c && !c->err;
    if (c) redisFree(c);
    if (up) return;
    std::this_thread::sleep_for(10ms);
  }
  throw std::runtime_error("redis-server did not come up in 10 s");
}

void server::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

patio::redis_options server::options(std::string project) const {
  patio::redis_options o;
  o.port = port_;
  o.project = std::move(project);
  o.heartbeat_interval = 100ms;
  o.worker_ttl = 500ms;
  o.reconnect_delay = 20ms;
  o.max_reconnect_delay = 200ms;
  return o;
}

client::client(std::uint16_t port, const std::string& password) : c_(redisConnect("127.0.0.1", port)) {
  if (!c_ || c_->err) throw std::runtime_error("test client: cannot connect to redis");
  if (!password.empty()) command({"AUTH", password});
}

reply client::command(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r =
      static_cast<redisReply*>(redisCommandArgv(c_.get(), static_cast<int>(args.size()), argv.data(), lens.data()));
  if (!r) throw std::runtime_error("test client: redis I/O error");
  return reply(r);
}

long long client::integer(const std::vector<std::string>& args) {
  auto r = command(args);
  if (r->type != REDIS_REPLY_INTEGER) throw std::runtime_error("test client: not an integer reply to " + args[0]);
  return r->integer;
}

worker_process::worker_process(std::uint16_t port) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe");
  try {
    pid_ = spawn({"/proc/self/exe"}, {"PATIO_TEST_REDIS_WORK=" + std::to_string(port)}, out[1]);
  } catch (...) {
    ::close(out[0]);
    ::close(out[1]);
    throw;
  }
  ::close(out[1]);
  out_ = out[0];
}

worker_process::~worker_process() {
  kill();
  if (out_ >= 0) ::close(out_);
}

void worker_process::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool worker_process::take(const std::string& line) {
  for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
    seen_.insert(buffer_.substr(0, nl));
    buffer_.erase(0, nl + 1);
  }
  return seen_.contains(line);
}

bool worker_process::read_some(int wait_ms) {
  pollfd p{out_, POLLIN, 0};
  if (::poll(&p, 1, wait_ms) <= 0) return true;
  char chunk[256];
  const auto n = ::read(out_, chunk, sizeof chunk);
  if (n <= 0) return false;
  buffer_.append(chunk, static_cast<std::size_t>(n));
  return true;
}

bool worker_process::saw(const std::string& line) {
  if (!read_some(0)) throw std::runtime_error("the worker process ended before printing \"" + line + "\"");
  return take(line);
}

void worker_process::wait_for(const std::string& line, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!take(line)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left <= 0ms) throw std::runtime_error("the worker process did not print \"" + line + "\" in time");
    if (!read_some(static_cast<int>(left.count())))
      throw std::runtime_error("the worker process ended before printing \"" + line + "\"");
  }
}

namespace {
asio::awaitable<std::string> stall() {
  std::printf("running\n");
  std::fflush(stdout);
  asio::steady_timer t(co_await asio::this_coro::executor, 60s);
  co_await t.async_wait(asio::use_awaitable);
  co_return "stalled";
}

std::int64_t mul(std::int64_t a, std::int64_t b) { return a * b; }

asio::awaitable<void> work(patio::redis_broker& broker) {
  co_await broker.setup();
  std::printf("ready\n");
  std::fflush(stdout);
  co_await broker.join();
}
}  // namespace

int work_mode() {
  const char* port = std::getenv("PATIO_TEST_REDIS_WORK");
  if (!port) return -1;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
  patio::registry rpc;
  rpc.add("stall", stall);
  rpc.add("mul", mul);
  patio::async_executor executor{rpc, 4};
  asio::io_context io;
  patio::redis_options o;
  o.port = static_cast<std::uint16_t>(std::atoi(port));
  o.project = "test";
  o.heartbeat_interval = 100ms;
  o.worker_ttl = 500ms;
  patio::redis_broker broker{io.get_executor(), executor, o};
  asio::co_spawn(io, work(broker), asio::detached);
  io.run_for(60s);
  return 0;
}

}  // namespace patio::test::redis
