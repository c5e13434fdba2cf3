// SPDX-License-Identifier: MIT
// The parent side of the process pool. One thread of the pool's own runs an
// io_context; on it, one coroutine per worker slot starts the worker, feeds
// it calls one at a time, and replaces it when it dies.
#include <patio/detail/worker_protocol.hpp>
#include <patio/log.hpp>
#include <patio/process_pool_executor.hpp>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): kill and sigaction are POSIX, not in <csignal>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

// NOLINTNEXTLINE(readability-redundant-declaration): POSIX requires it; glibc declares it only with _GNU_SOURCE.
extern "C" char** environ;

namespace patio {

namespace detail {

namespace {

using namespace std::chrono_literals;
using asio::local::stream_protocol;

constexpr std::string_view component = "process_pool";

std::string describe_status(int status) {
  if (WIFSIGNALED(status))
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  return "ended";
}

bool dead(const std::shared_ptr<invocation>& inv) { return inv->dead(); }

}  // namespace

class process_pool : public std::enable_shared_from_this<process_pool> {
 public:
  explicit process_pool(process_pool_options options) : options_(std::move(options)) {}

  void setup() {
    std::lock_guard lock(mutex_);
    if (started_ || stopping_) return;
    started_ = true;
    work_.emplace(io_.get_executor());
    const std::size_t n = std::max<std::size_t>(options_.max_workers, 1);
    for (std::size_t i = 0; i < n; ++i) slots_.push_back(std::make_unique<slot>(io_, i));
    alive_ = n;
    for (auto& s : slots_)
      asio::co_spawn(io_, run_slot(shared_from_this(), s.get()), [](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            detail::log(log_level::error, component, "worker slot failed: {}", ex.what());
          }
        }
      });
    thread_ = std::thread([this] { io_.run(); });
  }

  void start(std::shared_ptr<invocation> inv) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_ || !started_)
        throw executor_refused_error(inv->name + ": the executor is shut down", errc::shut_down);
      if (queue_.size() >= options_.max_queue) std::erase_if(queue_, dead);
      if (queue_.size() >= options_.max_queue)
        throw executor_refused_error(
            inv->name + ": the executor's queue is full (" + std::to_string(options_.max_queue) + " waiting)",
            errc::queue_full);
      // The caller gives up (timeout, cancellation): kill the worker that
      // runs this call, if one does.
      inv->on_abandon = [weak = weak_from_this(), raw = inv.get()] {
        if (auto self = weak.lock())
          asio::post(self->io_, [self, raw] {
            for (auto& s : self->slots_)
              if (s->current.get() == raw) self->kill(*s, stop_reason::abandoned);
          });
      };
      queue_.push_back(std::move(inv));
    }
    asio::post(io_, [self = shared_from_this()] { self->wake_one(); });
  }

  void shutdown() {
    std::deque<std::shared_ptr<invocation>> queued;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      stopping_ = true;
      if (!started_) return;
      queued.swap(queue_);
    }
    for (auto& inv : queued) {
      auto error = std::make_exception_ptr(
          executor_refused_error(inv->name + ": the executor was shut down before the task ran", errc::shut_down));
      invocation::fail(std::move(inv), std::move(error));
    }
    asio::post(io_, [self = shared_from_this()] {
      for (auto& s : self->slots_) {
        self->kill(*s, stop_reason::shutdown);
        s->wake.cancel();
      }
    });
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id())
        thread_.detach();
      else
        thread_.join();
    }
  }

  std::vector<int> pids() const {
    std::lock_guard lock(mutex_);
    return pids_;
  }

 private:
  enum class stop_reason { none, timeout, abandoned, shutdown, protocol };

  struct slot {
    slot(asio::io_context& io, std::size_t i) : index(i), wake(io), deadline(io) {}
    std::size_t index;
    pid_t pid = -1;
    std::optional<stream_protocol::socket> socket;
    std::shared_ptr<invocation> current;
    stop_reason killed_for = stop_reason::none;
    bool lost = false;            // the idle worker's socket became readable
    asio::steady_timer wake;      // idle wait and restart backoff; cancelled to wake
    asio::steady_timer deadline;  // the running call's deadline
  };

  bool stopping() const {
    std::lock_guard lock(mutex_);
    return stopping_;
  }

  void kill(slot& s, stop_reason why) {
    if (s.pid <= 0 || s.killed_for != stop_reason::none) return;
    s.killed_for = why;
    ::kill(s.pid, SIGKILL);
  }

  void wake_one() {
    if (idle_.empty()) return;
    slot* s = idle_.front();
    idle_.pop_front();
    s->wake.cancel();
  }

  static asio::awaitable<void> run_slot(std::shared_ptr<process_pool> self, slot* s) {
    auto backoff = 50ms;
    std::size_t failed_starts = 0;  // in a row
    while (!self->stopping()) {
      if (!s->socket) {
        if (!co_await self->spawn(*s, failed_starts++)) {
          s->wake.expires_after(backoff);
          std::error_code ignored;
          co_await s->wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
          backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
          continue;
        }
        backoff = 50ms;
        failed_starts = 0;
      }
      auto inv = co_await self->next(*s);
      const bool stop = !inv && !s->lost;
      if (inv && !s->lost) co_await self->run_one(*s, std::move(inv));
      if (s->lost) {
        // The worker died (or spoke out of turn) while idle: replace it now,
        // not when a call finds it dead.
        s->lost = false;
        self->kill(*s, stop_reason::protocol);
        const auto pid = s->pid;
        const auto how = co_await self->reap(*s);
        if (!self->stopping()) detail::log(log_level::warning, component, "idle worker {} {}; replacing it", pid, how);
        continue;
      }
      if (stop) break;
    }
    if (s->pid > 0) {
      self->kill(*s, stop_reason::shutdown);
      co_await self->reap(*s);
    }
    if (--self->alive_ == 0) self->work_.reset();
  }

  /// The next call to run, or null when stopping or when the idle worker
  /// was lost (then s.lost is set).
  asio::awaitable<std::shared_ptr<invocation>> next(slot& s) {
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) co_return nullptr;
        while (!queue_.empty()) {
          auto inv = std::move(queue_.front());
          queue_.pop_front();
          if (!dead(inv)) co_return inv;  // an abandoned or expired call never starts
        }
      }
      // Idle: wait to be woken, and watch the worker meanwhile. It says
      // nothing unless asked, so anything readable (EOF) means it is gone.
      idle_.push_back(&s);
      s.socket->async_wait(stream_protocol::socket::wait_read, [&s](std::error_code ec) {
        if (ec) return;  // cancelled: no longer idle
        s.lost = true;
        s.wake.cancel();
      });
      s.wake.expires_at(asio::steady_timer::time_point::max());
      std::error_code woken;  // operation_aborted: woken on purpose
      co_await s.wake.async_wait(asio::redirect_error(asio::use_awaitable, woken));
      std::erase(idle_, &s);
      if (s.lost) co_return nullptr;
      s.socket->cancel();  // stop watching; the watch completes with operation_aborted
    }
  }

  /// Puts a call taken from the queue back at its front.
  void requeue(std::shared_ptr<invocation> inv) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_front(std::move(inv));
    }
    wake_one();
  }

  /// Starts a worker process and waits for its greeting. `failed_before`:
  /// this slot's failed starts in a row, so that a worker that never starts
  /// is logged the first time and every tenth, not at every retry.
  asio::awaitable<bool> spawn(slot& s, std::size_t failed_before) {
    const bool log_failure = worth_logging(failed_before + 1);
    const auto again =
        failed_before == 0 ? std::string() : fmt::format(" ({} failed starts in a row)", failed_before + 1);
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      if (log_failure) detail::log(log_level::error, component, "socketpair: {}{}", std::strerror(errno), again);
      co_return false;
    }
    const int worker_fd = 3;
    int child_fd = fds[1];
    if (child_fd == worker_fd) {  // dup2 onto itself would keep FD_CLOEXEC
      child_fd = ::fcntl(fds[1], F_DUPFD_CLOEXEC, worker_fd + 1);
      ::close(fds[1]);
    }

    const std::string program = options_.program.empty() ? "/proc/self/exe" : options_.program;
    std::vector<std::string> arg_text{program};
    arg_text.insert(arg_text.end(), options_.args.begin(), options_.args.end());
    std::vector<char*> argv;
    argv.reserve(arg_text.size() + 1);
    for (auto& a : arg_text) argv.push_back(a.data());
    argv.push_back(nullptr);

    std::vector<std::string> env_text;
    for (char** e = environ; e && *e; ++e) {
      std::string_view entry(*e);
      if (entry.starts_with("PATIO_WORKER_FD=") || entry.starts_with("PATIO_WORKER_PARENT=")) continue;
      env_text.emplace_back(entry);
    }
    env_text.push_back(fmt::format("PATIO_WORKER_FD={}", worker_fd));
    env_text.push_back(fmt::format("PATIO_WORKER_PARENT={}", ::getpid()));
    std::vector<char*> envp;
    envp.reserve(env_text.size() + 1);
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, child_fd, worker_fd);
    ::posix_spawnattr_init(&attr);
    // The parent's threads may block signals (Asio does); a worker starts clean.
    sigset_t none, all;
    ::sigemptyset(&none);
    ::sigfillset(&all);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setsigdefault(&attr, &all);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), envp.data());
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attr);
    ::close(child_fd);
    if (rc != 0) {
      ::close(fds[0]);
      if (log_failure)
        detail::log(log_level::error, component, "cannot start worker '{}': {}{}", program, std::strerror(rc), again);
      co_return false;
    }

    s.pid = pid;
    s.killed_for = stop_reason::none;
    s.socket.emplace(io_, stream_protocol(), fds[0]);
    {
      std::lock_guard lock(mutex_);
      pids_.push_back(pid);
    }

    // The greeting, within start_timeout.
    s.deadline.expires_after(options_.start_timeout);
    s.deadline.async_wait([this, &s, pid](std::error_code ec) {
      if (!ec && s.pid == pid) kill(s, stop_reason::timeout);
    });
    std::string payload;
    const auto ec = co_await read_frame(s, payload);
    s.deadline.cancel();
    std::string problem;
    if (ec) {
      problem = ec == asio::error::eof ? "it ended before greeting the pool" : ec.message();
    } else {
      try {
        const auto h = worker_protocol::decode_hello(payload.data(), payload.size());
        if (h.version != worker_protocol::version)
          problem = fmt::format("it speaks worker protocol {}, not {}", h.version, worker_protocol::version);
        else if (h.pid != pid)
          problem = "it is not the process that was started";
      } catch (const std::exception& e) {
        problem = e.what();
      }
    }
    if (problem.empty()) co_return true;

    if (s.killed_for == stop_reason::shutdown) {
      co_await reap(s);
      co_return false;
    }
    kill(s, stop_reason::protocol);
    const auto how = co_await reap(s);
    if (log_failure)
      detail::log(log_level::error, component,
                  "worker '{}' failed to start: {} ({}){}. Does its main call patio::serve_as_worker(registry) first?",
                  program, problem, how, again);
    co_return false;
  }

  /// Reads one frame into `payload`; a frame larger than max_message is an
  /// error.
  asio::awaitable<std::error_code> read_frame(slot& s, std::string& payload) const {
    unsigned char header[worker_protocol::header_size];
    std::error_code ec;
    co_await asio::async_read(*s.socket, asio::buffer(header), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return ec;
    const auto size = worker_protocol::payload_size(header);
    if (size > options_.max_message) co_return std::make_error_code(std::errc::message_size);
    payload.resize(size);
    co_await asio::async_read(*s.socket, asio::buffer(payload), asio::redirect_error(asio::use_awaitable, ec));
    co_return ec;
  }

  /// Waits for the slot's worker to end and says how it ended.
  asio::awaitable<std::string> reap(slot& s) {
    std::string how = "ended";
    if (s.pid > 0) {
      int status = 0;
      pid_t r = 0;
      // It is dying (its socket closed) or was killed: poll briefly, then
      // make sure.
      asio::steady_timer pause(io_);
      for (int i = 0; i < 500 && (r = ::waitpid(s.pid, &status, WNOHANG)) == 0; ++i) {
        pause.expires_after(2ms);
        std::error_code ignored;
        co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      }
      if (r == 0) {
        ::kill(s.pid, SIGKILL);
        while ((r = ::waitpid(s.pid, &status, 0)) < 0 && errno == EINTR) {
        }
      }
      how = r == s.pid ? describe_status(status) : "ended (its status was lost: is SIGCHLD ignored?)";
      std::lock_guard lock(mutex_);
      std::erase(pids_, s.pid);
    }
    s.pid = -1;
    s.socket.reset();
    co_return how;
  }

  /// Whether the worker has died since it was last asked something: a
  /// silent worker's socket is readable only at EOF.
  static bool already_gone(slot& s) {
    pollfd p{s.socket->native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  asio::awaitable<void> run_one(slot& s, std::shared_ptr<invocation> inv) {
    if (already_gone(s)) {
      // It died before it could have seen this call: run the call elsewhere.
      s.lost = true;
      requeue(std::move(inv));
      co_return;
    }
    s.current = inv;
    if (inv->deadline != invocation::clock::time_point::max()) {
      s.deadline.expires_at(inv->deadline);
      s.deadline.async_wait([this, &s, raw = inv.get()](std::error_code ec) {
        if (!ec && s.current.get() == raw) kill(s, stop_reason::timeout);
      });
    }

    std::string request;
    std::exception_ptr unencodable;
    try {
      request = worker_protocol::frame(worker_protocol::encode_request(next_id_, *inv));
    } catch (...) {
      unencodable = std::current_exception();
    }
    if (unencodable) {
      // Failed outside the catch block: this thread must hold no reference
      // to the exception once the caller may read it.
      s.deadline.cancel();
      s.current.reset();
      invocation::fail(std::move(inv), std::move(unencodable));
      co_return;
    }
    const std::uint64_t id = next_id_++;

    std::error_code ec;
    co_await asio::async_write(*s.socket, asio::buffer(request), asio::redirect_error(asio::use_awaitable, ec));
    std::string payload;
    if (!ec) ec = co_await read_frame(s, payload);
    s.deadline.cancel();

    if (!ec) {
      try {
        auto reply = worker_protocol::decode_reply(payload.data(), payload.size());
        if (reply.id != id) throw protocol_error("worker protocol: reply to another request");
        set_reply(*inv, reply.ok, reply.result, reply.error);
        s.current.reset();
        invocation::complete(std::move(inv));
        co_return;
      } catch (const std::exception& e) {
        detail::log(log_level::warning, component, "worker {}: {}; replacing it", s.pid, e.what());
        kill(s, stop_reason::protocol);
      }
    } else if (ec == std::errc::message_size) {
      detail::log(log_level::warning, component, "worker {} sent more than {} bytes; replacing it", s.pid,
                  options_.max_message);
      kill(s, stop_reason::protocol);
    }

    // The worker is gone or going: say why to the caller, then replace it.
    const auto why = s.killed_for;
    const auto pid = s.pid;
    const auto how = co_await reap(s);
    s.current.reset();
    std::exception_ptr error;
    switch (why) {
      case stop_reason::timeout:
      case stop_reason::abandoned:
        error = std::make_exception_ptr(timeout_error(inv->name + ": call timed out; its worker was killed"));
        break;
      case stop_reason::shutdown:
        error = std::make_exception_ptr(
            executor_refused_error(inv->name + ": the executor was shut down while the task ran", errc::shut_down));
        break;
      case stop_reason::protocol:
        error = std::make_exception_ptr(protocol_error(inv->name + ": the worker broke the pipe protocol"));
        break;
      case stop_reason::none:
        error = std::make_exception_ptr(
            worker_crashed_error(fmt::format("{}: the worker process {} running it {}", inv->name, pid, how)));
        break;
    }
    invocation::fail(std::move(inv), std::move(error));
  }

  process_pool_options options_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::deque<slot*> idle_;  // on the pool's thread only
  std::size_t alive_ = 0;   // slot coroutines still running; pool's thread only
  std::uint64_t next_id_ = 1;

  mutable std::mutex mutex_;  // guards what follows
  std::deque<std::shared_ptr<invocation>> queue_;
  std::vector<int> pids_;
  bool started_ = false;
  bool stopping_ = false;
};

}  // namespace detail

process_pool_executor::process_pool_executor(patio::registry& r, process_pool_options options)
    : executor(r, executor_options{.max_workers = options.max_workers, .max_queue = options.max_queue}) {
  if (options.program.empty() && std::getenv("PATIO_WORKER_FD"))
    throw executor_refused_error(
        "this process was started as a patio worker but creates a process pool: main must call "
        "patio::serve_as_worker(registry) before anything else");
  pool_ = std::make_shared<detail::process_pool>(std::move(options));
  setup();
}

process_pool_executor::~process_pool_executor() { shutdown(); }

void process_pool_executor::setup() { pool_->setup(); }

void process_pool_executor::shutdown() { pool_->shutdown(); }

std::vector<int> process_pool_executor::worker_pids() const { return pool_->pids(); }

void process_pool_executor::start(std::shared_ptr<detail::invocation> inv) { pool_->start(std::move(inv)); }

}  // namespace patio
