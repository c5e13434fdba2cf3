// SPDX-License-Identifier: MIT
// The worker side of the process pool: a plain blocking loop in a child
// process. It reads one request, runs it, writes one reply.
//
// The child is the program itself, started afresh by posix_spawn (never a
// bare fork of a threaded parent), so it logs through the sink like any
// process: the one its main set before serve_as_worker, else the default,
// stderr, which it shares with the pool's process.
#include <patio/detail/worker_protocol.hpp>
#include <patio/log.hpp>
#include <patio/process_pool_executor.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <fmt/format.h>

#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

namespace patio {

namespace {

/// Largest request a worker accepts: the pool never sends more than its
/// max_message, and a larger announcement is a broken pipe, not a request.
constexpr std::uint32_t max_request = 1u << 30;

bool read_fully(int fd, char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool write_fully(int fd, const std::string& data) {
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::send(fd, p, left, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return true;
}

void run(const registry& r, detail::encoded_invocation& inv) {
  if (inv.has_error()) return;  // the request was refused while decoding
  const function* fn = r.find(inv.name);
  if (!fn) {
    inv.set_error(std::make_exception_ptr(
        unknown_function_error(inv.name + ": no function by this name in the worker's registry")));
    return;
  }
  if (fn->is_coroutine()) {
    asio::io_context io;
    asio::co_spawn(io, fn->impl()->invoke_async(std::static_pointer_cast<detail::invocation>(inv.shared_from_this())),
                   asio::detached);
    io.run();
  } else {
    fn->impl()->invoke(inv);
  }
}

}  // namespace

bool serve_as_worker(registry& r) {
  const char* fd_text = std::getenv("PATIO_WORKER_FD");
  if (!fd_text) return false;
  const int fd = std::atoi(fd_text);
  const char* parent_text = std::getenv("PATIO_WORKER_PARENT");
  const pid_t parent = parent_text ? static_cast<pid_t>(std::atol(parent_text)) : 0;
  // Programs the tasks start are not workers.
  ::unsetenv("PATIO_WORKER_FD");
  ::unsetenv("PATIO_WORKER_PARENT");

  // Die with the parent, even when it dies by SIGKILL; and if it died before
  // this line, notice now.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent != 0 && ::getppid() != parent) return true;

  r.lock();
  if (!write_fully(fd, detail::worker_protocol::frame(detail::worker_protocol::encode_hello(::getpid())))) return true;

  std::vector<char> payload;
  for (;;) {
    unsigned char header[detail::worker_protocol::header_size];
    if (!read_fully(fd, reinterpret_cast<char*>(header), sizeof header)) return true;  // the pool went away
    const auto size = detail::worker_protocol::payload_size(header);
    if (size > max_request) {
      detail::log(log_level::warning, "process_pool", "worker {}: request of {} bytes refused; leaving", ::getpid(),
                  size);
      return true;
    }
    payload.resize(size);
    if (!read_fully(fd, payload.data(), size)) return true;

    detail::worker_protocol::request request;
    try {
      request = detail::worker_protocol::decode_request(payload.data(), payload.size());
    } catch (const std::exception& e) {
      detail::log(log_level::warning, "process_pool", "worker {}: {}; leaving", ::getpid(), e.what());
      return true;
    }
    auto& inv = *request.invocation;
    run(r, inv);
    const auto reply = inv.error() ? detail::worker_protocol::encode_error(request.id, detail::record_of(inv.error()))
                                   : detail::worker_protocol::encode_result(request.id, inv.result());
    if (!write_fully(fd, detail::worker_protocol::frame(reply))) return true;
  }
}

}  // namespace patio
