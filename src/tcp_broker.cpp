// SPDX-License-Identifier: MIT
// The TCP brokers. All state of one broker lives on one strand: its
// listeners, its connections, the calls it waits for.
#include "recycling_map.hpp"

#include <patio/detail/compat.hpp>
#include <patio/detail/event.hpp>
#include <patio/detail/frame.hpp>
#include <patio/detail/handshake.hpp>
#include <patio/detail/messages.hpp>
#include <patio/detail/post.hpp>
#include <patio/log.hpp>
#include <patio/tcp_broker.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/v6_only.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <variant>

namespace patio {

namespace detail {

namespace {
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::string_view component = "tcp";

/// A TLS context as `tls` asks, for a server or a client.
/// @throws std::system_error naming the file that failed to load.
asio::ssl::context make_ssl_context(const tls_options& tls, bool server) {
  asio::ssl::context ctx(server ? asio::ssl::context::tls_server : asio::ssl::context::tls_client);
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (!tls.certificate_chain_file.empty()) ctx.use_certificate_chain_file(tls.certificate_chain_file);
  if (!tls.private_key_file.empty()) ctx.use_private_key_file(tls.private_key_file, asio::ssl::context::pem);
  if (server) {
    if (tls.certificate_chain_file.empty() || tls.private_key_file.empty())
      throw std::invalid_argument("TLS server: certificate_chain_file and private_key_file are required");
    if (tls.require_client_certificate) {
      if (tls.ca_file.empty()) throw std::invalid_argument("TLS server: client certificates need a ca_file");
      ctx.load_verify_file(tls.ca_file);
      ctx.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
  } else {
    if (tls.ca_file.empty())
      ctx.set_default_verify_paths();
    else
      ctx.load_verify_file(tls.ca_file);
    ctx.set_verify_mode(asio::ssl::verify_peer);
  }
  return ctx;
}

/// The strand a broker's state lives on. Over an io_context's own executor
/// the strand fits any_io_executor's small-object buffer, so the copies and
/// prefer()s every async operation makes allocate nothing; a strand over an
/// any_io_executor does not fit, and each of them would.
asio::any_io_executor make_broker_strand(const asio::any_io_executor& io) {
  if (const auto* ctx = io.target<asio::io_context::executor_type>()) return asio::make_strand(*ctx);
  return asio::make_strand(io);
}

std::string describe(const tcp::socket& s) {
  std::error_code ec;
  const auto ep = s.remote_endpoint(ec);
  if (ec) return "a peer";
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}
}  // namespace

class tcp_connection;

class tcp_core : public std::enable_shared_from_this<tcp_core> {
 public:
  tcp_core(asio::any_io_executor io, patio::executor& executor, tcp_options options, bool server)
      : strand_(make_broker_strand(io)), executor_(executor), options_(std::move(options)), server_(server) {
    if (options_.max_in_flight == 0) throw std::invalid_argument("tcp_options: max_in_flight must be at least 1");
    if (options_.max_write_buffer < options_.max_payload + frame::header_size)
      throw std::invalid_argument("tcp_options: max_write_buffer must hold a frame of max_payload bytes");
    if (options_.tls) ssl_.emplace(make_ssl_context(*options_.tls, server));
    if (compat()) compat::check_key(options_.key);
  }

  /// Whether connections speak Python patio's protocol.
  [[nodiscard]] bool compat() const noexcept { return options_.protocol == tcp_protocol::patio_compat; }

  asio::any_io_executor strand_;  // a strand (see make_broker_strand)
  patio::executor& executor_;
  tcp_options options_;
  std::vector<std::shared_ptr<tcp_connection>> live_;                  // on the strand
  std::vector<std::shared_ptr<tcp_connection>> all_;                   // on the strand
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors_;              // on the strand
  std::vector<std::shared_ptr<asio::steady_timer>> reconnect_timers_;  // on the strand
  // Calls waiting for a connection that offers their function; on the strand.
  std::vector<std::pair<std::shared_ptr<invocation>, std::optional<double>>> unrouted_;
  std::size_t next_ = 0;                        // round-robin position
  std::atomic<std::uint32_t> first_serial_{0};  // see set_last_serial
  bool server_;
  std::optional<asio::ssl::context> ssl_;  // set for TLS
  std::atomic<bool> closed_{false};
  std::atomic<std::size_t> live_count_{0};
  event closed_event_;

  std::vector<std::string> offered() const {
    if (!executor_.runs_tasks()) return {};
    return executor_.registry().names();
  }

  void became_live(const std::shared_ptr<tcp_connection>& c);
  void ended(const std::shared_ptr<tcp_connection>& c);
  std::shared_ptr<tcp_connection> route(const std::string& name);
  /// Sends `inv` on a connection that offers its function, or keeps it
  /// until one comes up (its deadline, if any, then fails it with
  /// no_route_error). On the strand.
  void send_or_hold(std::shared_ptr<invocation> inv, std::optional<double> timeout_seconds);
  /// Sends `inv` on `c`; a call that cannot be encoded fails.
  static void send_on(tcp_connection& c, std::shared_ptr<invocation> inv, std::optional<double> timeout_seconds);
  void close_all();

  static asio::awaitable<void> accept_loop(std::shared_ptr<tcp_core> self, std::shared_ptr<tcp::acceptor> acceptor);
  static asio::awaitable<void> connect_loop(std::shared_ptr<tcp_core> self, std::string host, std::uint16_t port);
};

class tcp_connection final : public std::enable_shared_from_this<tcp_connection>, public abandon_listener {
 public:
  enum class role { server, client };

  /// `host`: for a client, the host it connected to, which a TLS server's
  /// certificate must name unless tls_options say otherwise.
  tcp_connection(std::shared_ptr<tcp_core> core, tcp::socket socket, role r, const std::string& host = {})
      : core_(std::move(core)),
        stream_(std::in_place_index<0>, std::move(socket)),
        role_(r),
        peer_(describe(lowest())),
        target_(host),
        read_gate_(core_->strand_),
        serial_(core_->first_serial_) {
    if (!core_->ssl_) return;
    auto plain = std::move(std::get<tcp::socket>(stream_));
    auto& tls = stream_.emplace<tls_stream>(std::move(plain), *core_->ssl_);
    // Asio asks OpenSSL to free its record buffers whenever they are empty,
    // which costs two allocations of ~17 KiB per record under load. A busy
    // connection keeps them (about 34 KiB per connection).
    SSL_clear_mode(tls.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    if (r != role::client) return;
    const auto& options = *core_->options_.tls;
    const std::string name = options.server_name.empty() ? host : options.server_name;
    if (options.verify_server_name) tls.set_verify_callback(asio::ssl::host_name_verification(name));
    // SNI (SSL_set_tlsext_host_name without its C cast); host names only,
    // never an IP address (RFC 6066).
    std::error_code not_ip;
    asio::ip::make_address(name, not_ip);
    if (not_ip && !name.empty())
      SSL_ctrl(tls.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(name.c_str()));
  }

  /// How a connection ended.
  struct outcome {
    bool authenticated = false;
    std::string problem;  ///< why this side dropped it, or the handshake failed; empty if it just closed
  };

  /// Runs the connection until it ends. A server's connection logs its
  /// events itself; a client's leaves the end to connect_loop, which
  /// throttles what repeats across reconnects.
  static asio::awaitable<outcome> run(std::shared_ptr<tcp_connection> self);

  /// For a client: the failed attempts before this one, for its "connected" line.
  std::size_t failed_attempts_ = 0;

  /// Queues a frame. Frames queued while the handlers of one turn run go
  /// out together in one write.
  void send(std::string_view frame) {
    send_with([frame](std::string& out) { out += frame; });
  }

  /// Queues the frame `append` appends to the unsent bytes: built in place,
  /// with no buffer of its own.
  template <class Append>
  void send_with(Append&& append) {
    if (closed_) return;
    const auto before = unsent_.size();
    append(unsent_);
    const auto queued = before + writing_buf_.size();
    if (unsent_.size() + writing_buf_.size() > core_->options_.max_write_buffer) {
      unsent_.resize(before);
      ending(fmt::format("{} stopped reading ({} bytes wait to be sent)", peer_, queued));
      close();
      return;
    }
    if (!writing_) {
      writing_ = true;
      // Posted, not written now: what else this turn sends joins the write.
      asio::post(core_->strand_, [self = shared_from_this()] { self->flush(); });
    }
  }

  void close() {
    closed_ = true;
    read_gate_.cancel();
    std::error_code ignored;
    lowest().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close(ignored);
  }

  /// Sends `inv` as a REQUEST and remembers it until its reply. When its
  /// caller gives up, a CANCEL follows; one that already gave up is not
  /// sent. @throws what encoding the arguments throws (nothing was sent).
  void call(std::shared_ptr<invocation> inv, std::optional<double> timeout_seconds) {
    do serial_ = frame::next_serial(serial_);
    while (pending_.contains(serial_));  // after a wrap, skip calls still in flight
    const auto serial = serial_;
    if (!inv->listen_for_abandon(weak_from_this(), serial)) return;
    inv->awaiting_route = false;
    send_with([&](std::string& out) {
      if (core_->compat())
        compat::append_request_frame(out, serial, *inv, timeout_seconds);
      else
        messages::append_request_frame(out, serial, *inv, timeout_seconds);
    });
    pending_.emplace(serial, std::move(inv));
  }

  /// The caller of `tag` (a serial) gave up: a CANCEL follows, on the strand.
  void abandoned(std::uint64_t tag) noexcept override {
    const auto serial = static_cast<std::uint32_t>(tag);
    detail::post_tracked(core_->strand_, [weak = weak_from_this(), serial] {
      // Python patio has no CANCEL: there, the late reply is just dropped.
      if (auto self = weak.lock(); self && self->pending_.erase(serial) && !self->core_->compat())
        self->send(messages::cancel_frame(serial));
    });
  }

  bool offers(const std::string& name) const { return names_.contains(name); }
  const std::string& peer() const { return peer_; }

  /// For log lines: the host a client connected to and its address, or the
  /// peer's address.
  std::string name() const {
    if (target_.empty() || peer_.starts_with(target_ + ":")) return peer_;
    return fmt::format("{} ({})", target_, peer_);
  }

 private:
  /// Records why this side ends the connection; the first reason wins (a
  /// close it causes must not log a second one). Logged once, when run() ends.
  void ending(std::string problem) {
    if (problem_.empty()) problem_ = std::move(problem);
  }

  /// Writes what is unsent, then again while more has been queued meanwhile.
  void flush() {
    if (closed_ || unsent_.empty()) {
      writing_ = false;
      return;
    }
    std::swap(unsent_, writing_buf_);
    auto written = [self = shared_from_this()](std::error_code ec, std::size_t) {
      self->writing_buf_.clear();
      if (self->writing_buf_.capacity() > keep_write_capacity) std::string().swap(self->writing_buf_);
      if (ec) {
        self->unsent_.clear();
        self->writing_ = false;
        self->close();
        return;
      }
      self->flush();
    };
    // The socket's handlers run on the strand.
    if (auto* plain = std::get_if<tcp::socket>(&stream_))
      asio::async_write(*plain, asio::buffer(writing_buf_), std::move(written));
    else
      asio::async_write(std::get<tls_stream>(stream_), asio::buffer(writing_buf_), std::move(written));
  }

  /// The largest payload a frame may carry now.
  [[nodiscard]] std::size_t max_payload() const {
    return authenticated_    ? core_->options_.max_payload
           : core_->compat() ? compat::max_handshake_payload
                             : handshake::max_payload;
  }

  /// The next frame if the buffer holds all of it and its header is good;
  /// else false, and read_frame() reads (or says what is wrong).
  bool next_buffered_frame(frame::header& h, std::string_view& payload) {
    if (rend_ - rpos_ < frame::header_size) return false;
    const auto* header = reinterpret_cast<const unsigned char*>(rbuf_.data() + rpos_);
    if (frame::decode(header, max_payload(), authenticated_, h) != frame::header_error::none) return false;
    if (rend_ - rpos_ < frame::header_size + h.payload_size) return false;
    payload = std::string_view(rbuf_.data() + rpos_ + frame::header_size, h.payload_size);
    rpos_ += frame::header_size + h.payload_size;
    return true;
  }

  /// Reads one frame; false ends the connection (logged). `payload` points
  /// into the read buffer and is valid until the next read.
  ///
  /// Reads as much as the socket holds into one buffer and takes frames from
  /// it, so a burst of frames costs one read, not two per frame.
  asio::awaitable<bool> read_frame(frame::header& h, std::string_view& payload) {
    if (!co_await fill(frame::header_size)) co_return false;
    const auto* header = reinterpret_cast<const unsigned char*>(rbuf_.data() + rpos_);
    switch (frame::decode(header, max_payload(), authenticated_, h)) {
      case frame::header_error::none: break;
      case frame::header_error::unknown_type:
        ending(fmt::format("{} sent an unknown packet type {}", peer_, header[0]));
        co_return false;
      case frame::header_error::too_large:
        ending(fmt::format("{} sent a {}-byte payload, over the limit", peer_, h.payload_size));
        co_return false;
      case frame::header_error::not_allowed:
        ending(fmt::format("{} sent a packet before authenticating", peer_));
        co_return false;
    }
    if (!co_await fill(frame::header_size + h.payload_size)) co_return false;
    co_return next_buffered_frame(h, payload);  // the whole frame is in the buffer now
  }

  /// Makes at least `n` bytes available at rpos_; false on EOF or error.
  asio::awaitable<bool> fill(std::size_t n) {
    if (rend_ - rpos_ >= n) co_return true;
    // What is left moves to the front; a buffer grown for one large frame
    // shrinks back once that frame has been consumed.
    std::memmove(rbuf_.data(), rbuf_.data() + rpos_, rend_ - rpos_);
    rend_ -= rpos_;
    rpos_ = 0;
    if (rbuf_.size() < n) {
      rbuf_.resize(n);
    } else if (rbuf_.size() > read_buffer_size && n <= read_buffer_size && rend_ <= read_buffer_size) {
      rbuf_.resize(read_buffer_size);
      rbuf_.shrink_to_fit();
    }
    while (rend_ < n) {
      const auto [ec, got] = co_await read_some(asio::buffer(rbuf_.data() + rend_, rbuf_.size() - rend_));
      if (ec) co_return false;
      rend_ += got;
    }
    co_return true;
  }

  asio::awaitable<bool> authenticate() {
    asio::steady_timer deadline(core_->strand_, core_->options_.handshake_timeout);
    deadline.async_wait([self = shared_from_this()](std::error_code ec) {
      if (!ec && !self->authenticated_) {
        self->ending(fmt::format("{} did not authenticate in time", self->peer_));
        self->close();
      }
    });
    if (auto* tls = std::get_if<tls_stream>(&stream_)) {
      std::error_code ec;
      co_await tls->async_handshake(
          role_ == role::server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
          asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        ending(fmt::format("TLS handshake with {} failed: {}", peer_, ec.message()));
        deadline.cancel();
        co_return false;
      }
    }
    std::variant<handshake::server, handshake::client, compat::server, compat::client> side =
        handshake::client(core_->options_.key);
    if (role_ == role::server) {
      if (core_->compat())
        send(side.emplace<compat::server>(core_->options_.key).start());
      else
        send(side.emplace<handshake::server>(core_->options_.key).start());
    } else if (core_->compat()) {
      side.emplace<compat::client>(core_->options_.key);
    }
    frame::header h;
    std::string_view payload;
    while (co_await read_frame(h, payload)) {
      const auto step = std::visit([&](auto& s) { return s.on_frame(h, payload); }, side);
      if (!step.send.empty()) send(step.send);
      if (step.failed) {
        ending(fmt::format("authentication with {} failed: {}", peer_, step.reason));
        deadline.cancel();
        co_return false;
      }
      if (step.done) {
        authenticated_ = true;
        deadline.cancel();
        co_return true;
      }
    }
    // The server checks the client's proof first and says nothing when it
    // is wrong: tell the client's user why the connection went away. (When
    // the broker itself closes, connect_loop logs nothing.)
    if (role_ == role::client)
      ending(fmt::format("{} closed the connection during authentication (a different key?)", peer_));
    deadline.cancel();
    co_return false;
  }

  /// The peer's request `serial` is over: its reply goes out unless the
  /// peer gave up on it.
  void finished(std::uint32_t serial, encoded_invocation& inv, std::exception_ptr error) {
    running_.erase(serial);
    if (running_.size() < core_->options_.max_in_flight) read_gate_.cancel();
    if (inv.peer_cancelled) return;
    if (core_->compat())
      send_with([&](std::string& out) { compat::append_reply_frame(out, serial, inv, std::move(error)); });
    else if (error)
      send_with([&](std::string& out) { messages::append_error_frame(out, serial, record_of(error)); });
    else
      send_with([&](std::string& out) { messages::append_response_frame(out, serial, inv.result()); });
  }
  /// The peer's DISCOVER_RESPONSE: what it executes. The first makes this
  /// connection a route.
  void discovered(std::vector<std::string> names) {
    names_ = {std::make_move_iterator(names.begin()), std::make_move_iterator(names.end())};
    if (!live_) {
      live_ = true;
      core_->became_live(shared_from_this());
    }
  }

  /// Starts running a REQUEST from the peer. Its reply is sent from the
  /// completion of its wait, on the strand: no coroutine of its own.
  void start(std::uint32_t serial, messages::request request) {
    auto inv = std::move(request.invocation);
    if (!running_.emplace(serial, inv))
      throw protocol_error(fmt::format("serial {} reused while its request still runs", serial));
    std::exception_ptr error = inv->error();
    if (!error) {
      try {
        if (core_->closed_) throw closed_error(inv->name + ": the broker is closed");
        const function* fn = core_->executor_.registry().find(inv->name);
        if (!fn || !core_->executor_.runs_tasks()) throw no_route_error(inv->name + ": not offered by this side");
        inv->target = fn->impl();
        if (request.timeout_seconds)
          inv->deadline = invocation::clock::now() + std::chrono::duration_cast<invocation::clock::duration>(
                                                         std::chrono::duration<double>(*request.timeout_seconds));
        inv->set_caller_executor(core_->strand_);
        start_invocation(core_->executor_, inv);
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (error) {
      finished(serial, *inv, std::move(error));
      return;
    }
    auto& target = *inv;
    target.async_wait([self = shared_from_this(), serial, inv = std::move(inv)](std::exception_ptr e) {
      // A wait that ended early (timeout, cancel_wait()) says why; a
      // finished task leaves its error, if any, in the invocation.
      self->finished(serial, *inv, e ? std::move(e) : inv->error());
    });
  }

  /// The peer gave up on `serial` (a CANCEL), or the connection ended (all).
  void cancel(std::uint32_t serial) {
    if (const auto it = running_.find(serial); it != running_.end()) cancel(*it->second);
  }
  void cancel_all() {
    for (const auto& [serial, inv] : std::unordered_map(running_.entries())) cancel(*inv);
  }
  static void cancel(encoded_invocation& inv) {
    if (inv.peer_cancelled) return;
    inv.peer_cancelled = true;
    inv.cancel_wait();
  }

  /// Waits while max_in_flight requests run.
  [[nodiscard]] bool at_capacity() const { return !closed_ && running_.size() >= core_->options_.max_in_flight; }

  asio::awaitable<void> wait_for_room() {
    while (at_capacity()) {
      read_gate_.expires_at(asio::steady_timer::time_point::max());
      std::error_code ignored;
      co_await read_gate_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
  }

  void on_reply(const frame::header& h, std::string_view payload) {
    const auto it = pending_.find(h.serial);
    if (it == pending_.end()) {  // the caller gave up (timeout): nothing waits for it
      detail::log(log_level::debug, component, "{}: reply to {} came after its caller gave up; dropped", peer_,
                  h.serial);
      return;
    }
    auto inv = pending_.take(it);
    messages::reply reply;
    std::exception_ptr malformed;
    try {
      reply = core_->compat() ? compat::decode_reply(h.kind, payload) : messages::decode_reply(h.kind, payload);
    } catch (...) {
      malformed = std::current_exception();
    }
    if (malformed) {
      invocation::fail(std::move(inv), malformed);
      // A native peer sent what it could not have: the connection closes. A
      // Python peer may answer with an exception class of its own, which
      // its own restricted reader would refuse too: only that call fails.
      if (core_->compat()) return;
      std::rethrow_exception(malformed);
    }
    set_reply(*inv, reply.ok, reply.result, reply.error);
    invocation::complete(std::move(inv));
  }

  std::shared_ptr<tcp_core> core_;
  using tls_stream = asio::ssl::stream<tcp::socket>;

  tcp::socket& lowest() {
    if (auto* plain = std::get_if<tcp::socket>(&stream_)) return *plain;
    return std::get<tls_stream>(stream_).next_layer();
  }

  asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(asio::mutable_buffer b) {
    std::error_code ec;
    std::size_t got = 0;
    if (auto* plain = std::get_if<tcp::socket>(&stream_)) {
      got = co_await plain->async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      auto& tls = std::get<tls_stream>(stream_);
      got = co_await tls.async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) got += decrypted_in_memory(tls, b + got);
    }
    co_return std::pair{ec, got};
  }

  /// The plaintext of the TLS records already received, up to b.size().
  ///
  /// Asio's TLS stream hands over one record per read, each read a turn of
  /// the event loop: a peer's burst of records would be taken one record,
  /// and so one or two frames, per turn, and the answers would go out one
  /// or two per write. Asio's engine feeds OpenSSL through a memory BIO,
  /// so SSL_read here does no I/O: it decrypts what arrived, or says it
  /// wants more (then asio's next read takes the socket). Anything it had
  /// to send (a TLS 1.3 key update) waits in the BIO for asio's next
  /// operation, behind whatever asio is writing.
  static std::size_t decrypted_in_memory(tls_stream& tls, asio::mutable_buffer b) {
    std::size_t got = 0;
    while (got < b.size()) {
      const int want = static_cast<int>(std::min<std::size_t>(b.size() - got, 1 << 30));
      const int n = ::SSL_read(tls.native_handle(), static_cast<char*>(b.data()) + got, want);
      if (n <= 0) {
        ::ERR_clear_error();  // wants more, or failed: asio's next read reports it
        break;
      }
      got += static_cast<std::size_t>(n);
    }
    return got;
  }

  std::variant<tcp::socket, tls_stream> stream_;
  role role_;
  std::string peer_;     // the remote address, "ip:port"
  std::string target_;   // for a client: the host it connected to
  std::string problem_;  // see ending()
  static constexpr std::size_t read_buffer_size = 64 * 1024;
  std::vector<char> rbuf_ = std::vector<char>(read_buffer_size);
  std::size_t rpos_ = 0;          // next unread byte in rbuf_
  std::size_t rend_ = 0;          // end of the bytes read into rbuf_
  asio::steady_timer read_gate_;  // wakes a reader paused at max_in_flight
  bool authenticated_ = false;
  bool closed_ = false;
  bool writing_ = false;     // a flush is posted or a write is under way
  std::string unsent_;       // frames queued for the next write
  std::string writing_buf_;  // the write under way
  static constexpr std::size_t keep_write_capacity = 1024 * 1024;
  std::uint32_t serial_ = 0;
  recycling_map<std::uint32_t, std::shared_ptr<invocation>> pending_;          // our calls, by serial
  recycling_map<std::uint32_t, std::shared_ptr<encoded_invocation>> running_;  // the peer's calls, by serial
  std::unordered_set<std::string> names_;                                      // what the peer executes
  bool live_ = false;

  friend class tcp_core;
};

asio::awaitable<tcp_connection::outcome> tcp_connection::run(std::shared_ptr<tcp_connection> self) {
  auto& core = *self->core_;
  core.all_.push_back(self);
  bool authenticated = false;
  if (co_await self->authenticate()) {
    authenticated = true;
    if (self->role_ == role::server)
      detail::log(log_level::info, component, "{} connected", self->peer_);
    else if (self->failed_attempts_ == 0)
      detail::log(log_level::info, component, "connected to {}", self->name());
    else
      detail::log(log_level::info, component, "connected to {} after {} failed attempts", self->name(),
                  self->failed_attempts_);
    const bool python = core.compat();
    self->send(python ? compat::discover_request_frame() : messages::discover_request_frame());
    frame::header h;
    std::string_view payload;
    try {
      for (;;) {
        // Both without a coroutine in the usual case (room, and frames
        // already read in a batch): a coroutine frame each costs more
        // than the frame's work.
        if (self->at_capacity()) co_await self->wait_for_room();
        if (!self->next_buffered_frame(h, payload) && !co_await self->read_frame(h, payload)) break;
        switch (h.kind) {
          case frame::type::discover_request:
            self->send(python ? compat::discover_response_frame(core.offered())
                              : messages::discover_response_frame(core.offered()));
            break;
          case frame::type::discover_response:
            self->discovered(python ? compat::decode_discover_response(payload)
                                    : messages::decode_discover_response(payload));
            break;
          case frame::type::request:
            self->start(h.serial, python ? compat::decode_request(payload) : messages::decode_request(payload));
            break;
          case frame::type::cancel: self->cancel(h.serial); break;
          case frame::type::response:
          case frame::type::error: self->on_reply(h, payload); break;
          default:
            throw protocol_error(
                fmt::format("unexpected packet type {} after authentication", static_cast<int>(h.kind)));
        }
      }
    } catch (const std::exception& e) {
      self->ending(fmt::format("{}: {}", self->peer_, e.what()));
    }
  }
  self->close();
  core.ended(self);
  if (self->role_ == role::server) {
    if (!self->problem_.empty())
      detail::log(log_level::warning, component, "{}; closing", self->problem_);
    else if (authenticated)
      detail::log(log_level::info, component, "{} disconnected", self->peer_);
    else
      detail::log(log_level::debug, component, "{} left before authenticating", self->peer_);
  }
  co_return outcome{authenticated, std::move(self->problem_)};
}

void tcp_core::became_live(const std::shared_ptr<tcp_connection>& c) {
  live_.push_back(c);
  live_count_ = live_.size();
  // Calls that waited for a route: those it offers go now.
  std::erase_if(unrouted_, [&](auto& held) {
    auto& [inv, timeout_seconds] = held;
    if (inv->abandoned()) return true;
    if (!c->offers(inv->name)) return false;
    send_on(*c, std::move(inv), timeout_seconds);
    return true;
  });
}

void tcp_core::send_on(tcp_connection& c, std::shared_ptr<invocation> inv, std::optional<double> timeout_seconds) {
  try {
    c.call(inv, timeout_seconds);
  } catch (...) {
    invocation::fail(std::move(inv), std::current_exception());
  }
}

void tcp_core::send_or_hold(std::shared_ptr<invocation> inv, std::optional<double> timeout_seconds) {
  if (closed_) {
    auto error = std::make_exception_ptr(closed_error(inv->name + ": the broker is closed"));
    invocation::fail(std::move(inv), std::move(error));
    return;
  }
  if (inv->abandoned()) return;  // its caller has its answer already
  if (auto c = route(inv->name)) {
    send_on(*c, std::move(inv), timeout_seconds);
    return;
  }
  // Wait for a connection to come up (patio's behaviour), until the deadline.
  inv->awaiting_route = true;
  std::erase_if(unrouted_, [](const auto& held) { return held.first->abandoned(); });
  unrouted_.emplace_back(std::move(inv), timeout_seconds);
}

void tcp_core::ended(const std::shared_ptr<tcp_connection>& c) {
  std::erase(live_, c);
  std::erase(all_, c);
  live_count_ = live_.size();
  // Its callers are gone: their tasks stop where the executor can stop them.
  c->cancel_all();
  // Calls in flight on it fail now, not at their timeout.
  auto pending = c->pending_.release();
  for (auto& [serial, inv] : pending) {
    auto error = std::make_exception_ptr(
        connection_error(fmt::format("{}: the connection to {} was lost", inv->name, c->peer_)));
    invocation::fail(std::move(inv), std::move(error));
  }
}

std::shared_ptr<tcp_connection> tcp_core::route(const std::string& name) {
  const auto n = live_.size();
  for (std::size_t i = 0; i < n; ++i) {
    auto& c = live_[(next_ + i) % n];
    if (!c->closed_ && c->offers(name)) {  // a closed one leaves live_ when its reader ends
      next_ = (next_ + i + 1) % n;
      return c;
    }
  }
  return nullptr;
}

void tcp_core::close_all() {
  for (auto& a : acceptors_) {
    std::error_code ignored;
    a->close(ignored);
  }
  for (auto& t : reconnect_timers_) t->cancel();
  for (auto& c : std::vector(all_)) c->close();
  for (auto& [inv, timeout_seconds] : std::exchange(unrouted_, {})) {
    auto error = std::make_exception_ptr(closed_error(inv->name + ": the broker is closed"));
    invocation::fail(std::move(inv), std::move(error));
  }
}

asio::awaitable<void> tcp_core::accept_loop(std::shared_ptr<tcp_core> self, std::shared_ptr<tcp::acceptor> acceptor) {
  std::size_t failures = 0;  // in a row
  while (!self->closed_) {
    std::error_code ec;
    tcp::socket socket(self->strand_);
    co_await acceptor->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (self->closed_) break;  // accepted just as the broker closed: the socket closes here
    if (ec) {
      if (ec == asio::error::operation_aborted) break;
      // A connection reset before accept, or out of descriptors (EMFILE):
      // logged (not every retry of a lasting failure), and a pause so that
      // the loop does not spin meanwhile.
      if (detail::worth_logging(++failures))
        detail::log(log_level::error, component, "accept failed: {}; retrying ({} failures in a row)", ec.message(),
                    failures);
      asio::steady_timer pause(self->strand_, 100ms);
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    failures = 0;
    socket.set_option(tcp::no_delay(true), ec);
    auto c = std::make_shared<tcp_connection>(self, std::move(socket), tcp_connection::role::server);
    asio::co_spawn(self->strand_, tcp_connection::run(std::move(c)), asio::detached);
  }
}

asio::awaitable<void> tcp_core::connect_loop(std::shared_ptr<tcp_core> self, std::string host, std::uint16_t port) {
  auto timer = std::make_shared<asio::steady_timer>(self->strand_);
  self->reconnect_timers_.push_back(timer);
  auto delay = self->options_.reconnect_delay;
  tcp::resolver resolver(self->strand_);
  // What repeats while a server stays unreachable (or keeps refusing the
  // key) is logged when it changes and every tenth time, not per attempt.
  std::size_t failures = 0;  // attempts in a row that did not authenticate
  std::string last_logged;   // the last failure logged
  while (!self->closed_) {
    std::error_code ec;
    auto endpoints =
        co_await resolver.async_resolve(host, std::to_string(port), asio::redirect_error(asio::use_awaitable, ec));
    tcp_connection::outcome o;
    bool connected = false;
    std::string where = fmt::format("{}:{}", host, port);
    if (!ec) {
      tcp::socket socket(self->strand_);
      co_await asio::async_connect(socket, endpoints, asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && !self->closed_) {
        connected = true;
        socket.set_option(tcp::no_delay(true), ec);
        auto c = std::make_shared<tcp_connection>(self, std::move(socket), tcp_connection::role::client, host);
        c->failed_attempts_ = failures;
        where = c->name();
        o = co_await tcp_connection::run(std::move(c));
      }
    }
    if (self->closed_) {
      if (o.authenticated) detail::log(log_level::info, component, "connection to {} closed", where);
      break;
    }
    const auto ms = delay.count();
    if (o.authenticated) {
      failures = 0;
      last_logged.clear();
      delay = self->options_.reconnect_delay;
      if (o.problem.empty())
        detail::log(log_level::info, component, "connection to {} closed; reconnecting in {} ms", where, delay.count());
      else
        detail::log(log_level::warning, component, "{}; closing, reconnecting in {} ms", o.problem, delay.count());
    } else {
      // A refused connection is routine while a server restarts (info); a
      // failed handshake or a broken peer is the peer's doing (warning).
      const auto level = connected ? log_level::warning : log_level::info;
      std::string problem =
          connected ? std::move(o.problem) : fmt::format("cannot connect to {}: {}", where, ec.message());
      if (problem.empty()) problem = fmt::format("the connection to {} ended during authentication", where);
      ++failures;
      if (problem != last_logged || detail::worth_logging(failures)) {
        const std::string_view then = connected ? "closing, reconnecting" : "reconnecting";
        if (failures == 1)
          detail::log(level, component, "{}; {} in {} ms", problem, then, ms);
        else
          detail::log(level, component, "{}; {} in {} ms ({} failed attempts in a row)", problem, then, ms, failures);
        last_logged = std::move(problem);
      }
    }
    timer->expires_after(delay);
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!o.authenticated) delay = std::min(delay * 2, self->options_.max_reconnect_delay);
  }
  std::erase(self->reconnect_timers_, timer);
}

void set_last_serial(tcp_broker_base& broker, std::uint32_t serial) { broker.core_->first_serial_ = serial; }

}  // namespace detail

// ---- tcp_broker_base --------------------------------------------------------

tcp_broker_base::tcp_broker_base(asio::any_io_executor io, patio::executor& executor, tcp_options options, bool server)
    : executor_(executor),
      core_(std::make_shared<detail::tcp_core>(std::move(io), executor, std::move(options), server)) {
  executor_.registry().lock();
  executor_.setup();
}

tcp_broker_base::~tcp_broker_base() {
  if (!core_->closed_.exchange(true)) {
    detail::post_tracked(core_->strand_, [core = core_] { core->close_all(); });
    executor_.shutdown();
    core_->closed_event_.set();
  }
}

asio::awaitable<void> tcp_broker_base::close() {
  if (core_->closed_.exchange(true)) co_return;
  co_await asio::dispatch(core_->strand_, asio::use_awaitable);
  core_->close_all();
  executor_.shutdown();
  core_->closed_event_.set();
}

asio::awaitable<void> tcp_broker_base::join() {
  auto ex = co_await asio::this_coro::executor;
  co_await core_->closed_event_.async_wait(ex, asio::use_awaitable);
}

std::size_t tcp_broker_base::connections() const { return core_->live_count_; }

// Not a coroutine of its own: the caller's coroutine awaits the
// invocation, whose start hands it to the strand (no hop of the caller's).
asio::awaitable<void> tcp_broker_base::dispatch(std::shared_ptr<detail::invocation> inv, call_options options) {
  using clock = detail::invocation::clock;
  std::optional<double> timeout_seconds;
  if (options.timeout) {
    inv->deadline = clock::now() + *options.timeout;
    timeout_seconds = std::chrono::duration<double>(*options.timeout).count();
  }
  return detail::invocation::async_run(
      std::move(inv),
      [core = core_, timeout_seconds](std::shared_ptr<detail::invocation> started) {
        // Broker state lives on the strand.
        asio::dispatch(core->strand_, [core, inv = std::move(started), timeout_seconds]() mutable {
          core->send_or_hold(std::move(inv), timeout_seconds);
        });
      },
      asio::use_awaitable);
}

// ---- server and client ------------------------------------------------------

tcp_server_broker::tcp_server_broker(asio::any_io_executor io, patio::executor& executor, tcp_options options)
    : tcp_broker_base(std::move(io), executor, std::move(options), true) {}

std::uint16_t tcp_server_broker::listen(std::string_view address, std::uint16_t port) {
  using asio::ip::tcp;
  std::error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  if (ec) throw std::system_error(ec, fmt::format("patio tcp: cannot listen on \"{}\": not an IP address", address));
  const tcp::endpoint endpoint(ip, port);
  auto acceptor = std::make_shared<tcp::acceptor>(core_->strand_);
  try {
    acceptor->open(endpoint.protocol());
    acceptor->set_option(tcp::acceptor::reuse_address(true));
    if (endpoint.address().is_v6()) acceptor->set_option(asio::ip::v6_only(true));
    acceptor->bind(endpoint);
    acceptor->listen();
  } catch (const std::system_error& e) {
    throw std::system_error(e.code(), fmt::format("patio tcp: cannot listen on {}:{}", address, port));
  }
  const auto bound = acceptor->local_endpoint().port();
  detail::log(log_level::info, detail::component, "listening on {}:{}", address, bound);
  detail::post_tracked(core_->strand_, [core = core_, acceptor] { core->acceptors_.push_back(acceptor); });
  asio::co_spawn(core_->strand_, detail::tcp_core::accept_loop(core_, acceptor), asio::detached);
  return bound;
}

tcp_client_broker::tcp_client_broker(asio::any_io_executor io, patio::executor& executor, tcp_options options)
    : tcp_broker_base(std::move(io), executor, std::move(options), false) {}

void tcp_client_broker::connect(std::string host, std::uint16_t port) {
  asio::co_spawn(core_->strand_, detail::tcp_core::connect_loop(core_, std::move(host), port), asio::detached);
}

}  // namespace patio
