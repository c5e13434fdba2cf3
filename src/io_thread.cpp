// SPDX-License-Identifier: MIT
#include <patio/error.hpp>
#include <patio/io_thread.hpp>
#include <patio/log.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <system_error>

namespace patio {

namespace {

/// The io_thread whose thread this is, if any.
thread_local const io_thread* current_io_thread = nullptr;

void refuse_from_io_thread(const char* what) {
  if (current_io_thread)
    throw deadlock_error(std::string("patio::io_thread: ") + what +
                         " from one of an io_thread's own threads would wait for itself; co_await instead");
}

bool is_operation_aborted(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& x) {
    return x.code() == asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

}  // namespace

io_thread::io_thread(std::size_t threads)
    : work_(std::in_place, context_.get_executor()),
      thread_count_(std::max<std::size_t>(threads, 1)),
      running_(thread_count_) {
  threads_.reserve(thread_count_);
  for (std::size_t i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this] {
      current_io_thread = this;
      for (;;) {
        try {
          context_.run();
          break;
        } catch (const std::exception& e) {
          // A handler threw (not a blocking call: those catch their own).
          // Keep serving: other callers are waiting on this io_context.
          detail::log(log_level::error, "io_thread", "a handler threw: {}", e.what());
        } catch (...) {
          detail::log(log_level::error, "io_thread", "a handler threw a non-standard exception");
        }
      }
      std::lock_guard lock(mutex_);
      if (--running_ == 0) idle_.notify_all();
    });
  }
}

// NOLINTNEXTLINE(bugprone-exception-escape): stop() throws only on one of its own threads (documented).
io_thread::~io_thread() { stop(); }

bool io_thread::running_in_this_thread() const noexcept { return current_io_thread == this; }

bool io_thread::stopped() const {
  std::lock_guard lock(mutex_);
  return stopped_;
}

void io_thread::start(const std::shared_ptr<detail::blocking_call>& call, asio::awaitable<void> task) {
  refuse_from_io_thread("a blocking call");
  // A strand per call, so that stop() can deliver the cancellation on the
  // thread that runs the call's coroutine.
  call->strand.emplace(context_.get_executor());
  {
    std::lock_guard lock(mutex_);
    if (stopped_) throw closed_error("patio::io_thread: stopped; no more calls");
    pending_.insert(call);
  }
  auto slot = call->cancel.slot();
  asio::co_spawn(*call->strand, std::move(task), asio::bind_cancellation_slot(slot, [this, call](std::exception_ptr e) {
    finish(call, std::move(e));
  }));
}

void io_thread::finish(const std::shared_ptr<detail::blocking_call>& call, std::exception_ptr error) {
  std::lock_guard lock(mutex_);
  if (!call->done) {  // else stop() gave up on it, and its caller is gone
    call->done = true;
    call->error = std::move(error);
    call->wake.notify_one();
  }
  pending_.erase(call);
  if (pending_.empty()) drained_.notify_all();
}

void io_thread::wait(detail::blocking_call& call) {
  std::unique_lock lock(mutex_);
  call.wake.wait(lock, [&] { return call.done; });
  if (!call.error) return;
  if (call.stopped && is_operation_aborted(call.error))
    throw closed_error("patio::io_thread: stopped before the call finished");
  std::rethrow_exception(call.error);
}

void io_thread::stop(std::chrono::milliseconds grace) {
  refuse_from_io_thread("stop()");
  const auto deadline = std::chrono::steady_clock::now() + grace;
  {
    std::unique_lock lock(mutex_);
    if (!stopped_) {
      stopped_ = true;
      for (const auto& call : pending_) {
        call->stopped = true;
        asio::post(*call->strand, [call] { call->cancel.emit(asio::cancellation_type::terminal); });
      }
      drained_.wait_until(lock, deadline, [&] { return pending_.empty(); });
      // What did not end in time (a coroutine that ignores cancellation, a
      // thread pool task that cannot be interrupted) ends for its caller now.
      for (const auto& call : pending_) {
        if (call->done) continue;
        call->done = true;
        call->error = std::make_exception_ptr(closed_error("patio::io_thread: stopped before the call finished"));
        call->wake.notify_one();
      }
      if (!pending_.empty())
        detail::log(log_level::warning, "io_thread",
                    "{} call(s) did not end within {} ms of their cancellation; their callers got closed_error",
                    pending_.size(), grace.count());
      pending_.clear();
    }
  }
  std::lock_guard join_lock(join_mutex_);
  if (joined_) return;
  // Let what is already under way, such as connections closing, run out
  // until the deadline; then stop the rest where it stands (its coroutine
  // frames go with the io_context).
  work_.reset();
  {
    std::unique_lock lock(mutex_);
    idle_.wait_until(lock, deadline, [&] { return running_ == 0; });
  }
  context_.stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  joined_ = true;
}

}  // namespace patio
