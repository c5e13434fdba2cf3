// SPDX-License-Identifier: MIT
#include "redis_connection.hpp"

#include <patio/error.hpp>
#include <patio/log.hpp>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace patio::detail::redis {

namespace {
constexpr std::size_t read_chunk = 64 * 1024;
// What the reader is fed at a time. hiredis 0.14 moves the unparsed rest of
// its buffer to the front each time it has consumed 1 KiB, and frees and
// regrows the buffer once it is empty and large: fed 64 KiB of small
// replies at once, it copied megabytes per read and churned the allocator.
// Fed in slices, its buffer stays small.
constexpr std::size_t feed_slice = 4 * 1024;
constexpr std::size_t keep_write_capacity = 1024 * 1024;

std::error_code lost() { return make_error_code(errc::connection_lost); }
}  // namespace

namespace {
redisReplyObjectFunctions bounded_functions;
void* (*default_create_array)(const redisReadTask*, int) = nullptr;

void* create_bounded_array(const redisReadTask* task, int elements) {
  if (elements > max_reply_elements) return nullptr;  // the reader reports out of memory
  return default_create_array(task, elements);
}
}  // namespace

redisReader* make_reader() {
  redisReader* reader = redisReaderCreate();
  if (!reader) throw std::bad_alloc();
  static const bool once = [&] {
    bounded_functions = *reader->fn;  // hiredis's own, which freeReplyObject matches
    default_create_array = bounded_functions.createArray;
    bounded_functions.createArray = create_bounded_array;
    return true;
  }();
  (void)once;
  reader->fn = &bounded_functions;
  return reader;
}

bool is_error(const redisReply* r) noexcept { return r && r->type == REDIS_REPLY_ERROR; }

std::string_view text(const redisReply* r) noexcept {
  if (!r || !r->str) return {};
  if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_ERROR) return {};
  return {r->str, r->len};
}

std::span<redisReply* const> elements(const redisReply* r) noexcept {
  if (!r || r->type != REDIS_REPLY_ARRAY || !r->element) return {};
  return {r->element, r->elements};
}

namespace {
entry parse_entry(const redisReply* e) {
  const auto parts = elements(e);
  entry out;
  if (parts.size() != 2 || parts[0]->type != REDIS_REPLY_STRING)
    throw protocol_error("redis: a stream entry is not [id, fields]");
  out.id = text(parts[0]);
  const auto fields = elements(parts[1]);
  if (parts[1]->type != REDIS_REPLY_ARRAY || fields.size() % 2 != 0) {
    out.malformed = true;
    return out;
  }
  out.fields.reserve(fields.size() / 2);
  for (std::size_t i = 0; i < fields.size(); i += 2) {
    if (fields[i]->type != REDIS_REPLY_STRING || fields[i + 1]->type != REDIS_REPLY_STRING) {
      out.malformed = true;
      out.fields.clear();
      return out;
    }
    out.fields.emplace_back(text(fields[i]), text(fields[i + 1]));
  }
  return out;
}
}  // namespace

std::vector<entry> parse_entries(const redisReply* r) {
  std::vector<entry> out;
  if (!r || r->type == REDIS_REPLY_NIL) return out;
  if (r->type != REDIS_REPLY_ARRAY) throw protocol_error("redis: entries are not an array");
  for (const auto* e : elements(r)) {
    if (e->type == REDIS_REPLY_NIL) continue;  // deleted while pending
    out.push_back(parse_entry(e));
  }
  return out;
}

std::vector<stream_entries> parse_read(const redisReply* r) {
  std::vector<stream_entries> out;
  if (!r || r->type == REDIS_REPLY_NIL) return out;
  if (r->type != REDIS_REPLY_ARRAY) throw protocol_error("redis: a stream read's reply is not an array");
  for (const auto* s : elements(r)) {
    const auto parts = elements(s);
    if (parts.size() != 2 || parts[0]->type != REDIS_REPLY_STRING)
      throw protocol_error("redis: a stream read's reply is not [[stream, entries], ...]");
    out.push_back({text(parts[0]), parse_entries(parts[1])});
  }
  return out;
}

connection::connection(asio::any_io_executor strand, std::string label)
    : strand_(std::move(strand)), label_(std::move(label)), socket_(strand_), reader_(make_reader()) {}

connection::~connection() { redisReaderFree(reader_); }

asio::awaitable<void> connection::open(redis_options options, std::string client_name) {
  using asio::ip::tcp;
  const auto where = fmt::format("{}:{}", options.host, options.port);
  // The timer's handler may already be queued when the attempt ends: it
  // shares its state rather than pointing into this frame.
  struct attempt {
    bool timed_out = false;
    bool over = false;
  };
  const auto state = std::make_shared<attempt>();
  asio::steady_timer deadline(strand_, options.connect_timeout);
  deadline.async_wait([self = shared_from_this(), state](std::error_code ec) {
    if (ec || state->over) return;
    state->timed_out = true;
    self->close();
  });
  const auto& timed_out = state->timed_out;
  try {
    tcp::resolver resolver(strand_);
    const auto endpoints =
        co_await resolver.async_resolve(options.host, std::to_string(options.port), asio::use_awaitable);
    if (closed_) throw std::system_error(make_error_code(asio::error::operation_aborted));
    co_await asio::async_connect(socket_, endpoints, asio::use_awaitable);
    socket_.set_option(tcp::no_delay(true));
    socket_.set_option(asio::socket_base::keep_alive(true));
  } catch (const std::system_error& e) {
    state->over = true;
    deadline.cancel();
    close();
    throw connection_error(
        fmt::format("redis: cannot connect to {}: {}", where, timed_out ? "timed out" : e.code().message()));
  }
  open_ = true;
  asio::co_spawn(strand_, read_loop(), asio::detached);

  std::string hello;
  std::size_t count = 0;
  if (!options.password.empty()) {
    if (options.username.empty())
      append_command(hello, {"AUTH", options.password});
    else
      append_command(hello, {"AUTH", options.username, options.password});
    ++count;
  }
  if (options.db != 0) {
    append_command(hello, {"SELECT", std::to_string(options.db)});
    ++count;
  }
  append_command(hello, {"CLIENT", "SETNAME", client_name});
  ++count;
  std::vector<reply_ptr> replies;
  try {
    replies = co_await exec(std::move(hello), count);
  } catch (const connection_error&) {
    state->over = true;
    deadline.cancel();
    throw connection_error(
        fmt::format("redis: {} closed the connection while it was set up{}", where, timed_out ? " (timed out)" : ""));
  }
  state->over = true;
  deadline.cancel();
  std::size_t i = 0;
  if (!options.password.empty()) {
    if (is_error(replies[i].get())) {
      close();
      throw auth_error(fmt::format("redis: {} refused the credentials: {}", where, text(replies[i].get())));
    }
    ++i;
  }
  for (; i < replies.size(); ++i) {
    if (!is_error(replies[i].get())) continue;
    close();
    const auto why = text(replies[i].get());
    if (why.starts_with("NOAUTH")) throw auth_error(fmt::format("redis: {} requires a password: {}", where, why));
    throw connection_error(fmt::format("redis: {} refused the set-up: {}", where, why));
  }
}

void connection::send(std::string_view commands, std::size_t count, reply_handler done) {
  if (closed_ || !open_) {
    if (done) done(lost(), {});
    return;
  }
  unsent_.append(commands);
  pending_.push_back({count, std::move(done), {}});
  waiting_ += count;
  if (!writing_now_) {
    // At once: a lone command (a call, an answer) loses no turn of the event
    // loop. Commands queued while this write is on its way go out together
    // in the next one.
    writing_now_ = true;
    flush();
  }
}

asio::awaitable<std::vector<reply_ptr>> connection::exec(std::string commands, std::size_t count) {
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable),
                                          void(std::exception_ptr, std::vector<reply_ptr>)>(
      [this, &commands, count](auto handler) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        send(commands, count, [shared, label = label_](std::error_code ec, std::span<reply_ptr> r) {
          std::exception_ptr error;
          if (ec) error = std::make_exception_ptr(connection_error("redis: " + label + ": connection lost"));
          std::vector<reply_ptr> out(std::make_move_iterator(r.begin()), std::make_move_iterator(r.end()));
          auto h = std::move(*shared);
          auto ex = asio::get_associated_executor(h);
          // Dispatched: a coroutine of the strand the replies are read on
          // (the broker's loops) resumes at once, without a turn of the
          // event loop (and its epoll_wait) per reply.
          asio::dispatch(
              ex, [h = std::move(h), error, out = std::move(out)]() mutable { std::move(h)(error, std::move(out)); });
        });
      },
      asio::use_awaitable);
}

void connection::flush() {
  if (closed_ || unsent_.empty()) {
    writing_now_ = false;
    return;
  }
  std::swap(unsent_, writing_);
  asio::async_write(socket_, asio::buffer(writing_), [self = shared_from_this()](std::error_code ec, std::size_t) {
    self->writing_.clear();
    if (self->writing_.capacity() > keep_write_capacity) std::string().swap(self->writing_);
    if (ec) {
      self->writing_now_ = false;
      self->close();
      return;
    }
    self->flush();
  });
}

asio::awaitable<void> connection::read_loop() {
  auto self = shared_from_this();
  std::vector<char> buffer(read_chunk);
  for (;;) {
    std::error_code ec;
    const auto n =
        co_await socket_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) break;  // bytes that arrived as it closed answer commands already failed
    if (ec) {
      if (ec != asio::error::operation_aborted)
        log(log_level::info, "redis", "{}: connection lost: {}", label_, ec.message());
      break;
    }
    bool broken = false;
    for (std::size_t at = 0; at < n && !broken && !closed_; at += feed_slice) {
      if (redisReaderFeed(reader_, buffer.data() + at, std::min(feed_slice, n - at)) != REDIS_OK) {
        log(log_level::warning, "redis", "{}: unreadable reply; closing", label_);
        broken = true;
        break;
      }
      for (;;) {
        void* raw = nullptr;
        if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
          log(log_level::warning, "redis", "{}: malformed reply ({}); closing", label_, reader_->errstr);
          broken = true;
          break;
        }
        if (!raw) break;
        deliver(reply_ptr(static_cast<redisReply*>(raw)));
        if (closed_) break;
      }
    }
    if (broken || closed_) break;
  }
  close();
}

void connection::deliver(reply_ptr reply) {
  if (pending_.empty()) {
    log(log_level::warning, "redis", "{}: a reply nobody asked for; closing", label_);
    close();
    return;
  }
  auto& p = pending_.front();
  --waiting_;
  if (p.done)
    p.replies.push_back(std::move(reply));
  else if (is_error(reply.get()))
    log(log_level::warning, "redis", "{}: {}", label_, text(reply.get()));
  if (--p.count != 0) return;
  auto done = std::move(p.done);
  auto replies = std::move(p.replies);
  pending_.pop_front();
  if (done) done({}, replies);
}

void connection::fail_all() {
  auto failed = std::move(pending_);
  pending_.clear();
  waiting_ = 0;
  for (auto& p : failed)
    if (p.done) p.done(lost(), {});
}

void connection::close() {
  if (closed_) return;
  closed_ = true;
  std::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  unsent_.clear();
  fail_all();
}

}  // namespace patio::detail::redis
