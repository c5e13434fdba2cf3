// SPDX-License-Identifier: MIT
#include "redis_connection.hpp"

#include <patio/detail/encoded_invocation.hpp>
#include <patio/detail/event.hpp>
#include <patio/detail/messages.hpp>
#include <patio/detail/post.hpp>
#include <patio/detail/redis_protocol.hpp>
#include <patio/error.hpp>
#include <patio/function.hpp>
#include <patio/log.hpp>
#include <patio/redis_broker.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <unordered_map>
#include <vector>

namespace patio {

namespace detail {

namespace {
using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
using redis::reply_ptr;

/// How long acknowledgements and trimming wait for a call or an answer to
/// carry them (no write of their own under load); they go then anyway.
constexpr auto housekeeping_delay = 2ms;

asio::any_io_executor make_strand_for(const asio::any_io_executor& io) {
  if (const auto* ctx = io.target<asio::io_context::executor_type>()) return asio::make_strand(*ctx);
  return asio::make_strand(io);
}

/// 16 random bytes as hex: a broker's identity.
std::string random_id() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("redis: no random bytes for the broker's id");
  std::string out;
  for (const auto b : bytes) fmt::format_to(std::back_inserter(out), "{:02x}", b);
  return out;
}

std::int64_t ms_count(std::chrono::milliseconds d) { return static_cast<std::int64_t>(d.count()); }

/// An entry that names its caller: where the answer goes.
struct reply_address {
  std::string stream;
  std::uint64_t call_id = 0;
};

void validate(const redis_options& o) {
  if (o.max_in_flight == 0) throw std::invalid_argument("redis_options: max_in_flight must be at least 1");
  if (o.read_batch == 0) throw std::invalid_argument("redis_options: read_batch must be at least 1");
  if (o.max_deliveries == 0) throw std::invalid_argument("redis_options: max_deliveries must be at least 1");
  if (o.visibility_timeout < 30ms)
    throw std::invalid_argument("redis_options: visibility_timeout must be at least 30 ms");
  if (o.heartbeat_interval <= 0ms || o.worker_ttl <= o.heartbeat_interval)
    throw std::invalid_argument("redis_options: worker_ttl must be longer than a positive heartbeat_interval");
  if (o.reply_ttl <= o.heartbeat_interval)
    throw std::invalid_argument("redis_options: reply_ttl must be longer than heartbeat_interval");
  if (o.reconnect_delay <= 0ms || o.max_reconnect_delay < o.reconnect_delay)
    throw std::invalid_argument("redis_options: reconnect delays must be positive and max >= first");
}
}  // namespace

class redis_core : public std::enable_shared_from_this<redis_core> {
 public:
  redis_core(asio::any_io_executor io, patio::executor& executor, redis_options options)
      : strand_(make_strand_for(io)),
        executor_(executor),
        options_((validate(options), std::move(options))),
        keys_(options_.project),
        id_(random_id()),
        reply_key_(keys_.reply(id_)),
        dead_key_(keys_.dead_letter()) {}

  // ---- connection lifecycle -------------------------------------------------

  /// The connections of one stretch of being connected. When one fails, all
  /// are closed and the supervisor starts a new session.
  struct session {
    explicit session(const asio::any_io_executor& ex) : ended(ex, clock::time_point::max()) {}
    std::shared_ptr<redis::connection> commands;  // pipelined, never blocks
    std::shared_ptr<redis::connection> work;      // the worker's blocking reads
    std::shared_ptr<redis::connection> replies;   // the caller's blocking reads
    asio::steady_timer ended;                     // cancelled when the session ends
    std::vector<asio::steady_timer*> pacing;      // the loops' interval timers: end() cancels them too
    bool over = false;
  };

  /// Lists a loop's interval timer in its session while the loop runs, so
  /// that end() (and so close()) wakes the loop at once: otherwise io.run()
  /// would go on for up to a whole interval (visibility_timeout / 3) after
  /// close().
  class paced {
   public:
    paced(session& s, asio::steady_timer& t) : s_(s), t_(t) { s_.pacing.push_back(&t_); }
    ~paced() { std::erase(s_.pacing, &t_); }
    paced(const paced&) = delete;
    paced& operator=(const paced&) = delete;

   private:
    session& s_;
    asio::steady_timer& t_;
  };

  asio::awaitable<void> setup() {
    co_await asio::dispatch(strand_, asio::use_awaitable);
    if (closed_) throw closed_error("redis: the broker is closed");
    if (started_) {
      if (!session_) throw connection_error("redis: not connected (reconnecting)");
      co_return;
    }
    serving_ = executor_.runs_tasks() && !executor_.registry().names().empty();
    if (serving_) {
      functions_ = executor_.registry().names();
      for (const auto& f : functions_) streams_.push_back(keys_.calls(f));
    }
    started_ = true;
    try {
      co_await start_session();
    } catch (...) {
      started_ = false;
      throw;
    }
    asio::co_spawn(strand_, supervise(shared_from_this()), asio::detached);
  }

  void end(const std::shared_ptr<session>& s) {
    if (s->over) return;
    s->over = true;
    for (auto* c : {&s->commands, &s->work, &s->replies})
      if (*c) (*c)->close();
    s->ended.cancel();
    for (auto* t : s->pacing) t->cancel();
    if (gate_) gate_->cancel();  // a worker loop waiting for room sees its session is over
    if (session_ == s) {
      session_.reset();
      connected_ = false;
    }
  }

  /// Opens the connections and brings Redis up to date: clock, groups,
  /// advertisement, calls that may have been lost, replies held back.
  asio::awaitable<void> start_session() {
    auto s = std::make_shared<session>(strand_);
    const auto name = fmt::format("patio:{}:{}", options_.project, id_);
    try {
      s->commands = std::make_shared<redis::connection>(strand_, "commands");
      co_await s->commands->open(options_, name);
      s->replies = std::make_shared<redis::connection>(strand_, "replies");
      co_await s->replies->open(options_, name);
      if (serving_) {
        s->work = std::make_shared<redis::connection>(strand_, "worker");
        co_await s->work->open(options_, name);
        co_await create_groups(s);
      }
      co_await create_reply_stream(s);
      co_await heartbeat(s);
    } catch (...) {
      end(s);
      throw;
    }
    if (closed_) {
      end(s);
      throw closed_error("redis: the broker is closed");
    }
    session_ = s;
    connected_ = true;
    if (!outbox_.empty()) {
      s->commands->send(outbox_, outbox_count_);
      outbox_.clear();
      outbox_count_ = 0;
    }
    co_await resend_calls(s);
    auto self = shared_from_this();
    asio::co_spawn(strand_, guard(self, s, reply_loop(self, s)), asio::detached);
    asio::co_spawn(strand_, guard(self, s, heartbeat_loop(self, s)), asio::detached);
    if (serving_) {
      asio::co_spawn(strand_, guard(self, s, work_loop(self, s)), asio::detached);
      asio::co_spawn(strand_, guard(self, s, claim_loop(self, s)), asio::detached);
    }
  }

  /// Runs a session's loop; whatever ends it ends the session.
  static asio::awaitable<void> guard(std::shared_ptr<redis_core> self, std::shared_ptr<session> s,
                                     asio::awaitable<void> loop) {
    try {
      co_await std::move(loop);
    } catch (const connection_error&) {
      // the connection logged why it ended; the supervisor logs reconnecting
    } catch (const std::exception& e) {
      if (!s->over && !self->closed_) log(log_level::warning, "redis", "{}; reconnecting", e.what());
    }
    self->end(s);
  }

  static asio::awaitable<void> supervise(std::shared_ptr<redis_core> self) {
    auto delay = self->options_.reconnect_delay;
    while (!self->closed_) {
      if (auto s = self->session_) {
        std::error_code ec;
        co_await s->ended.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (self->closed_) break;
        log(log_level::info, "redis", "disconnected from {}:{}; reconnecting", self->options_.host,
            self->options_.port);
        delay = self->options_.reconnect_delay;
      }
      asio::steady_timer wait(self->strand_, delay);
      self->reconnect_timer_ = &wait;
      std::error_code ec;
      co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      self->reconnect_timer_ = nullptr;
      if (self->closed_) break;
      try {
        co_await self->start_session();
        log(log_level::info, "redis", "reconnected to {}:{}", self->options_.host, self->options_.port);
      } catch (const std::exception& e) {
        if (self->closed_) break;
        if (delay == self->options_.reconnect_delay || delay == self->options_.max_reconnect_delay)
          log(log_level::warning, "redis", "{}; retrying in {} ms", e.what(), delay.count());
        delay = std::min(delay * 2, self->options_.max_reconnect_delay);
      }
    }
  }

  // ---- housekeeping -----------------------------------------------------------

  asio::awaitable<void> create_groups(std::shared_ptr<session> s) {
    std::string cmds;
    for (const auto& stream : streams_)
      redis::append_command(cmds, {"XGROUP", "CREATE", stream, redis::group, "0", "MKSTREAM"});
    const auto replies = co_await s->work->exec(std::move(cmds), streams_.size());
    for (const auto& r : replies)
      if (redis::is_error(r.get()) && !redis::text(r.get()).starts_with("BUSYGROUP"))
        throw connection_error(fmt::format("redis: cannot create the consumer group: {}", redis::text(r.get())));
  }

  /// Makes this caller's reply stream, empty, unless it is there: workers
  /// answer with XADD NOMKSTREAM, which adds nothing to a stream that is not
  /// (and so leaves no stream without an expiry behind a caller that went
  /// away). An entry 0-1 is added and deleted at once: the stream stays. The
  /// reply loop does not run yet, so nobody reads it; where the stream is
  /// there, the XADD is refused (IDs only grow) and nothing changes.
  asio::awaitable<void> create_reply_stream(std::shared_ptr<session> s) {
    std::string cmds;
    redis::append_command(cmds, {"XADD", reply_key_, "0-1", redis::field::kind, "none"});
    redis::append_command(cmds, {"XDEL", reply_key_, "0-1"});
    co_await s->commands->exec(std::move(cmds), 2);  // errors expected, and not logged
  }

  /// Reads the server's clock, renews this worker's advertisement and the
  /// caller's reply stream.
  asio::awaitable<void> heartbeat(std::shared_ptr<session> s) {
    std::string cmds;
    std::size_t count = 1;
    redis::append_command(cmds, {"TIME"});
    char expires[24], now[24], ttl[24];
    const auto now_ms = server_now_ms();
    const auto expires_text =
        redis::decimal(static_cast<std::uint64_t>(now_ms + ms_count(options_.worker_ttl)), expires);
    const auto now_text = redis::decimal(static_cast<std::uint64_t>(now_ms), now);
    if (serving_ && clock_known_) {
      for (const auto& f : functions_) {
        const auto key = keys_.route(f);
        redis::append_command(cmds, {"ZADD", key, expires_text, id_});
        redis::append_command(cmds, {"ZREMRANGEBYSCORE", key, "-inf", std::string("(").append(now_text)});
        count += 2;
      }
    }
    redis::append_command(cmds, {"PEXPIRE", reply_key_, redis::decimal(ms_count(options_.reply_ttl), ttl)});
    ++count;
    const auto sent = clock::now();
    const auto replies = co_await s->commands->exec(std::move(cmds), count);
    const auto received = clock::now();
    const auto parts = redis::elements(replies[0].get());
    if (parts.size() != 2) throw protocol_error("redis: TIME did not answer [seconds, microseconds]");
    std::int64_t seconds = 0, micros = 0;
    const auto sec = redis::text(parts[0]), usec = redis::text(parts[1]);
    std::from_chars(sec.data(), sec.data() + sec.size(), seconds);
    std::from_chars(usec.data(), usec.data() + usec.size(), micros);
    server_ms_at_ = seconds * 1000 + micros / 1000;
    steady_at_ = sent + (received - sent) / 2;
    if (!clock_known_ && serving_) {
      clock_known_ = true;
      co_await heartbeat(s);  // now the advertisement can carry a real expiry
    }
    clock_known_ = true;
  }

  static asio::awaitable<void> heartbeat_loop(std::shared_ptr<redis_core> self, std::shared_ptr<session> s) {
    asio::steady_timer t(self->strand_);
    const paced listed(*s, t);
    while (!s->over && !self->closed_) {
      t.expires_after(self->options_.heartbeat_interval);
      std::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (s->over || self->closed_) co_return;
      co_await self->heartbeat(s);
    }
  }

  /// The Redis server's clock now, in ms, estimated from the last TIME.
  [[nodiscard]] std::int64_t server_now_ms() const {
    return server_ms_at_ + std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - steady_at_).count();
  }

  // ---- calling ----------------------------------------------------------------

  struct call_state {
    std::shared_ptr<invocation> inv;
    std::string stream;
    std::string payload;   // the REQUEST, kept to send it again
    std::string entry_id;  // set when Redis took it
    bool in_redis = false;
  };

  asio::awaitable<void> dispatch(std::shared_ptr<invocation> inv, call_options options) {
    inv->set_caller_executor(co_await asio::this_coro::executor);
    if (options.timeout) inv->deadline = clock::now() + *options.timeout;
    std::optional<double> timeout_seconds;
    if (options.timeout) timeout_seconds = std::chrono::duration<double>(*options.timeout).count();

    co_await asio::dispatch(strand_, asio::use_awaitable);
    if (closed_) throw closed_error(inv->name + ": the broker is closed");
    if (!started_) throw connection_error(inv->name + ": the Redis broker is not set up (call setup() first)");
    if (!options_.wait_for_route) co_await ensure_route(inv->name);

    const auto call_id = ++next_call_;
    call_state state;
    state.stream = keys_.calls(inv->name);
    messages::append_request_payload(state.payload, *inv, timeout_seconds);
    inv->on_abandon = [weak = weak_from_this(), call_id, strand = strand_] {
      post_tracked(strand, [weak, call_id] {
        if (auto self = weak.lock()) self->abandon(call_id);
      });
    };
    auto& placed = calls_.emplace(call_id, std::move(state)).first->second;
    placed.inv = inv;
    if (session_) send_call(call_id, placed, session_);
    co_await inv->async_wait(asio::use_awaitable);
  }

  /// Throws no_route_error unless a live worker offers `name`. Calls that
  /// find no fresh answer share one ZCOUNT: a burst of calls costs one round
  /// trip, not one each. Returns on the strand.
  asio::awaitable<void> ensure_route(const std::string& name) {
    const auto known = routes_.find(name);
    if (known != routes_.end() && known->second > clock::now()) co_return;
    if (const auto asked = route_checks_.find(name); asked != route_checks_.end()) {
      const auto check = asked->second;
      co_await check->done.async_wait(strand_, asio::use_awaitable);
      co_await asio::dispatch(strand_, asio::use_awaitable);
      if (check->error) std::rethrow_exception(check->error);
      co_return;
    }
    const auto check = std::make_shared<route_check>();
    route_checks_.emplace(name, check);
    try {
      co_await check_route(name);
    } catch (...) {
      check->error = std::current_exception();
    }
    // Completions of awaited operations come on the caller's executor.
    co_await asio::dispatch(strand_, asio::use_awaitable);
    route_checks_.erase(name);
    check->done.set();
    if (check->error) std::rethrow_exception(check->error);
  }

  asio::awaitable<void> check_route(const std::string& name) {
    const auto known = routes_.find(name) != routes_.end();
    auto s = session_;
    if (!s) {
      if (known) co_return;  // Redis is away: trust what was seen, the call waits in the outbox
      throw connection_error(name + ": Redis is unreachable, and no worker was seen for this function");
    }
    std::string cmd;
    char at[24];
    redis::append_command(
        cmd, {"ZCOUNT", keys_.route(name), redis::decimal(static_cast<std::uint64_t>(server_now_ms()), at), "+inf"});
    std::vector<reply_ptr> replies;
    try {
      replies = co_await s->commands->exec(std::move(cmd), 1);
    } catch (const connection_error&) {
      if (known) co_return;
      throw;
    }
    co_await asio::dispatch(strand_, asio::use_awaitable);
    const auto* r = replies[0].get();
    if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
      routes_[name] = clock::now() + options_.heartbeat_interval;
      co_return;
    }
    if (redis::is_error(r)) throw connection_error(fmt::format("{}: Redis: {}", name, redis::text(r)));
    routes_.erase(name);
    throw no_route_error(name + ": no live worker offers this function");
  }

  void send_call(std::uint64_t call_id, call_state& state, const std::shared_ptr<session>& s) {
    std::string cmd;
    char id_text[24];
    redis::append_command(cmd, {"XADD", state.stream, "*", redis::field::call, state.payload, redis::field::reply_to,
                                reply_key_, redis::field::call_id, redis::decimal(call_id, id_text)});
    const auto at = cmd.size();
    const auto extra = take_housekeeping(cmd);  // in the same write
    auto along = extra > 0 ? cmd.substr(at) : std::string();
    s->commands->send(cmd, 1 + extra,
                      [self = shared_from_this(), call_id, along = std::move(along), extra](std::error_code ec,
                                                                                            std::span<reply_ptr> r) {
                        if (ec && extra > 0) self->submit(self->session_, along, extra);  // again after reconnecting
                        const auto it = self->calls_.find(call_id);
                        if (it == self->calls_.end() || ec) return;  // abandoned, or sent again after reconnecting
                        if (redis::is_error(r[0].get())) {
                          auto inv = std::move(it->second.inv);
                          self->calls_.erase(it);
                          auto error = std::make_exception_ptr(connection_error(
                              fmt::format("{}: Redis refused the call: {}", inv->name, redis::text(r[0].get()))));
                          invocation::fail(std::move(inv), std::move(error));
                          return;
                        }
                        it->second.entry_id = std::string(redis::text(r[0].get()));
                        it->second.in_redis = true;
                      });
  }

  /// After reconnecting: calls Redis never took, or took and lost (it
  /// restarted without persistence), go in again. A call may so run twice.
  asio::awaitable<void> resend_calls(std::shared_ptr<session> s) {
    std::vector<std::uint64_t> check;
    std::string cmds;
    for (auto& [id, state] : calls_) {
      if (!state.in_redis) {
        send_call(id, state, s);
        continue;
      }
      redis::append_command(cmds, {"XRANGE", state.stream, state.entry_id, state.entry_id});
      check.push_back(id);
    }
    if (check.empty()) co_return;
    const auto replies = co_await s->commands->exec(std::move(cmds), check.size());
    for (std::size_t i = 0; i < check.size(); ++i) {
      const auto it = calls_.find(check[i]);
      if (it == calls_.end() || !redis::elements(replies[i].get()).empty()) continue;
      // Gone: run, replied (the reply is on its way) or lost. Only a lost
      // one needs sending, but they cannot be told apart: at least once.
      it->second.in_redis = false;
      send_call(it->first, it->second, s);
    }
  }

  void abandon(std::uint64_t call_id) {
    const auto it = calls_.find(call_id);
    if (it == calls_.end()) return;
    // Not started yet? Then never: the entry goes.
    if (it->second.in_redis && session_) {
      std::string cmd;
      redis::append_command(cmd, {"XDEL", it->second.stream, it->second.entry_id});
      session_->commands->send(cmd, 1);
    }
    calls_.erase(it);
  }

  static asio::awaitable<void> reply_loop(std::shared_ptr<redis_core> self, std::shared_ptr<session> s) {
    while (!s->over && !self->closed_) {
      std::string cmd;
      redis::append_command(
          cmd, {"XREAD", "COUNT", "1024", "BLOCK", "1000", "STREAMS", self->reply_key_, self->last_reply_});
      const auto replies = co_await s->replies->exec(std::move(cmd), 1);
      const auto* r = replies[0].get();
      if (redis::is_error(r)) throw connection_error(fmt::format("redis: reading replies: {}", redis::text(r)));
      bool read = false;
      for (const auto& stream : redis::parse_read(r)) {
        for (const auto& e : stream.entries) {
          self->last_reply_ = std::string(e.id);
          read = true;
          self->take_reply(e);
        }
      }
      // What was read goes: every entry up to the last one read (IDs only
      // grow), in one XTRIM MINID, cheaper for Redis than XDEL of each ID,
      // and sent with the next call (or after housekeeping_delay).
      const auto last = redis::parse_entry_id(self->last_reply_);
      if (read && last) {
        const auto above =
            last->seq == UINT64_MAX ? redis::entry_id{last->ms + 1, 0} : redis::entry_id{last->ms, last->seq + 1};
        self->trim_below_ = fmt::format("{}-{}", above.ms, above.seq);
        self->housekeeping_later();
      }
    }
  }

  void take_reply(const redis::entry& e) {
    try {
      if (e.malformed) throw protocol_error("fields are not string pairs");
      const auto fields = redis::parse_reply_fields(e.fields);
      const auto it = calls_.find(fields.call_id);
      if (it == calls_.end()) return;  // a second answer, or one for a call given up on
      auto inv = std::move(it->second.inv);
      calls_.erase(it);
      messages::reply reply;
      try {
        reply = messages::decode_reply(fields.ok ? frame::type::response : frame::type::error, fields.payload);
      } catch (...) {
        invocation::fail(std::move(inv), std::current_exception());
        return;
      }
      set_reply(*inv, reply.ok, reply.result, reply.error);
      invocation::complete(std::move(inv));
    } catch (const std::exception& ex) {
      log(log_level::warning, "redis", "dropped a malformed reply {}: {}", e.id, ex.what());
    }
  }

  // ---- working ----------------------------------------------------------------

  struct running {
    std::string stream;
    std::string entry_id;
    reply_address reply;
    asio::cancellation_signal cancel;
  };

  static asio::awaitable<void> work_loop(std::shared_ptr<redis_core> self, std::shared_ptr<session> s) {
    asio::steady_timer gate(self->strand_);
    while (!s->over && !self->closed_) {
      if (self->running_.size() >= self->options_.max_in_flight) {
        // Full: wait for a task to end (finished() cancels the gate).
        gate.expires_at(clock::time_point::max());
        self->gate_ = &gate;
        std::error_code ec;
        co_await gate.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        self->gate_ = nullptr;
        continue;
      }
      const auto room = std::min(self->options_.read_batch, self->options_.max_in_flight - self->running_.size());
      char count[24];
      std::vector<std::string_view> args{"XREADGROUP", "GROUP", redis::group,
                                         self->id_,    "COUNT", redis::decimal(room, count),
                                         "BLOCK",      "1000",  "STREAMS"};
      for (const auto& stream : self->streams_) args.emplace_back(stream);
      for (std::size_t i = 0; i < self->streams_.size(); ++i) args.emplace_back(">");
      std::string cmd;
      redis::append_command(cmd, args);
      const auto replies = co_await s->work->exec(std::move(cmd), 1);
      const auto* r = replies[0].get();
      if (redis::is_error(r)) {
        if (redis::text(r).starts_with("NOGROUP")) {  // Redis lost its state: start over
          co_await self->create_groups(s);
          continue;
        }
        throw connection_error(fmt::format("redis: reading calls: {}", redis::text(r)));
      }
      for (const auto& stream : redis::parse_read(r))
        for (const auto& e : stream.entries) self->take_entry(s, stream.stream, e, 1);
    }
  }

  /// Claims and renews: entries of dead workers come to this one; this
  /// one's running entries stay its own.
  static asio::awaitable<void> claim_loop(std::shared_ptr<redis_core> self, std::shared_ptr<session> s) {
    asio::steady_timer t(self->strand_);
    const paced listed(*s, t);
    const auto every = self->options_.visibility_timeout / 3;
    char idle[24];
    const auto min_idle = redis::decimal(static_cast<std::uint64_t>(ms_count(self->options_.visibility_timeout)), idle);
    while (!s->over && !self->closed_) {
      t.expires_after(every);
      std::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (s->over || self->closed_) co_return;
      self->renew(s);
      for (const auto& stream : self->streams_) {
        if (self->running_.size() >= self->options_.max_in_flight) break;
        char count[24];
        const auto room = std::min(self->options_.read_batch, self->options_.max_in_flight - self->running_.size());
        std::string cmd;
        redis::append_command(cmd, {"XAUTOCLAIM", stream, redis::group, self->id_, min_idle, "0-0", "COUNT",
                                    redis::decimal(room, count)});
        const auto replies = co_await s->commands->exec(std::move(cmd), 1);
        const auto parts = redis::elements(replies[0].get());
        if (redis::is_error(replies[0].get()) || parts.size() < 2) continue;  // NOGROUP: the work loop recreates it
        const auto claimed = redis::parse_entries(parts[1]);
        if (claimed.empty()) continue;
        // How often each was delivered, this claim included.
        std::string pending;
        for (const auto& e : claimed)
          redis::append_command(pending, {"XPENDING", stream, redis::group, e.id, e.id, "1"});
        const auto counts = co_await s->commands->exec(std::move(pending), claimed.size());
        for (std::size_t i = 0; i < claimed.size(); ++i) {
          std::uint64_t deliveries = 1;
          const auto rows = redis::elements(counts[i].get());
          if (!rows.empty()) {
            const auto row = redis::elements(rows[0]);
            if (row.size() == 4 && row[3]->type == REDIS_REPLY_INTEGER)
              deliveries = static_cast<std::uint64_t>(row[3]->integer);
          }
          log(log_level::info, "redis", "claimed {} {} from a silent worker (delivery {})", stream, claimed[i].id,
              deliveries);
          self->take_entry(s, stream, claimed[i], deliveries);
        }
      }
    }
  }

  /// Resets the idle time of every entry this worker runs.
  void renew(const std::shared_ptr<session>& s) {
    std::unordered_map<std::string_view, std::vector<std::string_view>> by_stream;
    for (const auto& [key, r] : running_) by_stream[r->stream].push_back(r->entry_id);
    for (const auto& [stream, ids] : by_stream) {
      std::vector<std::string_view> args{"XCLAIM", stream, redis::group, id_, "0"};
      args.insert(args.end(), ids.begin(), ids.end());
      args.emplace_back("JUSTID");
      std::string cmd;
      redis::append_command(cmd, args);
      s->commands->send(cmd, 1);
    }
  }

  /// Starts one entry read from `stream`, or answers or dead-letters it.
  void take_entry(const std::shared_ptr<session>& s, std::string_view stream, const redis::entry& e,
                  std::uint64_t deliveries) {
    const auto key = std::string(stream).append(1, '\0').append(e.id);
    if (running_.contains(key)) return;  // a claim of what this worker still runs
    if (e.malformed) return dead_letter(stream, e, "its fields are not pairs of strings", nullptr);
    redis::request_fields fields;
    try {
      fields = redis::parse_request_fields(e.fields, keys_);
    } catch (const std::exception& ex) {
      return dead_letter(stream, e, ex.what(), nullptr);
    }
    const reply_address reply{std::string(fields.reply_to), fields.call_id};
    if (deliveries > options_.max_deliveries) {
      return dead_letter(stream, e,
                         fmt::format("delivered {} times: its workers died or went silent each time", deliveries),
                         &reply, errc::worker_crashed);
    }
    messages::request request;
    try {
      request = messages::decode_request(fields.payload);
      const auto function = keys_.function_of(stream);
      if (!function || *function != request.invocation->name)
        throw protocol_error(fmt::format("a call of \"{}\" in the stream {}", request.invocation->name, stream));
    } catch (const std::exception& ex) {
      return dead_letter(stream, e, ex.what(), &reply, errc::protocol_error);
    }
    auto inv = std::move(request.invocation);
    if (request.timeout_seconds) {
      const auto id = redis::parse_entry_id(e.id);
      const auto deadline_ms = static_cast<double>(id ? id->ms : 0) + *request.timeout_seconds * 1000.0;
      const auto left_ms = deadline_ms - static_cast<double>(server_now_ms());
      if (left_ms <= 0) {
        finish(s, std::string(stream), std::string(e.id), reply,
               std::make_exception_ptr(timeout_error(inv->name + ": the call expired before a worker took it")),
               nullptr);
        return;
      }
      inv->deadline = clock::now() + std::chrono::duration_cast<clock::duration>(
                                         std::chrono::duration<double, std::milli>(std::min(left_ms, 1e12)));
    }
    auto state = std::make_shared<running>();
    state->stream = std::string(stream);
    state->entry_id = std::string(e.id);
    state->reply = reply;
    std::exception_ptr error = inv->error();
    if (!error) {
      try {
        const function* fn = executor_.registry().find(inv->name);
        if (!fn) throw no_route_error(inv->name + ": not offered by this worker");
        inv->target = fn->impl();
        inv->set_caller_executor(strand_);
        start_invocation(executor_, inv);
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (error) {
      finish(s, state->stream, state->entry_id, reply, error, nullptr);
      return;
    }
    running_.emplace(key, state);
    auto slot = state->cancel.slot();
    auto& target = *inv;
    target.async_wait(asio::bind_cancellation_slot(slot, [self = shared_from_this(), key, state = std::move(state),
                                                          inv = std::move(inv)](std::exception_ptr err) {
      self->running_.erase(key);
      if (self->gate_) self->gate_->cancel();
      if (self->closed_) return;  // stays pending: another worker runs it after the visibility timeout
      self->finish(self->session_, state->stream, state->entry_id, state->reply, err ? err : inv->error(), inv.get());
    }));
  }

  /// Answers an entry and acknowledges it, never the other way round: a
  /// worker that dies in between leaves the entry pending, and it runs again
  /// rather than its answer being lost. The answer goes at once (answers of
  /// one turn of the event loop share a write); its acknowledgement waits
  /// until Redis has taken it, then goes with the next answer or call, or
  /// after housekeeping_delay if none come: no write of its own per call.
  void finish(const std::shared_ptr<session>& s, const std::string& stream, const std::string& entry_id,
              const reply_address& reply, std::exception_ptr error, encoded_invocation* inv) {
    answer a{stream, entry_id, reply, error != nullptr, {}, {}, 0};
    if (error)
      messages::append_error_payload(a.value, record_of(error));
    else
      a.value.assign(inv->result().data(), inv->result().size());
    if (!s || s->over) {
      submit(s, full_answer(a), 4);  // held until Redis is back
      return;
    }
    std::string cmd;
    append_answer(cmd, a, false);
    const auto at = cmd.size();
    const auto extra = take_housekeeping(cmd);  // earlier answers' acknowledgements: in the same write
    a.along = cmd.substr(at);
    a.along_count = extra;
    s->commands->send(cmd, 1 + extra,
                      [self = shared_from_this(), a = std::move(a)](std::error_code ec, std::span<reply_ptr> replies) {
                        self->answered(a, ec, replies);
                      });
  }

  /// An answer on its way: its entry and where it goes.
  struct answer {
    std::string stream;
    std::string entry_id;
    reply_address reply;
    bool error = false;
    std::string value;  // a RESPONSE or ERROR payload
    std::string along;  // housekeeping sent with it
    std::size_t along_count = 0;
  };

  /// XADD of an answer to its reply stream. NOMKSTREAM: the reply stream
  /// exists while its caller reads it (create_reply_stream), so no
  /// per-answer PEXPIRE is needed; where it does not (its caller is gone, or
  /// Redis lost it), the XADD adds nothing and answered() sends full_answer().
  static void append_answer(std::string& cmds, const answer& a, bool create) {
    char id[24];
    const std::string_view kind = a.error ? "error" : "ok";
    const auto call_id = redis::decimal(a.reply.call_id, id);
    if (create)
      redis::append_command(cmds, {"XADD", a.reply.stream, "*", redis::field::call_id, call_id, redis::field::kind,
                                   kind, redis::field::value, a.value});
    else
      redis::append_command(cmds, {"XADD", a.reply.stream, "NOMKSTREAM", "*", redis::field::call_id, call_id,
                                   redis::field::kind, kind, redis::field::value, a.value});
  }

  /// The answer in one go, as 4 commands: XADD (creating the reply stream),
  /// PEXPIRE on it (so that a stream nobody reads expires), XACK, XDEL.
  [[nodiscard]] std::string full_answer(const answer& a) const {
    std::string cmds;
    append_answer(cmds, a, true);
    char ttl[24];
    redis::append_command(cmds, {"PEXPIRE", a.reply.stream, redis::decimal(ms_count(options_.reply_ttl), ttl)});
    redis::append_command(cmds, {"XACK", a.stream, redis::group, a.entry_id});
    redis::append_command(cmds, {"XDEL", a.stream, a.entry_id});
    return cmds;
  }

  /// Redis's reply to an answer's XADD.
  void answered(const answer& a, std::error_code ec, std::span<reply_ptr> replies) {
    for (std::size_t i = 1; i < replies.size(); ++i)  // housekeeping that went along
      if (redis::is_error(replies[i].get())) log(log_level::warning, "redis", "{}", redis::text(replies[i].get()));
    if (ec) {
      // Lost with the connection, or not: it goes whole after reconnecting
      // (a second answer is dropped by its caller), with what went along.
      submit(session_, full_answer(a), 4);
      if (a.along_count > 0) submit(session_, a.along, a.along_count);
      return;
    }
    const auto* r = replies[0].get();
    if (r->type == REDIS_REPLY_NIL) {  // no reply stream: make it, with an expiry
      submit(session_, full_answer(a), 4);
      return;
    }
    // Refused (out of memory, a key of another type there): logged and
    // acknowledged all the same, since running the task again would not help.
    if (redis::is_error(r))
      log(log_level::warning, "redis", "answering {} {}: {}", a.stream, a.entry_id, redis::text(r));
    acks_[a.stream].push_back(a.entry_id);
    housekeeping_later();
  }

  /// Makes sure what housekeeping waits goes out within housekeeping_delay,
  /// if no call or answer takes it along before.
  void housekeeping_later() {
    if (housekeeping_armed_) return;
    housekeeping_armed_ = true;
    housekeeping_timer_.expires_after(housekeeping_delay);
    housekeeping_timer_.async_wait([self = shared_from_this()](std::error_code waited) {
      self->housekeeping_armed_ = false;
      if (!waited) self->send_housekeeping();
    });
  }

  void send_housekeeping() {
    std::string cmds;
    if (const auto count = take_housekeeping(cmds)) submit(session_, cmds, count);
  }

  /// Appends the housekeeping that waits to `cmds`: the acknowledgement and
  /// deletion of the entries answered so far (one XACK and one XDEL per
  /// stream), and the trimming of what the caller read from its reply
  /// stream. @returns how many commands.
  std::size_t take_housekeeping(std::string& cmds) {
    std::size_t count = 0;
    if (!trim_below_.empty()) {
      redis::append_command(cmds, {"XTRIM", reply_key_, "MINID", trim_below_});
      trim_below_.clear();
      ++count;
    }
    for (const auto& [stream, ids] : acks_) {
      std::vector<std::string_view> args{"XACK", stream, redis::group};
      args.insert(args.end(), ids.begin(), ids.end());
      redis::append_command(cmds, args);
      args.assign({"XDEL", stream});
      args.insert(args.end(), ids.begin(), ids.end());
      redis::append_command(cmds, args);
      count += 2;
    }
    acks_.clear();
    return count;
  }

  /// Sends commands now, or when Redis is back.
  void submit(const std::shared_ptr<session>& s, std::string_view cmds, std::size_t count) {
    if (s && !s->over) {
      s->commands->send(cmds, count);
      return;
    }
    outbox_.append(cmds);
    outbox_count_ += count;
  }

  void dead_letter(std::string_view stream, const redis::entry& e, const std::string& reason,
                   const reply_address* reply, errc code = errc::protocol_error) {
    log(log_level::warning, "redis", "dead-lettered {} {}: {}", stream, e.id, reason);
    std::string cmds;
    std::size_t count = 0;
    char max[24];
    std::vector<std::string_view> args{
        "XADD", dead_key_, "MAXLEN", "~",   redis::decimal(options_.dead_letter_max, max), "*", "stream", stream,
        "id",   e.id,      "reason", reason};
    for (const auto& [k, v] : e.fields) {
      args.push_back(k);
      args.push_back(v);
    }
    redis::append_command(cmds, args);
    ++count;
    if (reply) {
      std::string value;
      messages::append_error_payload(value, {code, {}, reason});
      char id[24], ttl[24];
      redis::append_command(cmds,
                            {"XADD", reply->stream, "*", redis::field::call_id, redis::decimal(reply->call_id, id),
                             redis::field::kind, "error", redis::field::value, value});
      redis::append_command(cmds, {"PEXPIRE", reply->stream, redis::decimal(ms_count(options_.reply_ttl), ttl)});
      count += 2;
    }
    redis::append_command(cmds, {"XACK", stream, redis::group, e.id});
    redis::append_command(cmds, {"XDEL", stream, e.id});
    count += 2;
    submit(session_, cmds, count);
  }

  // ---- closing ----------------------------------------------------------------

  asio::awaitable<void> close() {
    co_await asio::dispatch(strand_, asio::use_awaitable);
    if (closed_) co_return;
    closed_ = true;
    if (auto s = session_; s && serving_) {
      // Withdraw the advertisement, so callers fail fast instead of queueing
      // for a worker that is gone. Bounded: Redis may be the reason to close.
      send_housekeeping();  // what was answered is done: no other worker must run it again
      std::string cmds;
      for (const auto& f : functions_) redis::append_command(cmds, {"ZREM", keys_.route(f), id_});
      asio::steady_timer limit(strand_, 1s);
      limit.async_wait([s](std::error_code ec) {
        if (!ec) s->commands->close();
      });
      try {
        co_await s->commands->exec(std::move(cmds), functions_.size());
      } catch (const std::exception&) {
        // closing anyway
      }
      limit.cancel();
    }
    close_now();
  }

  void close_now() {
    closed_ = true;
    if (session_) end(session_);
    if (reconnect_timer_) reconnect_timer_->cancel();
    housekeeping_timer_.cancel();
    if (gate_) gate_->cancel();
    for (auto& [key, r] : running_) r->cancel.emit(asio::cancellation_type::terminal);
    auto calls = std::move(calls_);
    calls_.clear();
    for (auto& [id, state] : calls)
      if (state.inv)
        invocation::fail(std::move(state.inv), std::make_exception_ptr(closed_error("redis: the broker is closed")));
    closed_event_.set();
  }

  asio::any_io_executor strand_;
  patio::executor& executor_;
  redis_options options_;
  redis::keys keys_;
  std::string id_;
  std::string reply_key_;
  std::string dead_key_;

  bool started_ = false;
  bool closed_ = false;  // on the strand
  std::atomic<bool> connected_{false};
  std::shared_ptr<session> session_;
  asio::steady_timer* reconnect_timer_ = nullptr;
  event closed_event_;

  // Server clock, from TIME.
  bool clock_known_ = false;
  std::int64_t server_ms_at_ = 0;
  clock::time_point steady_at_ = clock::now();

  // Caller.
  std::uint64_t next_call_ = 0;
  std::unordered_map<std::uint64_t, call_state> calls_;
  std::unordered_map<std::string, clock::time_point> routes_;
  struct route_check {
    event done;
    std::exception_ptr error;  // set before done
  };
  std::unordered_map<std::string, std::shared_ptr<route_check>> route_checks_;  // ZCOUNTs on their way
  std::string last_reply_ = "0-0";
  std::string trim_below_;  // XTRIM MINID of the reply stream, waiting

  // Worker.
  bool serving_ = false;
  std::vector<std::string> functions_;
  std::vector<std::string> streams_;
  std::unordered_map<std::string, std::shared_ptr<running>> running_;
  asio::steady_timer* gate_ = nullptr;
  std::unordered_map<std::string, std::vector<std::string>> acks_;  // answered, not yet acknowledged
  asio::steady_timer housekeeping_timer_{strand_};
  bool housekeeping_armed_ = false;
  std::string outbox_;  // replies and acknowledgements made while Redis was away
  std::size_t outbox_count_ = 0;
};

}  // namespace detail

redis_broker::redis_broker(asio::any_io_executor io, patio::executor& executor, redis_options options)
    : executor_(executor), core_(std::make_shared<detail::redis_core>(std::move(io), executor, std::move(options))) {
  executor_.registry().lock();
  executor_.setup();
}

redis_broker::~redis_broker() {
  auto core = core_;
  detail::post_tracked(core->strand_, [core] {
    if (!core->closed_) core->close_now();
  });
  executor_.shutdown();
}

asio::awaitable<void> redis_broker::setup() { return core_->setup(); }

asio::awaitable<void> redis_broker::close() {
  co_await core_->close();
  executor_.shutdown();
}

asio::awaitable<void> redis_broker::join() {
  auto ex = co_await asio::this_coro::executor;
  co_await core_->closed_event_.async_wait(ex, asio::use_awaitable);
}

bool redis_broker::connected() const { return core_->connected_.load(); }

const std::string& redis_broker::id() const noexcept { return core_->id_; }

asio::awaitable<void> redis_broker::dispatch(std::shared_ptr<detail::invocation> inv, call_options options) {
  return core_->dispatch(std::move(inv), options);
}

}  // namespace patio
