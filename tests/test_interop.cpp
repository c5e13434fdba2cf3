// SPDX-License-Identifier: MIT
// tcp_protocol::patio_compat against a Python peer that speaks Python patio
// 0.1.4's protocol with the standard library only (tests/interop/
// patio_peer.py): C++ calls Python and Python calls C++, both as server and
// as client, with and without a key, over TLS and mutual TLS, with remote
// exceptions, a wrong key, and hostile pickles.
#include "support.hpp"

#include <patio/io_thread.hpp>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern "C" char** environ;

using namespace std::chrono_literals;

namespace {

const std::string certs = PATIO_TEST_CERTS;

// ---- the Python peer, in a child process --------------------------------------

/// `python3 patio_peer.py ARGS...`, its output in a file. Its stdin is a pipe
/// kept open: a server ends when it closes (the destructor does that, then
/// waits, then kills).
class python_peer {
 public:
  explicit python_peer(std::vector<std::string> args) {
    char dir[] = "/tmp/patio-interop-XXXXXX";
    if (!::mkdtemp(dir)) throw std::runtime_error("cannot make a temporary directory");
    dir_ = dir;
    if (!args.empty() && args[0] == "server") args.insert(args.end(), {"--port-file", port_file()});
    args.insert(args.begin(), {PATIO_TEST_PYTHON, PATIO_TEST_PATIO_PEER});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int in[2];
    if (::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    const int out = ::open((dir_ + "/output").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) throw std::runtime_error("cannot open the peer's output file");
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    ::posix_spawn_file_actions_adddup2(&actions, out, STDOUT_FILENO);
    ::posix_spawn_file_actions_adddup2(&actions, out, STDERR_FILENO);
    const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out);
    stdin_ = in[1];
    if (rc != 0) {
      ::close(stdin_);
      throw std::runtime_error(std::string("cannot start python3: ") + std::strerror(rc));
    }
  }

  python_peer(const python_peer&) = delete;
  python_peer& operator=(const python_peer&) = delete;

  ~python_peer() {
    if (stdin_ >= 0) ::close(stdin_);
    if (!exit_code_ && !wait(10s)) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  /// Where a server writes its port.
  [[nodiscard]] std::string port_file() const { return dir_ + "/port"; }

  /// The port a server listens on, once it wrote it (bounded wait).
  std::uint16_t port() {
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
      std::ifstream f(port_file());
      unsigned p = 0;
      if (f >> p && p > 0 && p < 65'536) return static_cast<std::uint16_t>(p);
      if (wait(0ms)) break;  // it ended without listening
      std::this_thread::sleep_for(20ms);
    }
    FAIL("the Python peer did not listen; its output:\n" << output());
    return 0;
  }

  /// Waits up to `limit` for the exit. @returns its exit code, if it ended.
  std::optional<int> wait(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!exit_code_) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(10ms);
    }
    return exit_code_;
  }

  /// What it printed so far (stdout and stderr).
  [[nodiscard]] std::string output() const {
    std::ifstream f(dir_ + "/output");
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int stdin_ = -1;
  std::optional<int> exit_code_;
};

// ---- the C++ side's tasks, as the Python peer's checks expect them ---------------------

std::int64_t mul(patio::varargs<std::int64_t> args) {
  std::int64_t p = 1;
  for (const auto a : args) p *= a;
  return p;
}

/// greet("py") or greet(name="py").
std::string greet(patio::varargs<std::string> args, patio::kwargs kw) {
  return "hello, " + (args.empty() ? kw.get<std::string>("name") : args[0]);
}

patio::value echo(patio::value v) { return v; }

std::string fail(std::string why) { throw std::invalid_argument(why); }

asio::awaitable<int> sleep_ms(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
  co_return ms;
}

struct cpp_side {
  patio::registry rpc;
  patio::async_executor executor{register_all(rpc), 8};

  static patio::registry& register_all(patio::registry& r) {
    r.add("mul", mul);
    r.add("greet", greet);
    r.add("echo", echo);
    r.add("fail", fail);
    r.add("sleep_ms", sleep_ms);
    return r;
  }
};

struct security {
  std::string name;
  std::string key;
  bool tls = false;
  bool mutual = false;
};

patio::tcp_options options(const security& s, bool server) {
  patio::tcp_options o{.key = s.key};
  o.protocol = patio::tcp_protocol::patio_compat;
  o.handshake_timeout = 10s;
  o.reconnect_delay = 100ms;
  if (s.tls) {
    patio::tls_options t;
    if (server) {
      t.certificate_chain_file = certs + "/server.pem";
      t.private_key_file = certs + "/server.key";
      if (s.mutual) {
        t.ca_file = certs + "/ca.pem";
        t.require_client_certificate = true;
      }
    } else {
      t.ca_file = certs + "/ca.pem";
      t.server_name = "localhost";
      if (s.mutual) {
        t.certificate_chain_file = certs + "/client.pem";
        t.private_key_file = certs + "/client.key";
      }
    }
    o.tls = t;
  }
  return o;
}

/// The Python peer's flags for `s`: its server's, or its client's.
std::vector<std::string> peer_flags(const security& s, bool server) {
  std::vector<std::string> flags;
  if (!s.key.empty()) flags.insert(flags.end(), {"--key", s.key});
  if (s.tls) {
    if (server) {
      flags.insert(flags.end(), {"--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key"});
      if (s.mutual) flags.insert(flags.end(), {"--tls-ca", certs + "/ca.pem"});
    } else {
      flags.insert(flags.end(), {"--tls-ca", certs + "/ca.pem"});
      if (s.mutual)
        flags.insert(flags.end(), {"--tls-cert", certs + "/client.pem", "--tls-key", certs + "/client.key"});
    }
  }
  return flags;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

template <class E, class F>
std::optional<E> thrown(F f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  return std::nullopt;
}

const security securities[] = {
    {"no key", "", false, false},
    {"a key", "interop-key", false, false},
    {"TLS", "interop-key", true, false},
    {"mutual TLS", "", true, true},
};

}  // namespace

TEST_CASE("a Python patio client calls C++ functions and is called by the C++ server", "[interop][tcp]") {
  for (const auto& s : securities) {
    DYNAMIC_SECTION(s.name) {
      patio::io_thread io;
      cpp_side side;
      patio::tcp_server_broker server{io.executor(), side.executor, options(s, true)};
      const auto port = server.listen("127.0.0.1", 0);
      python_peer peer(concat({"client", "--port", std::to_string(port), "--stay", "60"}, peer_flags(s, false)));

      // Python's functions, called from C++ over the same connection.
      CHECK(io.call<std::int64_t>(server, {.timeout = 20s}, "mul", 2, 3, 7) == 42);
      CHECK(io.call<double>(server, {.timeout = 10s}, "div", 7, 2) == 3.5);
      const auto zero = thrown<patio::remote_error>([&] { io.call(server, {.timeout = 10s}, "div", 1, 0); });
      REQUIRE(zero);
      CHECK(zero->type_name() == "ZeroDivisionError");
      CHECK_THAT(zero->what(), Catch::Contains("division by zero"));
      CHECK(io.call<std::vector<std::int64_t>>(server, {.timeout = 10s}, "kw", 1, patio::kwargs{{"c", 3}}) ==
            std::vector<std::int64_t>{1, 0, 3});
      const std::map<std::string, std::vector<std::string>> nested{{"k", {"a", "b"}}};
      CHECK(io.call<std::map<std::string, std::vector<std::string>>>(server, {.timeout = 10s}, "echo", nested) ==
            nested);
      CHECK_THROWS_AS(io.call(server, {.timeout = 200ms}, "sleep", 5), patio::timeout_error);
      // An exception class of the peer's own fails that call only.
      CHECK_THROWS_AS(io.call(server, {.timeout = 10s}, "raise_custom"), patio::protocol_error);
      CHECK(io.call<std::int64_t>(server, {.timeout = 10s}, "mul", 6, 7) == 42);

      // Its checks of our functions ran meanwhile; goodbye() ends it.
      CHECK(io.call<std::string>(server, {.timeout = 10s}, "goodbye") == "bye");
      const auto code = peer.wait(20s);
      INFO(peer.output());
      REQUIRE(code);
      CHECK(*code == 0);
      CHECK_THAT(peer.output(), !Catch::Contains("FAIL"));
      CHECK_THAT(peer.output(), Catch::Contains("ok mul_type_error") && Catch::Contains("ok greet_keyword"));
      io.run(server.close());
    }
  }
}

TEST_CASE("a C++ client calls a Python patio server and serves its calls back", "[interop][tcp]") {
  for (const auto& s : securities) {
    DYNAMIC_SECTION(s.name) {
      python_peer peer(concat({"server", "--call-back"}, peer_flags(s, true)));
      const auto port = peer.port();
      patio::io_thread io;
      cpp_side side;
      patio::tcp_client_broker client{io.executor(), side.executor, options(s, false)};
      client.connect("127.0.0.1", port);  // TLS checks the name "localhost" (options())

      CHECK(io.call<std::int64_t>(client, {.timeout = 20s}, "mul", 2, 3, 7) == 42);
      CHECK(io.call<double>(client, {.timeout = 10s}, "div", 1.0, 4.0) == 0.25);
      const auto zero = thrown<patio::remote_error>([&] { io.call(client, {.timeout = 10s}, "div", 1, 0); });
      REQUIRE(zero);
      CHECK(zero->type_name() == "ZeroDivisionError");
      CHECK(io.call<std::vector<std::int64_t>>(client, {.timeout = 10s}, "kw", 1, 2, patio::kwargs{{"c", 3}}) ==
            std::vector<std::int64_t>{1, 2, 3});
      CHECK(io.call<std::string>(client, {.timeout = 10s}, "echo", std::string("caf\xc3\xa9")) == "caf\xc3\xa9");
      CHECK_THROWS_AS(io.call(client, {.timeout = 200ms}, "sleep", 5), patio::timeout_error);
      CHECK_THROWS_AS(io.call(client, {.timeout = 10s}, "raise_custom"), patio::protocol_error);
      // A function it does not offer (its DISCOVER_RESPONSE says so) is not
      // sent: no route, at the call's timeout.
      CHECK_THROWS_AS(io.call(client, {.timeout = 300ms}, "nope"), patio::no_route_error);

      // The server called ours back on the same connection.
      auto report = io.call<std::vector<std::string>>(client, {.timeout = 10s}, "callback_report");
      INFO(peer.output());
      CHECK(report.empty());
      for (const auto& line : report) UNSCOPED_INFO(line);
      io.run(client.close());
    }
  }
}

TEST_CASE("patio compat refuses a wrong key both ways", "[interop][tcp]") {
  SECTION("a Python client with a wrong key is refused by the C++ server") {
    patio::io_thread io;
    cpp_side side;
    patio::tcp_server_broker server{io.executor(), side.executor, options({"", "right", false, false}, true)};
    const auto port = server.listen("127.0.0.1", 0);
    python_peer peer({"client", "--port", std::to_string(port), "--key", "wrong", "--expect-refused"});
    const auto code = peer.wait(30s);
    INFO(peer.output());
    REQUIRE(code);
    CHECK(*code == 0);
    io.run(server.close());
  }
  SECTION("a C++ client with a wrong key never gets to call the Python server") {
    python_peer peer({"server", "--key", "right"});
    const auto port = peer.port();
    patio::io_thread io;
    cpp_side side;
    patio::tcp_client_broker client{io.executor(), side.executor, options({"", "wrong", false, false}, false)};
    client.connect("127.0.0.1", port);
    // Its first attempt fails the handshake: the call finds no peer.
    CHECK_THROWS_AS(io.call(client, {.timeout = 1s}, "mul", 1, 2), patio::no_route_error);
    io.run(client.close());
  }
  SECTION("a key blake2s cannot take is refused at once") {
    asio::io_context io;
    cpp_side side;
    CHECK_THROWS_AS(patio::tcp_server_broker(io.get_executor(), side.executor,
                                             options({"", std::string(33, 'k'), false, false}, true)),
                    std::invalid_argument);
  }
}

TEST_CASE("hostile pickles from a Python client get ERROR replies and the connection lives on", "[interop][tcp]") {
  patio::io_thread io;
  cpp_side side;
  patio::tcp_server_broker server{io.executor(), side.executor, options({"", "k", false, false}, true)};
  const auto port = server.listen("127.0.0.1", 0);
  python_peer peer({"client", "--port", std::to_string(port), "--key", "k", "--hostile", "--stay", "0"});
  const auto code = peer.wait(60s);
  INFO(peer.output());
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK_THAT(peer.output(), Catch::Contains("ok mul_after_hostile"));
  io.run(server.close());
}

TEST_CASE("an argument Python cannot hold fails that call only, before it is sent", "[interop][tcp]") {
  patio::io_thread io;
  cpp_side server_side;
  cpp_side client_side;
  const security s{"a key", "k", false, false};
  patio::tcp_server_broker server{io.executor(), server_side.executor, options(s, true)};
  const auto port = server.listen("127.0.0.1", 0);
  patio::tcp_client_broker client{io.executor(), client_side.executor, options(s, false)};
  client.connect("127.0.0.1", port);

  // Both sides in this mode: C++ to C++ through pickle.
  CHECK(io.call<std::int64_t>(client, {.timeout = 10s}, "mul", 2, 3, 7) == 42);
  CHECK(io.call<std::string>(client, {.timeout = 10s}, "greet", patio::kwargs{{"name", "kw"}}) == "hello, kw");
  // A str must be UTF-8; an int must fit int64.
  CHECK_THROWS_AS(io.call(client, {.timeout = 10s}, "echo", std::string("\xff\xfe")), patio::type_mismatch_error);
  CHECK_THROWS_AS(io.call(client, {.timeout = 10s}, "echo", std::uint64_t{1} << 63), patio::type_mismatch_error);
  // The connection is unharmed.
  CHECK(io.call<std::int64_t>(client, {.timeout = 10s}, "mul", 6, 7) == 42);
  const auto e = thrown<patio::remote_error>([&] { io.call(client, {.timeout = 10s}, "fail", std::string("bad")); });
  REQUIRE(e);
  CHECK(e->type_name() == "RuntimeError");  // std::invalid_argument has no Python name
  CHECK_THAT(e->what(), Catch::Contains("bad"));
  io.run(client.close());
  io.run(server.close());
}
